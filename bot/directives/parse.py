"""Reading one directive file: YAML front matter, typed fields, tool lists.

Front matter is split and loaded with ``python-frontmatter``'s YAML handler
(``---`` lines; the JSON and TOML forms it also knows are not directives). Only
a file whose first non-blank line is ``---`` has front matter, so a body that
uses ``---`` as a Markdown rule is never mistaken for it. YAML errors are
reported with the line in the file (the ``---`` line and leading blank lines
counted), and a value of the wrong type names its key and what is allowed. An
``argument-hint`` starting with ``[`` or ``{`` is read as literal text, as
Claude Code's files write ``argument-hint: [message]`` unquoted.

Front-matter keys are matched case-insensitively with ``_`` and ``-`` treated
alike (``argument_hint`` is ``argument-hint``). Keys a reader does not know are
kept, verbatim, in ``extra`` and reported as warnings.

Tool lists (``allowed-tools`` for commands, ``tools`` for sub-agents) are a YAML
list or one string separated by commas or spaces. Claude Code's names map to
ours: Bash→bash, Read→read_file, Write→write_file, Edit/MultiEdit→edit_file,
Grep→grep, Glob/LS→glob. A parenthesised rule such as ``Bash(git add:*)`` keeps
the tool (``bash``) and records ``git add:*`` as a pattern note for the policy;
a tool also listed bare has no patterns. Claude tools with no threadwright
counterpart (WebFetch, Task, TodoWrite, …) are dropped with a warning; any other
name is kept as written, since plugins may register more tools.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import frontmatter
import yaml

from bot.directives.problems import DirectiveError, DirectiveProblem

# A directive is a prompt, not a document store: refuse anything bigger so a
# stray generated file cannot flood the model's context.
MAX_DIRECTIVE_BYTES = 256 * 1024

THREADWRIGHT_TOOLS = ("bash", "read_file", "write_file", "edit_file", "grep", "glob", "think")

CLAUDE_TOOL_NAMES = {
    "bash": "bash",
    "read": "read_file",
    "write": "write_file",
    "edit": "edit_file",
    "multiedit": "edit_file",
    "grep": "grep",
    "glob": "glob",
    "ls": "glob",
}

CLAUDE_TOOLS_WITHOUT_COUNTERPART = frozenset(
    {
        "webfetch",
        "websearch",
        "task",
        "todowrite",
        "todoread",
        "notebookedit",
        "notebookread",
        "bashoutput",
        "killshell",
        "killbash",
        "slashcommand",
        "exitplanmode",
        "skill",
    }
)

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]*(?::[a-z0-9][a-z0-9_.-]*)*")

_YAML_HANDLER = frontmatter.YAMLHandler()
_TOOL_TOKEN = re.compile(r"([A-Za-z_][\w.-]*)(?:\((.*)\))?", re.DOTALL)
_BRACKETED_HINT = re.compile(
    r"^(\s*argument[-_]hint\s*:[ \t]*)([\[{][^\n]*?)[ \t]*$", re.IGNORECASE | re.MULTILINE
)
_TRUE_WORDS = frozenset({"true", "yes", "on", "1"})
_FALSE_WORDS = frozenset({"false", "no", "off", "0"})


@dataclass(frozen=True, slots=True)
class FrontMatter:
    """A directive file split into its metadata and its Markdown body."""

    path: Path
    meta: dict[str, Any]
    body: str
    yaml_text: str
    # 1-based file line on which ``yaml_text`` begins (it begins mid-line, right
    # after the opening ``---``), so YAML's 0-based line N is file line first_line + N.
    first_line: int
    has_front_matter: bool


@dataclass(frozen=True, slots=True)
class ToolSelection:
    tools: list[str]
    patterns: dict[str, list[str]]
    warnings: list[str] = field(default_factory=list)


def read_text(path: Path) -> str:
    """The file's text, or a :class:`DirectiveError` saying why it cannot be used."""
    try:
        size = path.stat().st_size
        if size > MAX_DIRECTIVE_BYTES:
            raise DirectiveError(
                DirectiveProblem(
                    path, None, None, f"file is {size} bytes; the limit is {MAX_DIRECTIVE_BYTES}"
                )
            )
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DirectiveError(DirectiveProblem(path, None, None, f"not UTF-8 text: {exc}")) from exc
    except OSError as exc:
        raise DirectiveError(
            DirectiveProblem(path, None, None, f"cannot read: {exc.strerror or exc}")
        ) from exc


