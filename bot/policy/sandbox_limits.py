"""Limits on what one sandboxed command may consume: processes, memory, file size, ``/tmp``.

Memory (address space) and file size are rlimits, set by bash's ``ulimit``
inside the sandbox before the command (see
:class:`bot.tools.process.ResourceLimits`); capabilities are dropped there, so
the command cannot raise them again.

The process count needs care. ``RLIMIT_NPROC`` counts a user's processes, but
inside bwrap's fresh user namespace (every unprivileged sandbox has one) the
count starts from zero, so ``ulimit -u`` there is a per-sandbox limit: a fork
bomb stops at it and the bot's own user is untouched. Root ignores
``RLIMIT_NPROC`` altogether, so for a bot running as root the limit is a
``pids`` cgroup of its own per session instead, where the cgroup filesystem is
writable (cgroup v1's ``pids`` hierarchy, or v2 with the ``pids`` controller);
the command joins it before it starts bwrap. A root bot with neither is warned
about by ``threadwright doctor``.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import logging
import os
import weakref
from pathlib import Path

log = logging.getLogger(__name__)

_CGROUP_V1_PIDS = Path("/sys/fs/cgroup/pids")
_CGROUP_V2 = Path("/sys/fs/cgroup")
_counter = itertools.count(1)
_created: list[Path] = []


def running_as_root() -> bool:
    return os.geteuid() == 0


def _pids_hierarchy() -> Path | None:
    """Where this process may create pids cgroups, or None."""
    if (_CGROUP_V1_PIDS / "pids.max").exists() or (_CGROUP_V1_PIDS / "cgroup.procs").exists():
        return _CGROUP_V1_PIDS if os.access(_CGROUP_V1_PIDS, os.W_OK) else None
    controllers = _CGROUP_V2 / "cgroup.controllers"
    try:
        if "pids" not in controllers.read_text().split():
            return None
    except OSError:
        return None
    return _CGROUP_V2 if os.access(_CGROUP_V2, os.W_OK) else None


def cgroup_available() -> bool:
    """Whether a root bot can give each session a pids cgroup here."""
    return _pids_hierarchy() is not None


def _parent_dir() -> Path | None:
    hierarchy = _pids_hierarchy()
    if hierarchy is None:
        return None
    parent = hierarchy / f"threadwright-{os.getpid()}"
    if parent in _created:
        return parent
    _remove_stale(hierarchy)
    try:
        parent.mkdir(exist_ok=True)
        if hierarchy == _CGROUP_V2:
            (parent / "cgroup.subtree_control").write_text("+pids")
    except OSError as exc:
        log.warning("cannot create a pids cgroup under %s: %s", hierarchy, exc)
        return None
    _created.append(parent)
    return parent


def _remove_stale(hierarchy: Path) -> None:
    """Cgroups left by a bot process that died without cleaning up."""
    for stale in hierarchy.glob("threadwright-*"):
        pid = stale.name.removeprefix("threadwright-")
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            _remove_tree(stale)


def _remove_tree(directory: Path) -> None:
    for child in directory.glob("s*"):
        if child.is_dir():
            with contextlib.suppress(OSError):
                child.rmdir()
    with contextlib.suppress(OSError):
        directory.rmdir()


@atexit.register
def _cleanup() -> None:
    for parent in _created:
        _remove_tree(parent)


class PidsCgroup:
    """One session's pids cgroup; removed when the sandbox using it is gone."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, max_processes: int) -> PidsCgroup | None:
        parent = _parent_dir()
        if parent is None:
            return None
        path = parent / f"s{next(_counter)}"
        try:
            path.mkdir()
            (path / "pids.max").write_text(str(max_processes))
        except OSError as exc:
            log.warning("cannot limit processes with %s: %s", path, exc)
            with contextlib.suppress(OSError):
                path.rmdir()
            return None
        return cls(path)

    def launcher(self) -> list[str]:
        """An argv prefix that moves the command into the cgroup, then ``exec``s it: the
        command and all it forks are counted. If the move fails, nothing runs."""
        script = 'echo $$ > "$0/cgroup.procs" && exec "$@"'
        return ["/bin/sh", "-c", script, str(self.path)]

    def release_with(self, owner: object) -> None:
        """Remove the cgroup once ``owner`` (the sandbox wrapper) is garbage."""
        weakref.finalize(owner, _rmdir_quietly, self.path)


def _rmdir_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()
