"""The built-in tool policy: which tool calls run, which need an approval, which are refused.

Implemented as a ``before_tool_call`` hook like any third-party policy.

- ``bash``: the command is parsed (:mod:`bot.policy.shell`); every program
  that would run must be in ``tools.bash.allowed_commands``, and every file
  a redirection writes must be inside the workspace. Otherwise the call is
  outside policy.
- ``write_file``/``edit_file`` on a directive or memory file (``AGENTS.md``,
  ``CLAUDE.md``, ``.agent/…``; :mod:`bot.directives.paths`), and a bash
  redirection into one, are outside policy whatever the mode: later sessions
  would read them as trusted instructions. (What the policy cannot see, a
  program writing such a file, the directive loader's change guard catches.)
- ``permission_mode`` decides what "outside policy" means: ``ask`` (an
  approver decides in the thread), ``allowlist`` (refused without asking),
  ``deny`` (read-only: no shell, no file writes at all). The mode comes from
  ``access.permission_mode``, overridden per room by
  ``access.room_permission_modes`` and per command by its front matter —
  a command file may only tighten the mode, never loosen it.

Model output and file contents never reach this decision: only the
configuration and the approvers can widen what runs.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any

from bot import hookimpl

WRITING_TOOLS = frozenset({"write_file", "edit_file"})
STRICTNESS = {"ask": 0, "allowlist": 1, "deny": 2}
# Claude Code's modes, as command files may carry them.
CLAUDE_MODES = {"plan": "deny", "default": "ask", "acceptEdits": "ask", "bypassPermissions": "ask"}


def permission_mode(session: Any) -> str:
    access = session.runtime.config.access
    mode = access.permission_mode
    thread = session.thread
    for pattern, room_mode in access.room_permission_modes.items():
        if fnmatch.fnmatchcase(thread.room, pattern) or fnmatch.fnmatchcase(
            thread.room.rsplit("/", 1)[-1], pattern
        ):
            mode = room_mode
            break
    options = getattr(session, "turn_options", None)
    command_mode = getattr(options, "permission_mode", None) if options is not None else None
    if command_mode:
        command_mode = CLAUDE_MODES.get(command_mode, command_mode)
        if STRICTNESS.get(command_mode, 0) > STRICTNESS[mode]:
            mode = command_mode
    return mode


def _outside_workspace(target: str, workspace: Path) -> bool:
    path = Path(target)
    if not path.is_absolute():
        path = workspace / path
    try:
        resolved = path.resolve()
    except OSError:
        return True
    return resolved != workspace and workspace not in resolved.parents


def _parsed(command: str, allowed: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(reasons, written files) of a command line; the parse itself is memoised in
    :func:`bot.policy.shell.analyze_command`, where a written path leads is not
    (the filesystem changes)."""
    # Imported on first use: the bash grammar takes ~0.1 s to load, which start-up
    # should not pay before the first model request.
    from bot.policy.shell import analyze_command, check_command

    verdict = check_command(command, allowed)
    reasons = () if verdict.decision == "allow" else tuple(verdict.reasons)
    return reasons, tuple(analyze_command(command).written_files)


def bash_reasons(command: str, allowed: list[str], workspace: Path) -> list[str]:
    """Why this command is outside policy; empty when it may run."""
    parsed_reasons, written = _parsed(command, tuple(allowed))
    reasons = list(parsed_reasons)
    for target in written:
        if _outside_workspace(target, workspace):
            reasons.append(f"it writes {target}, outside the workspace")
    return reasons


def directive_writes(call: Any, session: Any) -> list[str]:
    """The directive and memory files (:mod:`bot.directives.paths`) this call writes, as
    far as the policy can see: a file tool's path, a shell command's redirections."""
    if call.name in WRITING_TOOLS:
        targets = [str(call.arguments.get("path", ""))]
    elif call.name == "bash":
        from bot.policy.shell import analyze_command

        targets = list(analyze_command(str(call.arguments.get("command", ""))).written_files)
    else:
        return []
    from bot.directives.paths import directive_target

    agent_dir = session.runtime.config.agent_dir
    found = (directive_target(t, session.workspace, agent_dir) for t in targets if t)
    return sorted({name for name in found if name is not None})


@hookimpl
def before_tool_call(call: Any, session: Any) -> Any:
    if session is None:
        return None
    mode = permission_mode(session)
    name = call.name
    if mode == "deny" and (name == "bash" or name in WRITING_TOOLS):
        return ("deny", f"{name} is not available here (permission_mode: deny, read-only)")
    if name != "bash" and name not in WRITING_TOOLS:
        return None
    reasons: list[str] = []
    if name == "bash":
        config = session.runtime.config
        command = str(call.arguments.get("command", ""))
        reasons = bash_reasons(command, config.tools.bash.allowed_commands, session.workspace)
    directives = directive_writes(call, session)
    if directives:
        # Later sessions read these as trusted instructions: a person decides, even
        # where writes are otherwise free.
        reasons.append(
            f"it writes {', '.join(directives)}, which later sessions load as trusted "
            "project memory or directives"
        )
    if not reasons:
        return "allow" if name == "bash" else None
    why = "; ".join(reasons)
    if mode == "allowlist":
        return ("deny", f"{why} (permission_mode: allowlist, nothing outside it runs)")
    return ("ask", why)