def split_front_matter(text: str, path: Path) -> FrontMatter:
    """Split ``text`` into front matter and body; YAML errors carry the file line."""
    content = text.lstrip()
    leading_lines = text[: len(text) - len(content)].count("\n")
    if not _YAML_HANDLER.detect(content):
        return FrontMatter(path, {}, text.strip(), "", 1, has_front_matter=False)
    boundary = _YAML_HANDLER.FM_BOUNDARY
    assert boundary is not None
    opening = boundary.match(content)
    assert opening is not None  # detect() just matched it
    closing = boundary.search(content, opening.end())
    if closing is None:
        raise DirectiveError(
            DirectiveProblem(
                path,
                leading_lines + 1,
                None,
                "front matter opened with '---' is never closed by another '---' line",
            )
        )
    yaml_text = content[opening.end() : closing.start()]
    first_line = leading_lines + 1 + content[: opening.end()].count("\n")
    try:
        loaded = _YAML_HANDLER.load(_quote_bracketed_hints(yaml_text))
    except yaml.YAMLError as exc:
        raise DirectiveError(_yaml_problem(exc, path, first_line, yaml_text)) from exc
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, dict):
        raise DirectiveError(
            DirectiveProblem(
                path,
                first_line + 1,
                None,
                f"front matter must be a mapping of keys to values, not {type(loaded).__name__}",
            )
        )
    meta = {str(key): value for key, value in loaded.items()}
    body = content[closing.end() :].strip()
    return FrontMatter(path, meta, body, yaml_text, first_line, has_front_matter=True)


def _quote_bracketed_hints(yaml_text: str) -> str:
    # Claude Code's docs write ``argument-hint: [message]`` and even
    # ``argument-hint: [pr] [priority]`` unquoted: YAML would read a list, or
    # fail. The hint is display text, so such a value is quoted before loading
    # (one line in, one line out, so error line numbers stay right).
    def quote(match: re.Match[str]) -> str:
        return f"{match.group(1)}'{match.group(2).replace(chr(39), chr(39) * 2)}'"

    return _BRACKETED_HINT.sub(quote, yaml_text)


def _yaml_problem(
    exc: yaml.YAMLError, path: Path, first_line: int, yaml_text: str
) -> DirectiveProblem:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        # An unclosed bracket or quote is only noticed at the end of the front
        # matter (the closing '---'); the line where it was opened is the useful one.
        if (
            exc.context_mark is not None
            and mark is not None
            and mark.index >= len(yaml_text.rstrip())
        ):
            mark = exc.context_mark
        what = "; ".join(part for part in (exc.context, exc.problem) if part) or "bad YAML"
        if mark is not None:
            return DirectiveProblem(
                path,
                first_line + mark.line,
                None,
                f"invalid YAML front matter: {what} (column {mark.column + 1})",
            )
        return DirectiveProblem(path, None, None, f"invalid YAML front matter: {what}")
    return DirectiveProblem(path, None, None, f"invalid YAML front matter: {exc}")


def normalize_key(key: str) -> str:
    return key.strip().lower().replace("_", "-")


def normalize_name(raw: str) -> str | None:
    """``/Refactor`` → ``refactor``; None when it is not a usable name."""
    name = raw.strip().removeprefix("/").lower()
    return name if NAME_PATTERN.fullmatch(name) else None


