"""What a sandboxed command can see: the session's own workspace, the system, and no more.

:func:`view_for` decides, from the configuration and the session's workspace,
which directories are hidden (an empty tmpfs over them), which are bound back
read-only and which one is writable. bwrap applies mounts in order, so the
order of the lists is the order of the mounts:

1. hidden: the bot's home, the store's directory (and Matrix's), ``/etc/threadwright``
   (the deployment's secrets file), every worktrees directory
   (other threads' worktrees), and — when the session works in a worktree —
   the main checkout (its ``.env``, its other files);
2. read-only again: the main repository's git directory (a worktree's git
   needs its objects and refs), and toolchains on ``PATH`` that live in a
   hidden directory — only the toolchain's own prefix (``…/.venv`` for
   ``…/.venv/bin``, and the interpreter a venv's ``python`` links to), never
   the whole top-level directory around it;
3. writable: the session's work tree (the worktree's top, or the workspace);
4. inside it, hidden again: the store when it lives in the workspace (the
   console in place), and read-only again: git's own data (``.git``), so
   nothing run in the sandbox can plant hooks or configuration for the bot's
   own git (see :mod:`bot.workspaces.git`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.config import Config

# Never re-exposed from a hidden directory, even when a PATH entry lives there.
SECRET_DIR_NAMES = frozenset(
    {
        ".ssh",
        ".gnupg",
        ".aws",
        ".azure",
        ".config",
        ".docker",
        ".kube",
        ".netrc",
        ".git-credentials",
        ".threadwright",
        ".local",
        ".password-store",
    }
)
# Where the deployment guide puts the configuration and the secrets file.
ETC_DIR = Path("/etc/threadwright")
# A venv's bin directory holds a few links to its interpreter and many scripts:
# looking at this many entries finds the links without walking a huge directory.
_MAX_BIN_ENTRIES = 400


@dataclass(frozen=True, slots=True)
class SandboxView:
    hidden: list[Path] = field(default_factory=list)
    read_only: list[Path] = field(default_factory=list)
    writable: Path = Path("/nonexistent")
    hidden_inside: list[Path] = field(default_factory=list)
    read_only_inside: list[Path] = field(default_factory=list)


def view_for(config: Config, workspace: Path, path_entries: list[str]) -> SandboxView:
    """The mounts for a sandbox around commands run in ``workspace`` (see the module docstring)."""
    workspace = _real(workspace)
    root = _real(config.workspace_path())
    repo_top = _repository_top(root)
    store_dir = _real(config.store_path().expanduser().parent)
    in_worktree = repo_top is not None and not _within(workspace, repo_top)

    candidates = [
        _real(Path.home()),
        store_dir,
        # Matrix keeps its device keys and sync token here; the deployment's secrets file.
        _real(Path(config.matrix.store_path).expanduser()),
        ETC_DIR,
        *_worktree_roots(config, store_dir, repo_top),
    ]
    if in_worktree and repo_top is not None:
        candidates.append(repo_top)
    writable = _work_tree_top(workspace, candidates) if in_worktree else workspace

    hidden: list[Path] = []
    hidden_inside: list[Path] = []
    for directory in candidates:
        if directory == Path("/") or not directory.is_dir() or directory in hidden:
            continue
        if _within(writable, directory) and directory != writable:
            hidden.append(directory)  # the work tree is bound back on top of it
        elif _within(directory, writable):
            if directory != writable and directory not in hidden_inside:
                hidden_inside.append(directory)
        else:
            hidden.append(directory)

    read_only: list[Path] = []
    if in_worktree and repo_top is not None and (repo_top / ".git").is_dir():
        read_only.append(repo_top / ".git")
    for toolchain in toolchains_in(hidden, path_entries):
        if toolchain not in read_only and not _within(writable, toolchain):
            read_only.append(toolchain)

    read_only_inside = [p for p in _git_data(writable, workspace) if p.exists()]
    return SandboxView(hidden, read_only, writable, hidden_inside, read_only_inside)


def toolchains_in(hidden: list[Path], path_entries: list[str]) -> list[Path]:
    """The prefixes of toolchains on PATH that a hidden directory would otherwise hide."""
    roots: list[Path] = []

    def add(directory: Path) -> None:
        for parent in hidden:
            if _within(directory, parent) and directory != parent:
                prefix = _prefix_of(directory)
                rel = prefix.relative_to(parent).parts
                if prefix == parent or any(part in SECRET_DIR_NAMES for part in rel):
                    return
                if prefix.is_dir() and prefix not in roots:
                    roots.append(prefix)
                return

    for entry in path_entries:
        if not entry:
            continue
        directory = _real(Path(entry))
        add(directory)
        # A venv's python is a link to an interpreter elsewhere (pyenv's, say).
        for target in _linked_interpreters(Path(entry)):
            add(target.parent)
    return roots


def _prefix_of(directory: Path) -> Path:
    """``…/bin`` belongs to its prefix (``lib/`` beside it holds what it runs); other
    directories stand alone."""
    return directory.parent if directory.name in ("bin", "sbin") else directory


def _linked_interpreters(entry: Path) -> list[Path]:
    targets: list[Path] = []
    try:
        with os.scandir(entry) as listing:
            for count, item in enumerate(listing):
                if count >= _MAX_BIN_ENTRIES:
                    break
                if item.is_symlink():
                    target = _real(Path(item.path))
                    if target.is_file() and target.parent != _real(entry):
                        targets.append(target)
    except OSError:
        pass
    return targets


def _worktree_roots(config: Config, store_dir: Path, repo_top: Path | None) -> list[Path]:
    """Every place :class:`bot.workspaces.WorktreeManager` may keep thread worktrees."""
    roots = [store_dir / "worktrees"]
    if config.workspace.worktrees_dir:
        roots.append(_real(Path(config.workspace.worktrees_dir).expanduser()))
    if repo_top is not None:
        roots.append(repo_top.parent / ".threadwright" / "worktrees")
    return roots


def _work_tree_top(workspace: Path, hidden: list[Path]) -> Path:
    """The worktree holding ``workspace`` (a subdirectory when ``workspace.root`` is one):
    the nearest ancestor with a ``.git`` entry, below every hidden directory."""
    for directory in (workspace, *workspace.parents):
        if any(directory == h for h in hidden):
            break
        if (directory / ".git").exists():
            return directory
    return workspace


def _git_data(writable: Path, workspace: Path) -> list[Path]:
    entries = [writable / ".git"]
    if workspace != writable:
        entries.append(workspace / ".git")
    return entries


def _repository_top(root: Path) -> Path | None:
    for directory in (root, *root.parents):
        if (directory / ".git").exists():
            return directory
    return None


def _within(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))
