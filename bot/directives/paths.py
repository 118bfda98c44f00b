"""Which paths are directives: files the bot loads as trusted instructions for later sessions.

One list, used by the tool policy (:mod:`plugins.policy`, which asks a person
before the agent writes one) and by the loader's change guard
(:mod:`bot.directives.guard`, which keeps changes nobody approved out of the
system prompt). A path is a directive when, relative to the workspace, it is

- ``AGENTS.md`` or ``CLAUDE.md`` at the root (project memory);
- anything under the agent directory (``.agent/`` by default: ``system.md``,
  ``commands/``, ``skills/``, ``agents/``), or that directory itself;
- ``.claude/commands/`` or anything under it;
- anything under the packaged defaults when they lie inside the workspace
  (threadwright working on its own repository).

Names are compared case-insensitively: on a case-insensitive file system
``agents.md`` is ``AGENTS.md``.
"""

from __future__ import annotations

import contextlib
import posixpath
from pathlib import Path

from bot.directives.discovery import PACKAGED_DEFAULTS
from bot.directives.memory import MEMORY_FILES

CLAUDE_COMMANDS = ".claude/commands"


def _normal(rel_path: str) -> str | None:
    """``rel_path`` as a clean, case-folded POSIX path; None when it leaves the root."""
    text = rel_path.replace("\\", "/").strip()
    if not text or text.startswith("/"):
        return None
    normal = posixpath.normpath(text)
    if normal == ".." or normal.startswith("../"):
        return None
    return normal.casefold()


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder + "/")


def is_directive_path(rel_path: str, agent_dir: str = ".agent") -> bool:
    """Whether ``rel_path`` (relative to the workspace) is a directive or memory file."""
    path = _normal(rel_path)
    if path is None or path == ".":
        return False
    if path in {name.casefold() for name in MEMORY_FILES}:
        return True
    agent = _normal(agent_dir)
    if agent is not None and agent != "." and _within(path, agent):
        return True
    return path in (".claude", CLAUDE_COMMANDS) or _within(path, CLAUDE_COMMANDS)


def directive_target(target: str, workspace: Path, agent_dir: str = ".agent") -> str | None:
    """The workspace-relative name of the directive file a write to ``target`` changes,
    or None. ``target`` is relative to ``workspace`` or absolute; symbolic links are
    followed, so a link that points at ``AGENTS.md`` counts as ``AGENTS.md``."""
    root = workspace.resolve()
    path = Path(target)
    if not path.is_absolute():
        path = root / path
    candidates = [path]
    with contextlib.suppress(OSError, RuntimeError):  # a link loop: the literal path remains
        candidates.append(path.resolve())
    defaults = PACKAGED_DEFAULTS.resolve()
    for candidate in candidates:
        literal = Path(posixpath.normpath(str(candidate)))
        for base in (root, workspace):
            try:
                rel = literal.relative_to(base).as_posix()
            except ValueError:
                continue
            if is_directive_path(rel, agent_dir):
                return rel
        if _under(literal, defaults) and _under(defaults, root):
            return literal.relative_to(root).as_posix()
    return None


def _under(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents
