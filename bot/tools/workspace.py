"""Path confinement: every file a tool touches must resolve inside the workspace.

A path from the model is taken relative to the workspace (or as absolute),
then resolved with ``os.path.realpath`` semantics: symlinks are followed,
even dangling ones, and ``..`` is collapsed, so ``../x``, ``/etc/passwd``,
a symlink pointing out and a file under a symlinked directory pointing out
all resolve to where they really are — outside — and are refused. A file
that does not exist yet is judged by its resolved parent.

Writes are also refused inside git's own data: any ``.git`` path component,
the directory a ``.git`` *file* in the workspace root or in the target's
ancestors points to (``--separate-git-dir``, worktrees), and any directory
shaped like a git dir (``HEAD`` plus ``objects/`` or ``commondir``: bare
repositories), since rewriting hooks or config there runs code outside the
tools' control.
"""

from __future__ import annotations

import os
from pathlib import Path

from bot.tools.base import ToolError

BINARY_SNIFF_BYTES = 8192


def resolve_in_workspace(workspace: Path, path: str, *, for_write: bool = False) -> Path:
    """The real path ``path`` names, or :class:`ToolError` if it leaves the workspace."""
    if not path or not path.strip():
        raise ToolError("path is empty: give a file path relative to the workspace")
    if "\x00" in path:
        raise ToolError("path contains a NUL byte")
    root = os.path.realpath(workspace)
    real = os.path.realpath(os.path.join(root, path))
    if not _is_within(real, root):
        raise ToolError(
            f"path {path!r} resolves to {real}, outside the workspace ({root}); "
            "file tools work only inside the workspace"
        )
    if for_write:
        _refuse_git_internals(root, real, path)
    return Path(real)


def relative_display(workspace: Path, real: Path) -> str:
    """``real`` as a workspace-relative POSIX path (``.`` for the root) for messages."""
    rel = os.path.relpath(real, os.path.realpath(workspace))
    return Path(rel).as_posix()


def looks_binary(data: bytes) -> bool:
    """True when the sample holds a NUL byte, the same test git and grep use."""
    return b"\x00" in data[:BINARY_SNIFF_BYTES]


def is_binary_file(path: Path) -> bool:
    """True when the file's first 8 KiB hold a NUL byte."""
    with open(path, "rb") as handle:
        return looks_binary(handle.read(BINARY_SNIFF_BYTES))


def _is_within(real: str, root: str) -> bool:
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def _refuse_git_internals(root: str, real: str, path: str) -> None:
    rel_parts = Path(os.path.relpath(real, root)).parts
    if ".git" in rel_parts:
        raise ToolError(f"refusing to write {path!r}: it is inside git's own data (.git)")
    directory = os.path.dirname(real)
    while _is_within(directory, root):
        if _looks_like_git_dir(directory):
            raise ToolError(f"refusing to write {path!r}: {directory} is a git directory")
        dot_git = os.path.join(directory, ".git")
        target = _read_gitdir(dot_git) if os.path.isfile(dot_git) else None
        if target is not None:
            gitdir = os.path.realpath(os.path.join(directory, target))
            if _is_within(real, gitdir):
                raise ToolError(
                    f"refusing to write {path!r}: it is inside the git directory {gitdir} "
                    f"that {os.path.relpath(dot_git, root)} points to"
                )
        if directory == root:
            break
        directory = os.path.dirname(directory)


def _looks_like_git_dir(directory: str) -> bool:
    """A bare repository, a separate git dir or a worktree's admin dir, however it is named."""
    return os.path.isfile(os.path.join(directory, "HEAD")) and (
        os.path.isdir(os.path.join(directory, "objects"))
        or os.path.isfile(os.path.join(directory, "commondir"))
    )


def _read_gitdir(dot_git_file: str) -> str | None:
    try:
        with open(dot_git_file, encoding="utf-8", errors="replace") as handle:
            first = handle.readline(4096).strip()
    except OSError:
        return None
    prefix = "gitdir:"
    if not first.startswith(prefix):
        return None
    return first[len(prefix) :].strip() or None
