"""Reading one shell word the way bash would, independently of bashlex.

bashlex's own quote removal is approximate, and it skips expansions it
does not recognise (``'a'$(rm x)'b'`` comes back as one literal word, and
``${x:-$(rm x)}`` as a plain parameter). The scanner here follows bash's
quoting rules itself: it removes quotes, notes globs, brace patterns and
tildes, and requires every expansion it finds to match a node bashlex
produced at the same offset. It also knows which parameter expansions make
bash evaluate a variable's value as code.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
METACHARACTERS = frozenset(" \t\n;&|()<>")
_SUBSTITUTIONS = frozenset({"commandsubstitution", "processsubstitution"})
_SAFE_SUBSCRIPT = r"\[(?:[0-9]+|[@*])\]"
_PLAIN_PARAMETER = re.compile(
    rf"#?(?:[A-Za-z_][A-Za-z0-9_]*|[0-9]+|[@*#?$!-])(?:{_SAFE_SUBSCRIPT})?(?P<rest>.*)", re.S
)
_NAME_LISTING = re.compile(r"![A-Za-z_][A-Za-z0-9_]*(?:[*@]|\[[@*]\])")
_LITERAL_SUBSTRING = re.compile(r":\s*-?\s*[0-9]+\s*(?::\s*-?\s*[0-9]+\s*)?")


@dataclass(frozen=True, slots=True)
class Word:
    """One shell word as bash would see it before expansion.

    ``text`` has quotes removed and expansions left verbatim. ``literal`` is
    true only when bash would pass ``text`` unchanged: no parameter, command
    or tilde expansion, no glob or brace pattern, nothing the scanner doubted.
    ``substitutions`` are all the commands bashlex found in the word, even one
    the scanner reads as quoted: a spurious program only makes a question,
    a missed one would be a hole.
    """

    text: str
    literal: bool
    start: int
    substitutions: tuple[Any, ...] = ()  # command nodes of $(…), `…`, <(…), >(…)


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


def scan_word(
    source: str,
    node: Any,
    doubts: list[str],
    substitution_end: Callable[[Any], int | None],
) -> Word:
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
            if char in METACHARACTERS and not raw.startswith(("<(", ">("), index):
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
        if part is None or part.kind != expansion:
            return doubt(f"the parser missed the expansion at `{raw[index:]}`")
        end = substitution_end(part) if expansion in _SUBSTITUTIONS else part.pos[1]
        if end is None or not index < end - start <= len(raw):
            return doubt(f"cannot tell where the expansion at `{raw[index:]}` ends")
        close = end - start
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
