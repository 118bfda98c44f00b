"""Slash commands: which Slack command names exist, and what an invocation asks for.

Every directive in ``.agent/commands`` gets a Slack command of its own
(``/refactor``; ``git:commit`` becomes ``/git-commit``, since Slack allows
only lower-case letters, digits, ``-`` and ``_``). The app's own command,
``/threadwright``, takes a free-form task, a directive (``/threadwright
/refactor src/a.py``) or a control word (``help``, ``status``, ``stop``); the
control commands are not registered under their bare names because Slack
reserves some of them (``/status``). Invocations of ``/help``, ``/status`` and
``/stop`` are still understood if an operator adds them by hand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from bot.directives import BUILTIN_COMMANDS, DirectiveSet, parse_command_invocation

APP_COMMAND = "threadwright"
_SLACK_COMMAND_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,30}$")

SlashKind = Literal["task", "command", "control", "unknown"]


def slash_name(command_name: str) -> str | None:
    """The Slack command (without ``/``) for a directive name, or None if it cannot be one."""
    name = command_name.lower().replace(":", "-")
    if not _SLACK_COMMAND_NAME.match(name) or name == APP_COMMAND or name in BUILTIN_COMMANDS:
        return None
    return name


def slash_names(directives: DirectiveSet) -> dict[str, str]:
    """Slack command name → directive name, for every directive that can be one."""
    names: dict[str, str] = {}
    for command in sorted(directives.commands.values(), key=lambda c: c.name):
        name = slash_name(command.name)
        if name is not None and name not in names:
            names[name] = command.name
    return names


@dataclass(frozen=True, slots=True)
class SlashRequest:
    """What one slash command invocation asks for.

    ``name`` is the directive name for ``command``, the control word for
    ``control``, the typed command for ``unknown``; ``text`` is the task or
    the arguments.
    """

    kind: SlashKind
    name: str = ""
    text: str = ""


def resolve(command: str, text: str, directives: DirectiveSet) -> SlashRequest:
    name = command.strip().lstrip("/").lower()
    text = text.strip()
    if name == APP_COMMAND:
        word = text.lower().lstrip("/!")
        if word in BUILTIN_COMMANDS and " " not in word:
            return SlashRequest("control", word)
        parsed = parse_command_invocation(text)
        if parsed is not None:
            typed, arguments = parsed
            if typed in BUILTIN_COMMANDS:
                return SlashRequest("control", typed, arguments)
            found = directives.find_command(typed)
            if found is not None:
                return SlashRequest("command", found.name, arguments)
        # Like a mention: "/tmp is full" is a task that happens to start with a slash.
        return SlashRequest("task", "", text)
    if name in BUILTIN_COMMANDS:
        return SlashRequest("control", name, text)
    directive = slash_names(directives).get(name)
    if directive is not None:
        return SlashRequest("command", directive, text)
    return SlashRequest("unknown", name, text)
