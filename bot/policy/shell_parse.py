"""Parsing a shell command with bashlex, and checking that bashlex got it right.

bashlex is a Python port of bash's own grammar, which makes it the right
tool for finding every program a command line would start. It is not bash,
though, and its gaps matter to a policy: it cannot parse ``case``, ``[[``,
``select``, ``coproc`` or arithmetic, it wants quoted here-document
delimiters verbatim, it does not look inside ``${…}``, and its quote removal
is approximate (``'a'$(rm x)'b'`` comes back as one literal word). A checker
that trusted its tree would miss commands.

So this module never trusts it alone. Before parsing it smooths over the
constructs bashlex cannot read but bash would run harmlessly (the ``time``
keyword, literal arithmetic, quoted here-document delimiters). After parsing
it checks the tree against the text: every non-blank character must belong
to some node (so nothing was skipped), every word is re-read by an
independent quote scanner that must find each expansion bashlex reported,
and here-document bodies end where bash would end them. What cannot be
reconciled becomes a doubt, and a doubt becomes a question to a person.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import bashlex
from bashlex import state as bashlex_state
from bashlex import tokenizer as bashlex_tokenizer

# bashlex is a recursive LALR parser: its time and stack grow with input, and
# the policy runs before every bash call. Real commands are far shorter.
MAX_COMMAND_CHARS = 10_000

NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_SUBSTITUTIONS = frozenset({"commandsubstitution", "processsubstitution"})
_WORD_KINDS = frozenset({"word", "assignment"})
# Nodes that stand for source text of their own; the others (command, list,
# pipeline, compound, if, for, while, function) only span their children.
_LEAF_KINDS = frozenset(
    {"word", "assignment", "operator", "reservedword", "pipe", "redirect", "heredoc"}
)
_METACHARACTERS = frozenset(" \t\n;&|()<>")
# Arithmetic made only of numbers and operators: nothing in it can run code.
_LITERAL_ARITHMETIC = re.compile(r"[0-9\s+\-*/%<>=!&|^~?:,()]*")
# A here-document operator and its delimiter word (``<<<`` is a here-string).
_HEREDOC_OPERATOR = re.compile(
    r"(?<!<)<<(?!<)(-?)([ \t]*)((?:'[^']*'|\"(?:[^\"\\]|\\.)*\"|\\.|[^\s;&|<>()'\"\\])+)"
)
_SAFE_SUBSCRIPT = r"\[(?:[0-9]+|[@*])\]"
_PLAIN_PARAMETER = re.compile(
    rf"#?(?:[A-Za-z_][A-Za-z0-9_]*|[0-9]+|[@*#?$!-])(?:{_SAFE_SUBSCRIPT})?(?P<rest>.*)", re.S
)
_NAME_LISTING = re.compile(r"![A-Za-z_][A-Za-z0-9_]*(?:[*@]|\[[@*]\])")
_LITERAL_SUBSTRING = re.compile(r":\s*-?\s*[0-9]+\s*(?::\s*-?\s*[0-9]+\s*)?")
_NOT_IMPLEMENTED = {
    "case": "a `case` statement",
    "pattern": "a `case` statement",
    "select": "a `select` loop",
    "coproc": "`coproc`",
    "arithmetic": "arithmetic",
    "cond": "a `[[ … ]]` test",
    "time": "the `time` keyword",
}


class ShellParseError(Exception):
    """The command cannot be parsed with confidence; the message says why."""


@dataclass(frozen=True, slots=True)
class Word:
    """One shell word as bash would see it before expansion.

    ``text`` has quotes removed and expansions left verbatim. ``literal`` is
    true only when bash would pass ``text`` unchanged: no parameter, command
    or tilde expansion, no glob or brace pattern, nothing the scanner doubted.
    """

    text: str
    literal: bool
    start: int
    substitutions: tuple[Any, ...] = ()  # command nodes of $(…), `…`, <(…), >(…)


@dataclass(frozen=True, slots=True)
class HereDoc:
    body: str
    quoted: bool  # a quoted delimiter: the body is taken literally


@dataclass(slots=True)
class ParsedScript:
    source: str  # the text bashlex parsed (after the rewrites described above)
    trees: list[Any]
    doubts: list[str] = field(default_factory=list)
    words: dict[int, Word] = field(default_factory=dict)  # by id() of the bashlex node
    heredocs: dict[int, HereDoc] = field(default_factory=dict)  # by id() of the redirect

    def word(self, node: Any) -> Word:
        return self.words[id(node)]


def parse_script(command: str) -> ParsedScript:
    """Parse ``command`` and cross-check the tree; raise :class:`ShellParseError`."""
    if len(command) > MAX_COMMAND_CHARS:
        raise ShellParseError(f"the command is longer than {MAX_COMMAND_CHARS} characters")
    if "\x00" in command:
        raise ShellParseError("the command contains a NUL byte")
    # bash accepts a here-document that runs to the end of input; bashlex
    # needs the final newline to see its delimiter line.
    source = command if command.endswith("\n") else command + "\n"
    source = _flatten_literal_arithmetic(source)
    source, quoted_delimiters = _unquote_heredoc_delimiters(source)
    source = _blank_time_keyword(source)
    try:
        trees = bashlex.parse(source)
    except NotImplementedError as exc:
        raise ShellParseError(f"bashlex cannot parse {_construct(str(exc))}") from exc
    except RecursionError as exc:
        raise ShellParseError("the command nests too deeply to parse") from exc
    except Exception as exc:  # bashlex raises ParsingError, but also asserts and IndexErrors
        if all(not line.strip() or line.lstrip().startswith("#") for line in source.split("\n")):
            return ParsedScript(source, [])  # bashlex trips over input that is only comments
        raise ShellParseError(f"the command does not parse as bash: {exc}") from exc
    # A comment-only line parses to a bare string, not a node.
    parsed = ParsedScript(source, [t for t in trees if isinstance(t, bashlex.ast.node)])
    _check_coverage(source, 0, len(source), parsed.trees)
    for node in _walk(parsed.trees):
        if node.kind in _WORD_KINDS:
            parsed.words[id(node)] = _scan_word(source, node, parsed.doubts)
        elif node.kind in _SUBSTITUTIONS:
            _check_substitution_coverage(source, node)
        elif node.kind == "redirect" and node.type in ("<<", "<<-"):
            parsed.heredocs[id(node)] = _read_heredoc(node, quoted_delimiters, parsed.doubts)
    return parsed


def _construct(message: str) -> str:
    for key, name in _NOT_IMPLEMENTED.items():
        if key in message:
            return name
    return message


def _walk(roots: list[Any]) -> Iterator[Any]:
    stack = list(reversed(roots))
    while stack:
        node = stack.pop()
        yield node
        children: list[Any] = []
        for attr in ("parts", "list", "redirects"):
            children.extend(getattr(node, attr, None) or [])
        for attr in ("command", "output", "heredoc"):
            child = getattr(node, attr, None)
            if isinstance(child, bashlex.ast.node):
                children.append(child)
        stack.extend(reversed(children))


def _flatten_literal_arithmetic(source: str) -> str:
    """Replace ``$((1+2))`` by same-length digits; refuse arithmetic on variables.

    bashlex cannot parse arithmetic at all. Literal arithmetic is harmless,
    but bash evaluates a variable's *value* as an arithmetic expression, and
    a value like ``a[$(rm -rf ~)]`` runs its command substitution. So
    ``$((x+1))`` is a place where data becomes code, and no parser can see it.
    """
    start = source.find("$((")
    while start >= 0:
        depth, index = 0, start + 1
        while index < len(source):
            if source[index] == "(":
                depth += 1
            elif source[index] == ")":
                depth -= 1
                if depth == 0:
                    break
            index += 1
        body = source[start + 3 : index - 1]
        if index >= len(source) or not _LITERAL_ARITHMETIC.fullmatch(body):
            raise ShellParseError(
                f"`{source[start : index + 1].strip()}` is arithmetic on variables or commands; "
                "bash evaluates a variable's value there as code"
            )
        source = source[:start] + "0" * (index + 1 - start) + source[index + 1 :]
        start = source.find("$((", start)
    return source


def _unquote_heredoc_delimiters(source: str) -> tuple[str, set[int]]:
    """Rewrite ``<<'EOF'`` to ``<<EOF  `` so bashlex ends the body where bash does.

    bashlex compares body lines with the delimiter as written, quotes
    included, while bash removes the quotes first; left alone, ``<<E"OF"``
    would make bashlex read the commands after the real end as body text.
    Returns the rewritten text and the offsets of delimiters that were quoted.
    """
    quoted: set[int] = set()
    pieces: list[str] = []
    last = 0
    for match in _HEREDOC_OPERATOR.finditer(source):
        raw = match.group(3)
        if not any(c in raw for c in "'\"\\"):
            continue
        delimiter = re.sub(r"\\(.)|'([^']*)'|\"((?:[^\"\\]|\\.)*)\"", _unquoted_part, raw)
        if not delimiter or any(c in _METACHARACTERS or c in "'\"\\$`" for c in delimiter):
            raise ShellParseError(f"unusual here-document delimiter {raw!r}")
        quoted.add(match.start(3))
        pieces.append(source[last : match.start(3)])
        pieces.append(delimiter.ljust(len(raw)))
        last = match.end(3)
    pieces.append(source[last:])
    return "".join(pieces), quoted


def _unquoted_part(match: re.Match[str]) -> str:
    if match.group(1) is not None:
        return match.group(1)
    if match.group(2) is not None:
        return match.group(2)
    return re.sub(r"\\([\\\"$`])", r"\1", match.group(3))


def _blank_time_keyword(source: str) -> str:
    """Blank out the ``time`` keyword (and ``-p``), which bashlex cannot parse.

    The keyword only times the pipeline after it, which is still parsed and
    checked; ``time`` used as a program (``env time rm``) is not a keyword.
    """
    if "time" not in source:
        return source
    keyword = (bashlex_tokenizer.tokentype.TIME, bashlex_tokenizer.tokentype.TIMEOPT)
    try:
        tokens = bashlex_tokenizer.tokenizer(source, parserstate=bashlex_state.parserstate())
        spans = [(t.lexpos, t.endlexpos) for t in tokens if t.ttype in keyword]
    except Exception:
        # The bare tokenizer reads here-document bodies as commands and may
        # choke on them; the full parse then reports whatever is really wrong.
        return source
    chars = list(source)
    for start, end in spans:
        chars[start:end] = " " * (end - start)
    return "".join(chars)


def _check_coverage(source: str, low: int, high: int, roots: list[Any]) -> None:
    """Fail unless every non-blank character in ``source[low:high]`` is in some node."""
    covered = bytearray(high - low)
    for node in _walk(roots):
        if node.kind in _LEAF_KINDS:
            start, end = max(node.pos[0], low), min(node.pos[1], high)
            covered[start - low : end - low] = b"\x01" * max(0, end - start)
    index = low
    while index < high:
        char = source[index]
        if covered[index - low] or char in " \t\n":
            index += 1
        elif source.startswith("\\\n", index):
            index += 2
        elif char == "#" and (index == low or source[index - 1] in " \t\n;&|()"):
            newline = source.find("\n", index)
            index = high if newline < 0 or newline > high else newline
        else:
            snippet = source[index : index + 20].split("\n")[0]
            raise ShellParseError(f"the parser skipped part of the command near `{snippet}`")


def _check_substitution_coverage(source: str, node: Any) -> None:
    start, end = node.pos
    opener = 1 if source[start] == "`" else 2
    _check_coverage(source, start + opener, end - 1, [node.command])


def _read_heredoc(node: Any, quoted_delimiters: set[int], doubts: list[str]) -> HereDoc:
    delimiter = node.output.word
    quoted = node.output.pos[0] in quoted_delimiters
    lines = node.heredoc.value.split("\n") if node.heredoc is not None else []
    # The body must end at the first line equal to the delimiter, as in bash.
    if not lines or lines[-1] != delimiter or delimiter in lines[:-1]:
        doubts.append(f"cannot tell where the here-document `<<{delimiter}` ends")
        return HereDoc("", quoted)
    body = "".join(line + "\n" for line in lines[:-1])
    if not quoted:
        doubts.extend(_heredoc_expansion_doubts(body, delimiter))
    return HereDoc(body, quoted)


def _heredoc_expansion_doubts(body: str, delimiter: str) -> list[str]:
    """An unquoted here-document expands ``$(…)``, `` `…` `` and ``${…}`` in its body."""
    doubts: list[str] = []
    index = 0
    while index < len(body):
        char = body[index]
        if char == "\\":
            index += 2
            continue
        if char == "`" or body.startswith(("$(", "$["), index):
            doubts.append(f"the here-document `<<{delimiter}` runs a command substitution")
            break
        if body.startswith("${", index):
            close = body.find("}", index)
            reason = parameter_doubt(body[index + 2 : close] if close > 0 else body[index + 2 :])
            if reason:
                doubts.append(reason)
        index += 1
    return doubts


def parameter_doubt(value: str) -> str | None:
    """Why the parameter expansion ``${value}`` could run code, or None if it cannot.

    Array subscripts, substring offsets and indirection are evaluated as
    arithmetic, which runs any ``$(…)`` inside a variable's value; ``@P``
    expands the value as a prompt, with the same effect. bashlex does not
    parse inside ``${…}`` at all, so nested substitutions are refused too.
    """
    shown = f"`${{{value}}}`"
    if any(token in value for token in ("$(", "`", "${", "$[", "<(", ">(")):
        return f"{shown} nests an expansion the parser does not look into"
    if value.startswith("!") and not _NAME_LISTING.fullmatch(value):
        return f"{shown} is indirect expansion; bash may evaluate the value as code"
    match = _PLAIN_PARAMETER.fullmatch(value.removeprefix("!"))
    rest = match.group("rest") if match else value
    if match is None or rest.startswith("["):
        return f"{shown} indexes an array by expression, which bash evaluates as code"
    if rest.startswith("@"):
        return None if rest[1:] in tuple("QEAaUuLKk") else f"{shown} expands the value as code"
    if rest.startswith(":") and rest[1:2] not in tuple("-=?+"):
        if not _LITERAL_SUBSTRING.fullmatch(rest):
            return f"{shown} takes a substring at an offset bash evaluates as code"
    elif rest and rest[0] not in "-=?+#%/^,:":
        return f"{shown} is a parameter expansion the checker does not understand"
    return None


def _scan_word(source: str, node: Any, doubts: list[str]) -> Word:
    """Read one word the way bash would, and check bashlex saw its expansions.

    Quote removal is done here rather than trusting bashlex's, and every
    unquoted ``$(``, `` ` ``, ``<(``, ``>(`` or ``$name`` must line up with
    an expansion node bashlex produced at the same offset.
    """
    start, end = node.pos
    raw = source[start:end]
    parts = {part.pos[0] - start: part for part in getattr(node, "parts", None) or []}
    substitutions = tuple(p.command for p in parts.values() if p.kind in _SUBSTITUTIONS)
    text: list[str] = []
    literal, double_quoted, brace, index = True, False, 0, 0

    def doubt(reason: str) -> Word:
        doubts.append(reason)
        return Word("".join(text) + raw[index:], False, start, substitutions)

    while index < len(raw):
        char = raw[index]
        if char == "\\":
            following = raw[index + 1 : index + 2]
            if following == "\n":
                index += 2
            elif double_quoted and following not in ("$", "`", '"', "\\"):
                text.append(char)
                index += 1
            else:
                text.append(following)
                index += 2
            continue
        if char == '"':
            double_quoted = not double_quoted
            index += 1
            continue
        if not double_quoted:
            if char == "'":
                close = raw.find("'", index + 1)
                if close < 0:
                    return doubt(f"unterminated quote in `{raw}`")
                text.append(raw[index + 1 : close])
                index = close + 1
                continue
            if raw.startswith("$'", index):
                close = _ansi_c_end(raw, index + 2)
                if close < 0:
                    return doubt(f"unterminated quote in `{raw}`")
                body = raw[index + 2 : close]
                literal = literal and "\\" not in body  # escapes are not decoded here
                text.append(body)
                index = close + 1
                continue
            if raw.startswith('$"', index):
                double_quoted = True
                index += 2
                continue
            if char in _METACHARACTERS and not raw.startswith(("<(", ">("), index):
                return doubt(f"the parser read `{raw}` as one word, but bash would split it")
            if char in "*?" or (char == "[" and "]" in raw[index + 1 :]):
                literal = False  # a glob: bash substitutes matching file names
            elif char == "{":
                brace = 1
            elif char == "," or raw.startswith("..", index):
                brace = 2 if brace else 0
            elif char == "}" and brace == 2:
                literal = False  # brace expansion turns one word into several
        expansion = _expansion_at(raw, index, double_quoted)
        if expansion is None:
            if char == "~" and index in parts and parts[index].kind == "tilde":
                literal = False
            text.append(char)
            index += 1
            continue
        part = parts.get(index)
        if part is None or part.kind != expansion or part.pos[1] - start <= index:
            return doubt(f"the parser missed the expansion at `{raw[index:]}`")
        close = part.pos[1] - start
        if expansion == "parameter" and raw[index + 1] == "{":
            reason = parameter_doubt(part.value)
            if reason:
                doubts.append(reason)
        if char == "`" and "\\" in raw[index:close]:
            return doubt(f"backslashes inside backquotes in `{raw}` are ambiguous")
        text.append(raw[index:close])
        literal = False
        index = close
    if double_quoted:
        return doubt(f"unterminated quote in `{raw}`")
    return Word("".join(text), literal, start, substitutions)


def _expansion_at(raw: str, index: int, double_quoted: bool) -> str | None:
    """The bashlex node kind an expansion starting at ``raw[index]`` must have."""
    char = raw[index]
    following = raw[index + 1 : index + 2]
    if char == "`":
        return "commandsubstitution"
    if char == "$" and following == "(":
        return "commandsubstitution"
    if char == "$" and following and (following in "{_@*#?$!-" or following.isalnum()):
        return "parameter"
    if char in "<>" and following == "(" and not double_quoted:
        return "processsubstitution"
    return None


def _ansi_c_end(raw: str, index: int) -> int:
    while index < len(raw):
        if raw[index] == "\\":
            index += 2
        elif raw[index] == "'":
            return index
        else:
            index += 1
    return -1
