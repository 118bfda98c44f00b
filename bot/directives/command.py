"""Slash commands: a Markdown directive that a chat message like ``/refactor x`` runs.

Argument expansion (:meth:`Command.expand`):

* ``$ARGUMENTS`` becomes the whole argument string (surrounding whitespace removed).
* ``$1`` … ``$9`` become positional arguments, split shell-style with
  :func:`shlex.split` (so ``"a b"`` is one argument); when the quotes do not
  balance, the string is split on whitespace instead. A missing positional
  becomes the empty string. Only one digit is read: ``$10`` is ``$1`` then ``0``.
* ``$$`` has no meaning of its own (``$$1`` is ``$`` followed by ``$1``), and
  text substituted in is never expanded again.
* When the body uses none of these placeholders and arguments were given,
  they are appended as a final ``Arguments: …`` line, so nothing typed is lost.

Claude Code's ``!`command``` (run a shell command while expanding) and
``@file`` (inline a file) stay literal text: expanding a directive never runs
anything or reads files, since directives come from the repository and
arguments from chat. The model can do either with its tools, under the policy.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from bot.directives.parse import FrontMatter, FrontMatterFields, normalize_name
from bot.directives.problems import DirectiveError, DirectiveProblem

Complexity = Literal["low", "medium", "high"]
COMPLEXITY_LEVELS: tuple[Complexity, ...] = ("low", "medium", "high")

# Claude Code's permission modes; the host maps them onto its policy. A
# directive may only ask for a mode: it must never loosen what the operator allows.
PERMISSION_MODES = ("default", "acceptEdits", "plan", "bypassPermissions")

COMMAND_KEYS = (
    "name",
    "description",
    "complexity",
    "argument-hint",
    "allowed-tools",
    "model",
    "local-only",
    "permission-mode",
)

_PLACEHOLDER = re.compile(r"\$(ARGUMENTS|[1-9])")
_INVOCATION = re.compile(
    r"\s*[/!](?P<name>[A-Za-z0-9][\w.-]*(?::[A-Za-z0-9][\w.-]*)*)(?=\s|$)\s*(?P<args>.*)",
    re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class Command:
    """One command directive. ``name`` has no leading slash: ``refactor``, ``git:commit``."""

    name: str
    body: str
    source: Path
    description: str = ""
    argument_hint: str | None = None
    complexity: Complexity | None = None
    # None: the file declares no restriction. Our tool names, in file order.
    allowed_tools: list[str] | None = None
    # Rules from Claude forms like ``Bash(git add:*)``: {"bash": ["git add:*"]}.
    tool_patterns: dict[str, list[str]] = field(default_factory=dict)
    model: str | None = None
    local_only: bool = False
    permission_mode: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # Which layer it came from: "agent" (.agent/), "claude" (.claude/), "default" (packaged).
    layer: str = "agent"

    @property
    def slash_name(self) -> str:
        return f"/{self.name}"

    def expand(self, arguments: str) -> str:
        """The directive text with ``arguments`` substituted (see the module docstring)."""
        whole = arguments.strip()
        positionals = _split_arguments(whole)
        used = False

        def substitute(match: re.Match[str]) -> str:
            nonlocal used
            used = True
            token = match.group(1)
            if token == "ARGUMENTS":
                return whole
            index = int(token) - 1
            return positionals[index] if index < len(positionals) else ""

        expanded = _PLACEHOLDER.sub(substitute, self.body)
        if not used and whole:
            expanded = f"{expanded}\n\nArguments: {whole}" if expanded else f"Arguments: {whole}"
        return expanded


def _split_arguments(arguments: str) -> list[str]:
    try:
        return shlex.split(arguments)
    except ValueError:
        return arguments.split()


def parse_command_invocation(text: str) -> tuple[str, str] | None:
    """``"/refactor src/a.py"`` or ``"!refactor src/a.py"`` → ``("refactor", "src/a.py")``.

    The name is lower-cased; the arguments keep their inner text (newlines too)
    without surrounding whitespace. None when the text does not start with a
    command (leading whitespace is fine). Whether the name is a known command is
    for the caller to check against :attr:`DirectiveSet.commands` and
    :data:`BUILTIN_COMMANDS`: ``/tmp is full`` parses as ``("tmp", "is full")``.
    """
    match = _INVOCATION.fullmatch(text)
    if match is None:
        return None
    return match.group("name").lower(), match.group("args").strip()


def command_from_front_matter(
    front: FrontMatter, default_name: str, layer: str
) -> tuple[Command, list[DirectiveProblem]]:
    """Build a command and its warnings from a split file.

    Raises :class:`DirectiveError` when the file cannot be used at all.
    """
    fields = FrontMatterFields(front)
    written_name = fields.text("name")
    name = normalize_name(written_name) if written_name else default_name
    if not name:
        raise fields.error(
            "name",
            f"{written_name or front.path.stem!r} is not a command name: use letters, digits, "
            "'-', '_', '.', "
            "and ':' between namespace parts",
        )
    if not front.body:
        raise DirectiveError(
            DirectiveProblem(front.path, None, None, "the command has no directive text")
        )
    complexity = cast(Complexity | None, fields.choice("complexity", COMPLEXITY_LEVELS))
    tools = fields.tools("allowed-tools")
    command = Command(
        name=name,
        body=front.body,
        source=front.path,
        description=fields.text("description") or "",
        argument_hint=fields.text("argument-hint") or None,
        complexity=complexity,
        allowed_tools=tools.tools if tools is not None else None,
        tool_patterns=tools.patterns if tools is not None else {},
        model=fields.text("model") or None,
        local_only=bool(fields.boolean("local-only")),
        permission_mode=fields.choice("permission-mode", PERMISSION_MODES),
        extra=fields.unread(),
        layer=layer,
    )
    return command, fields.warnings
