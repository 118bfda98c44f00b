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
to some node (so nothing was skipped), every word is re-read by the
independent scanner of :mod:`bot.policy.shell_words`, which must find a
node for each expansion, and here-document bodies must start and end where
bash would put them. Parsing runs under a call budget, since bashlex loops
forever on some inputs. What cannot be reconciled becomes a doubt, and a
doubt becomes a question to a person.
"""

from __future__ import annotations

import bisect
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import bashlex
from bashlex import state as bashlex_state
from bashlex import tokenizer as bashlex_tokenizer

from bot.policy.shell_words import METACHARACTERS, Word, parameter_doubt, scan_word

# bashlex is a recursive LALR parser: its time and stack grow with input, and
# the policy runs before every bash call. Real commands are far shorter.
MAX_COMMAND_CHARS = 10_000
# bashlex loops forever on some inputs (a single-quoted `${` with no `}` in
# the word makes its expansion restart at 0 and grow a list until memory runs
# out). Parsing is bounded by a count of function calls, generous for real
# commands, which take 100 to 250 calls a character.
_PARSE_CALLS_BASE = 200_000
_PARSE_CALLS_PER_CHAR = 300

_SUBSTITUTIONS = frozenset({"commandsubstitution", "processsubstitution"})
_WORD_KINDS = frozenset({"word", "assignment"})
# Nodes that stand for source text of their own; the others (command, list,
# pipeline, compound, if, for, while, function) only span their children.
_LEAF_KINDS = frozenset(
    {"word", "assignment", "operator", "reservedword", "pipe", "redirect", "heredoc"}
)
# Arithmetic made only of numbers and operators: nothing in it can run code.
_LITERAL_ARITHMETIC = re.compile(r"[0-9\s+\-*/%<>=!&|^~?:,()]*")
# A here-document operator and its delimiter word (``<<<`` is a here-string).
_HEREDOC_OPERATOR = re.compile(
    r"(?<!<)<<(?!<)(-?)([ \t]*)((?:'[^']*'|\"(?:[^\"\\]|\\.)*\"|\\.|[^\s;&|<>()'\"\\])+)"
)
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


class _ParseBudgetExceeded(BaseException):
    """Raised from a profile hook; a BaseException so bashlex cannot swallow it."""


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
    original = command if command.endswith("\n") else command + "\n"
    # Every rewrite keeps the length, so offsets in the tree are offsets in
    # the original text too.
    source, arithmetic = _flatten_arithmetic(original)
    source, quoted_delimiters = _unquote_heredoc_delimiters(source)
    try:
        source = _bounded(_blank_time_keyword, source)
        trees = _bounded(bashlex.parse, source)
    except _ParseBudgetExceeded as exc:
        raise ShellParseError("the parser gave up on this command (it took too long)") from exc
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
    literal_spans: list[tuple[int, int]] = []  # bodies of quoted here-documents
    leaves = sorted(n.pos for n in _walk(parsed.trees) if n.kind in _LEAF_KINDS - {"heredoc"})
    for node in _walk(parsed.trees):
        if node.kind in _WORD_KINDS:
            parsed.words[id(node)] = scan_word(
                source, node, parsed.doubts, lambda part: _substitution_end(source, part)
            )
        elif node.kind in _SUBSTITUTIONS:
            _check_substitution_coverage(source, node)
        elif node.kind == "redirect" and node.type in ("<<", "<<-"):
            heredoc = _read_heredoc(original, node, quoted_delimiters, parsed.doubts)
            if node.heredoc is not None and _heredoc_misplaced(source, node, leaves):
                parsed.doubts.append(
                    f"cannot tell where the here-document `<<{node.output.word}` is"
                )
            parsed.heredocs[id(node)] = heredoc
            if heredoc.quoted and node.heredoc is not None:
                literal_spans.append(node.heredoc.pos)
    for start, text in arithmetic:
        if not any(low <= start < high for low, high in literal_spans):
            parsed.doubts.append(
                f"`{text}` is arithmetic on variables or commands; "
                "bash evaluates a variable's value there as code"
            )
    return parsed


def _bounded(parse: Callable[[str], Any], source: str) -> Any:
    budget = _PARSE_CALLS_BASE + _PARSE_CALLS_PER_CHAR * len(source)
    calls = 0

    def count(frame: Any, event: str, arg: Any) -> None:
        nonlocal calls
        calls += 1
        if calls > budget:
            raise _ParseBudgetExceeded

    previous = sys.getprofile()
    sys.setprofile(count)
    try:
        return parse(source)
    finally:
        sys.setprofile(previous)


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


def _flatten_arithmetic(source: str) -> tuple[str, list[tuple[int, str]]]:
    """Replace each ``$((…))`` by same-length digits, which bashlex can parse.

    bashlex cannot parse arithmetic at all. Literal arithmetic is harmless,
    but bash evaluates a variable's *value* as an arithmetic expression, and
    a value like ``a[$(rm -rf ~)]`` runs its command substitution: ``$((x+1))``
    is a place where data becomes code. Those are returned (offset, text) so
    the caller can doubt them, unless they sit in a quoted here-document.
    """
    non_literal: list[tuple[int, str]] = []
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
        if index >= len(source):
            raise ShellParseError(f"unterminated arithmetic `{source[start : start + 20]}…`")
        if not _LITERAL_ARITHMETIC.fullmatch(source[start + 3 : index - 1]):
            non_literal.append((start, source[start : index + 1]))
        source = source[:start] + "0" * (index + 1 - start) + source[index + 1 :]
        start = source.find("$((", start)
    return source, non_literal


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
        if not delimiter or any(c in METACHARACTERS or c in "'\"\\$`" for c in delimiter):
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
    end = _substitution_end(source, node)
    if end is not None:  # otherwise the word scan has already doubted it
        opener = 1 if source[node.pos[0]] == "`" else 2
        _check_coverage(source, node.pos[0] + opener, end - 1, [node.command])


def _substitution_end(source: str, node: Any) -> int | None:
    """Where ``$(…)``, ``<(…)`` or `` `…` `` really ends, or None if unclear.

    bashlex ends the span of ``$(…)`` right after the inner command, so
    trailing blanks, a comment or a here-document body before the ``)`` are
    outside it; the real end is the first ``)`` after all of those.
    """
    start, end = node.pos
    if source[start] == "`":
        return end if source[end - 1] == "`" else None
    leaves = (n.pos[1] for n in _walk([node.command]) if n.kind in _LEAF_KINDS)
    index = max(leaves, default=start + 2)
    while index < len(source):
        if source[index] in " \t\n":
            index += 1
        elif source.startswith("\\\n", index):
            index += 2
        elif source[index] == "#":
            index = source.find("\n", index)
            if index < 0:
                return None
        elif source[index] == ")":
            return index + 1
        else:
            return None
    return None


def _read_heredoc(
    original: str, node: Any, quoted_delimiters: set[int], doubts: list[str]
) -> HereDoc:
    """The body as bash reads it, from the original text (bashlex saw it rewritten)."""
    delimiter = node.output.word
    quoted = node.output.pos[0] in quoted_delimiters
    lines = original[slice(*node.heredoc.pos)].split("\n") if node.heredoc is not None else []
    if node.type == "<<-":
        lines = [line.lstrip("\t") for line in lines]
    # The body must end at the first line equal to the delimiter, as in bash.
    if not lines or lines[-1] != delimiter or delimiter in lines[:-1]:
        doubts.append(f"cannot tell where the here-document `<<{delimiter}` ends")
        return HereDoc("", quoted)
    body = "".join(line + "\n" for line in lines[:-1])
    if not quoted:
        doubts.extend(_heredoc_expansion_doubts(body, delimiter))
    return HereDoc(body, quoted)


def _heredoc_misplaced(source: str, node: Any, leaves: list[tuple[int, int]]) -> bool:
    """True if parsed commands sit between the operator's line and the body.

    Bash reads a here-document body from the line after its operator. Inside
    compound commands bashlex reads it too late and parses the body lines as
    commands, so those (unchecked by bash's rules) would sit in between.
    """
    index = node.output.pos[1]  # the redirect's own span may already include the body
    while True:
        newline = source.find("\n", index)
        if newline < 0:
            return True
        # A newline inside a word (a multi-line quoted string) does not end
        # the line; the words around the operator (its `$(…)`) do not count.
        inside = [
            (low, high)
            for low, high in leaves
            if low <= newline < high and not low <= node.pos[0] < high
        ]
        if not inside:
            break
        index = max(end for _, end in inside)
    start = bisect.bisect_right(leaves, (newline, len(source)))
    body_start = node.heredoc.pos[0]
    return body_start <= newline or (start < len(leaves) and leaves[start][0] < body_start)


def _heredoc_expansion_doubts(body: str, delimiter: str) -> list[str]:
    """An unquoted here-document expands ``$(…)``, `` `…` `` and ``${…}`` in its body."""
    doubts: list[str] = []
    index = 0
    while index < len(body):
        char = body[index]
        if char == "\\":
            index += 2
            continue
        if body.startswith("$((", index):
            index += 3  # arithmetic: judged with the rest of the command's arithmetic
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
