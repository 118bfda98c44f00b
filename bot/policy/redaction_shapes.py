"""Credential shapes: text that is a secret by its form, configured or not.

Each :class:`Shape` is one regular expression plus the literal *anchors* its
matches begin with. :func:`mask_shapes` finds each anchor with ``str.find``
(a scan at memory speed) and tries the pattern only there
(``pattern.match`` at that position): most text holds no anchor at all, so
the cost is a few dozen substring scans instead of two dozen regex scans,
which CPython runs at ~40 µs/KB when a pattern does not start with a literal.
Case-insensitive shapes look for their (lower-case) anchors in ``text.lower()``.

Some shapes keep the harmless part (``https://user:[REDACTED]@host``,
``Bearer [REDACTED]``) so the text still says what it was. Shapes that key
on a *name* (``password=``, ``Authorization:``) judge the value, so ordinary
code (``password=password``, ``token: str``, ``get_token()``) is left alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

MASK = "[REDACTED]"

# In a lookbehind: the character before a token's prefix is not part of a word,
# so ``task-…`` is not an ``sk-`` key and ``mghp_`` is not a GitHub token.
_NOT_WORD = r"(?<![A-Za-z0-9_])"


@dataclass(frozen=True, slots=True)
class Shape:
    name: str
    anchors: tuple[str, ...]  # every match starts with one (lower-case if ignore_case)
    pattern: re.Pattern[str]
    replace: str | Callable[[re.Match[str]], str] = MASK
    ignore_case: bool = False


def looks_like_credential(value: str) -> bool:
    """A value that is a key rather than a word, name or expression of code."""
    if len(value) < 8 or any(c.isspace() for c in value):
        return False
    digits = any(c.isdigit() for c in value)
    lower = any(c.islower() for c in value)
    upper = any(c.isupper() for c in value)
    letters = lower or upper
    # Identifiers and words have no digits; numbers have no letters. A token has
    # both, or (long enough to be random, and no dotted or snake_case name) both cases.
    if digits and letters:
        return True
    return lower and upper and len(value) >= 24 and not {".", "_"} & set(value)


def _keep_prefix(group: int) -> Callable[[re.Match[str]], str]:
    def replace(match: re.Match[str]) -> str:
        return match.group(group) + MASK

    return replace


def _masked_if_credential(match: re.Match[str]) -> str:
    value = match.group("value")
    if not looks_like_credential(value):
        return match.group(0)
    return match.group(0)[: match.start("value") - match.start(0)] + MASK


_DOTTED_NAME = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+$")


def _secret_value(match: re.Match[str]) -> str:
    """``token = …``: a random-looking value, not a call or an attribute (``PKCS8.unwrap(``)."""
    end = match.end("value")
    after = match.string[end : end + 1]
    if after in ("(", "[") or _DOTTED_NAME.match(match.group("value")):
        return match.group(0)
    return _masked_if_credential(match)


# Unquoted values after ``password:`` that are code, not a password.
_CODE_WORDS = frozenset(
    [
        "str",
        "bytes",
        "none",
        "null",
        "nil",
        "true",
        "false",
        "optional",
        "string",
        "int",
        "bool",
        "any",
        "required",
        "undefined",
        "secret",
        "secretstr",
        "password",
    ]
)
_CODE_PUNCTUATION = set("()[]{}<>$%*`\\")
_SMALL_NUMBER = re.compile(r"^(?:0x[0-9a-fA-F]{1,4}|\d{1,4})$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z_.]*$")
_PLACEHOLDER = re.compile(r"^(?:\$\{.*\}|\{\{.*\}\}|<.*>|\*+|x+|\.\.\.|…)$", re.IGNORECASE)


def _password_value(match: re.Match[str]) -> str:
    """Mask the value of a ``password``-like assignment unless it is code or a placeholder."""
    value = match.group("value")
    quoted = value[:1] in "\"'" and value[-1:] == value[:1] and len(value) >= 2
    inner = value[1:-1] if quoted else value
    keep = match.group(0)
    if (
        not inner
        or _PLACEHOLDER.match(inner)
        or inner.lower() in _CODE_WORDS
        or any(c.isspace() for c in inner)
    ):
        return keep  # empty, a placeholder, or a sentence ("a passphrase is required")
    if not quoted:
        lowered = inner.lower()
        if (
            lowered in _CODE_WORDS
            or _SMALL_NUMBER.match(inner)  # USERNAME_PASSWORD = 0x02
            or _CODE_PUNCTUATION.intersection(inner)
            # password=password, password=self.password, password=args.db_password
            or re.search(r"pass(?:word|wd|phrase)|secret", lowered)
            # a name in code (password=user_pass, pw = self.pw), unless the key is
            # an environment variable's (DB_PASSWORD=correcthorse)
            or (_IDENTIFIER.match(inner) and not match.group(0)[:6].isupper())
        ):
            return keep
        tight = match.group("sep") in ("=", ":")  # no spaces: config or a command line
        if not tight and not match.group("eol") and not looks_like_credential(inner):
            # "the password: it must be long" is prose; a config value ends its line.
            return keep
    head = keep[: match.start("value") - match.start(0)]
    tail = keep[match.end("value") - match.start(0) :]
    return f"{head}{value[0]}{MASK}{value[0]}{tail}" if quoted else f"{head}{MASK}{tail}"


# Passwords of example URLs in documentation, not credentials.
_EXAMPLE_PASSWORDS = frozenset({"pass", "password", "passwd", "pw", "pwd", "secret", "token"})


def _basic_auth(match: re.Match[str]) -> str:
    password = match.group("password")
    if (
        password.lower() in _EXAMPLE_PASSWORDS
        or _PLACEHOLDER.match(password)
        or _CODE_PUNCTUATION.intersection(password)  # a template: ://{user}:{password}@
    ):
        return match.group(0)
    return f"://{match.group('user')}:{MASK}@"


SHAPES: tuple[Shape, ...] = (
    Shape(
        "slack",  # bot, user, app-config and refresh tokens (xoxe.xoxp-…, xoxe-…)
        ("xox",),
        re.compile(_NOT_WORD + r"xox(?:e\.xox[a-z]-|[abposre]-)[A-Za-z0-9-]{8,}"),
    ),
    Shape("slack app", ("xapp-",), re.compile(_NOT_WORD + r"xapp-[A-Za-z0-9-]{8,}")),
    Shape(
        "slack webhook",
        ("hooks.slack.com/",),
        re.compile(r"(hooks\.slack\.com/(?:services|workflows|triggers)/)[A-Za-z0-9_/-]{8,}"),
        _keep_prefix(1),
    ),
    Shape(
        "github",
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
        re.compile(_NOT_WORD + r"(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"),
    ),
    Shape(
        "gitlab",  # personal, OAuth, deploy, runner, CI job, trigger, feed, mail, agent, SCIM…
        ("gl",),
        re.compile(
            _NOT_WORD + r"gl(?:pat|oas|dt|rtr?|cbt|ptt|ft|imt|agent|soat|ffct|wt)-"
            r"[A-Za-z0-9_.-]{20,}"
        ),
    ),
    Shape("aws", ("AKIA", "ASIA"), re.compile(_NOT_WORD + r"A[KS]IA[0-9A-Z]{16}(?![0-9A-Za-z])")),
    Shape("openai", ("sk-",), re.compile(_NOT_WORD + r"sk-[A-Za-z0-9_-]{20,}")),
    Shape(
        "stripe",
        ("sk_live_", "rk_live_", "sk_test_", "rk_test_"),
        re.compile(_NOT_WORD + r"[rs]k_(?:live|test)_[A-Za-z0-9]{10,}"),
    ),
    Shape("google", ("AIza",), re.compile(_NOT_WORD + r"AIza[0-9A-Za-z_-]{35}")),
    Shape("hugging face", ("hf_",), re.compile(_NOT_WORD + r"hf_[A-Za-z0-9]{30,}")),
    Shape("npm", ("npm_",), re.compile(_NOT_WORD + r"npm_[A-Za-z0-9]{36}")),
    Shape("pypi", ("pypi-AgE",), re.compile(_NOT_WORD + r"pypi-AgE[A-Za-z0-9_-]{50,}")),
    Shape("synapse", ("syt_",), re.compile(_NOT_WORD + r"syt_[A-Za-z0-9_=-]{10,}")),
    Shape(
        "jwt",  # header.payload.signature, both JSON objects base64url ("eyJ" is '{"')
        ("eyJ",),
        re.compile(_NOT_WORD + r"eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),
    ),
    Shape(
        "private key",
        ("-----BEGIN ",),
        # Up to the END line, or, cut short (``head key.pem``), as far as
        # its lines are base64 or headers (Proc-Type: …): never the code after
        # a BEGIN line quoted in a program. Lines may end in an escaped \n (JSON).
        re.compile(
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----"
            r"(?:[ \t]*(?:\r?\n|\\n)(?:[A-Za-z0-9+/=]{1,128}|[A-Za-z-]+: [^\n\\]*)"
            r"(?=[ \t]*(?:\r?\n|\\n|\Z)))*"
            r"(?:[ \t]*(?:\r?\n|\\n)-----END [A-Z0-9 ]*PRIVATE KEY-----)?"
        ),
    ),
    Shape(
        "basic-auth url",  # scheme://user:password@host (git remote -v, DSNs)
        ("://",),
        # The password stops at the URL's own delimiters, so a port, a path or
        # an e-mail address in the query is never taken for one.
        re.compile(r"://(?P<user>[^\s:/?#@]*):(?P<password>[^\s/?#@]+)@"),
        _basic_auth,
    ),
    Shape(
        "authorization header",
        ("authorization", "api-key", "auth-token", "private-token", "gitlab-token"),
        re.compile(
            r"(?i)(?<!\w)(?:authorization|api-key|auth-token|private-token|gitlab-token)"
            r"[\"']?\s*[:=]\s*[\"']?"
            r"(?:(?:basic|bearer|token|bot|digest)\s+)?(?P<value>[A-Za-z0-9._~+/=-]{8,})"
        ),
        _masked_if_credential,
        ignore_case=True,
    ),
    Shape(
        "bearer",
        ("bearer",),
        re.compile(r"(?i)(?<![\w-])bearer\s+(?P<value>[A-Za-z0-9._~+/-]{8,}=*)"),
        _masked_if_credential,
        ignore_case=True,
    ),
    Shape(
        "password assignment",  # password=, passwd:, DB_PASSWORD=, "password": "…", --password=
        ("passw", "passphrase"),
        re.compile(
            r"(?i)pass(?:word|wd|phrase)[\w.-]*[\"']?(?P<sep>\s*(?:=(?!=)|:(?![:=]))\s*)"
            r"(?P<value>\"[^\"\n]*\"|'[^'\n]*'|[^\s,;&\"'][^\s,;&]*)"
            r"(?P<eol>[ \t]*[,;]?[ \t]*(?:\r?\n|\Z))?"
        ),
        _password_value,
        ignore_case=True,
    ),
    Shape(
        "secret assignment",  # SECRET_KEY=…, api_key: "…", client_secret=…: only random values
        ("secret", "token", "api", "access", "private"),
        re.compile(
            r"(?i)(?:secret|token|api[_-]?key|access[_-]?key|private[_-]?key)[\w.-]*[\"']?"
            r"\s*(?:=(?!=)|:(?![:=]))\s*[\"']?(?P<value>[A-Za-z0-9+/_.~-]{8,}={0,2})"
        ),
        _secret_value,
        ignore_case=True,
    ),
)

# Where a streamed credential may be starting: a stream holds back a trailing
# word that begins with (or is the beginning of) one of these.
SHAPE_PREFIXES: tuple[str, ...] = (
    "xoxa-",
    "xoxb-",
    "xoxp-",
    "xoxo-",
    "xoxs-",
    "xoxr-",
    "xoxe",
    "xapp-",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "glpat-",
    "gloas-",
    "gldt-",
    "glrt-",
    "glcbt-",
    "glptt-",
    "glft-",
    "glimt-",
    "glagent-",
    "glsoat-",
    "glffct-",
    "glwt-",
    "AKIA",
    "ASIA",
    "sk-",
    "sk_live_",
    "rk_live_",
    "sk_test_",
    "rk_test_",
    "AIza",
    "hf_",
    "npm_",
    "pypi-",
    "syt_",
    "eyJ",
    "-----BEGIN",
)


def _replace(text: str, matches: list[re.Match[str]], shape: Shape) -> str:
    pieces: list[str] = []
    done = 0
    for match in sorted(matches, key=lambda m: (m.start(), -m.end())):
        if match.start() < done:  # two anchors found the same credential
            continue
        replace = shape.replace
        pieces += [
            text[done : match.start()],
            replace if isinstance(replace, str) else replace(match),
        ]
        done = match.end()
    pieces.append(text[done:])
    return "".join(pieces)


def mask_shapes(text: str) -> str:
    lowered: str | None = None
    for shape in SHAPES:
        haystack = text
        if shape.ignore_case:
            if lowered is None:
                lowered = text.lower()
            if len(lowered) != len(text):  # a character whose lower case is longer
                text = shape.pattern.sub(shape.replace, text)
                lowered = None
                continue
            haystack = lowered
        matches: list[re.Match[str]] = []
        for anchor in shape.anchors:
            at = haystack.find(anchor)
            while at >= 0:
                match = shape.pattern.match(text, at)
                if match is not None:
                    matches.append(match)
                at = haystack.find(anchor, at + 1)
        if matches:
            text = _replace(text, matches, shape)
            lowered = None
    return text