class FrontMatterFields:
    """Typed access to front-matter values; remembers which keys were read."""

    def __init__(self, front: FrontMatter) -> None:
        self._front = front
        self._values: dict[str, tuple[str, Any]] = {
            normalize_key(key): (key, value) for key, value in front.meta.items()
        }
        self._read: set[str] = set()
        self.warnings: list[DirectiveProblem] = []

    @property
    def path(self) -> Path:
        return self._front.path

    def line_of(self, key: str) -> int | None:
        original = self._values.get(normalize_key(key), (key, None))[0]
        pattern = re.compile(rf"^\s*['\"]?{re.escape(original)}['\"]?\s*:")
        for index, line in enumerate(self._front.yaml_text.split("\n")):
            if pattern.match(line):
                return self._front.first_line + index
        return None

    def error(self, key: str, message: str) -> DirectiveError:
        written = self._values.get(normalize_key(key), (key, None))[0]
        return DirectiveError(DirectiveProblem(self.path, self.line_of(key), written, message))

    def warn(self, key: str | None, message: str) -> None:
        line = self.line_of(key) if key else None
        self.warnings.append(DirectiveProblem(self.path, line, key, message, "warning"))

    def raw(self, key: str) -> Any:
        self._read.add(key)
        return self._values.get(key, (key, None))[1]

    def text(self, key: str) -> str | None:
        value = self.raw(key)
        if value is None:
            return None
        if isinstance(value, str):
            return value.strip()
        if isinstance(value, bool | int | float | date | datetime):
            return str(value)
        raise self.error(key, f"must be text, not a {_yaml_type(value)}")

    def boolean(self, key: str) -> bool | None:
        value = self.raw(key)
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, str | int) and str(value).strip().lower() in _TRUE_WORDS:
            return True
        if isinstance(value, str | int) and str(value).strip().lower() in _FALSE_WORDS:
            return False
        raise self.error(key, f"must be true or false (got {value!r})")

    def choice(self, key: str, allowed: tuple[str, ...]) -> str | None:
        value = self.text(key)
        if value is None:
            return None
        for option in allowed:
            if value.lower() == option.lower():
                return option
        raise self.error(key, f"must be one of {', '.join(allowed)} (got {value!r})")

    def tools(self, key: str) -> ToolSelection | None:
        value = self.raw(key)
        if value is None:
            return None
        if isinstance(value, str):
            items = [value]
        elif isinstance(value, list) and all(isinstance(item, str) for item in value):
            items = value
        else:
            raise self.error(key, "must be a list of tool names or a comma-separated string")
        try:
            selection = parse_tool_list(items)
        except ValueError as exc:
            raise self.error(key, str(exc)) from exc
        for message in selection.warnings:
            self.warn(key, message)
        return selection

    def unread(self) -> dict[str, Any]:
        """Keys nobody asked for, under their original spelling, each warned about once."""
        extra: dict[str, Any] = {}
        for normalized, (original, value) in self._values.items():
            if normalized not in self._read:
                extra[original] = value
                self.warn(original, f"unknown front-matter key {original!r} kept in extra")
        return extra


def parse_tool_list(items: list[str]) -> ToolSelection:
    """Tool names in order, without duplicates, mapped from Claude Code's names."""
    tools: list[str] = []
    patterns: dict[str, list[str]] = {}
    bare: set[str] = set()
    warnings: list[str] = []
    for item in items:
        for token in _split_tool_tokens(item):
            match = _TOOL_TOKEN.fullmatch(token)
            if match is None:
                raise ValueError(f"cannot read tool {token!r}; expected Name or Name(pattern)")
            written, pattern = match.group(1), match.group(2)
            lowered = written.lower()
            if lowered in CLAUDE_TOOLS_WITHOUT_COUNTERPART:
                warnings.append(f"Claude tool {written!r} has no threadwright counterpart; ignored")
                continue
            ours = lowered if lowered in THREADWRIGHT_TOOLS else written
            tool = CLAUDE_TOOL_NAMES.get(lowered, ours)
            if tool not in tools:
                tools.append(tool)
            if pattern is None or not pattern.strip():
                bare.add(tool)
            else:
                patterns.setdefault(tool, []).append(pattern.strip())
    return ToolSelection(
        tools, {tool: rules for tool, rules in patterns.items() if tool not in bare}, warnings
    )


def _split_tool_tokens(text: str) -> list[str]:
    # Commas and spaces separate tools, except inside parentheses: the pattern
    # in ``Bash(git add:*)`` contains a space.
    tokens: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(depth - 1, 0)
        if depth == 0 and (char == "," or char.isspace()):
            if current:
                tokens.append("".join(current))
                current = []
            continue
        current.append(char)
    if current:
        tokens.append("".join(current))
    return tokens


def _yaml_type(value: Any) -> str:
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, list):
        return "list"
    return type(value).__name__
