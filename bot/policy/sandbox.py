"""The shell sandbox: bubblewrap around every ``bash`` tool command, where it can run.

Inside: the whole system read-only, only the session's own work tree
writable (its git data read-only), a private size-limited ``/tmp`` (holding
the tool's private HOME), no network unless ``tools.bash.network: true``, the
bot's home, its store, other threads' worktrees and the main checkout hidden
(:mod:`bot.policy.sandbox_view`), no capabilities, fresh PID/IPC/UTS
namespaces, and limits on processes, memory and file size
(:mod:`bot.policy.sandbox_limits`). ``--unshare-pid`` plus
``--die-with-parent`` mean killing bwrap (our process-group kill on timeout
or stop) takes everything inside down with it.

``tools.bash.sandbox``: ``bwrap`` requires it (a clear tool error
otherwise); ``auto`` uses it when it works here and otherwise *fails closed*:
on chat platforms every shell command then needs an approval, and the thread
is told why (:func:`sandbox_missing_reason`, enforced in
:mod:`plugins.tools.bash`); ``none`` runs commands directly, as the bot's
user (resource limits, process groups and output caps still apply), which
the operator chose knowingly.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bot.policy.sandbox_limits import PidsCgroup, running_as_root
from bot.policy.sandbox_view import SandboxView, view_for
from bot.tools.base import ToolError

if TYPE_CHECKING:
    from bot.config import Config

ArgvWrapper = Callable[[list[str]], list[str]]
_MIB = 1024 * 1024
# Hidden directories are empty tmpfs mounts: room for bwrap's mount points, no more.
_HIDDEN_TMPFS_BYTES = 1 * _MIB


@dataclass(frozen=True, slots=True)
class BwrapSupport:
    """What the bwrap here can do, probed once with the options real commands use."""

    path: str | None
    sizes: bool = False  # ``--size`` for tmpfs (bubblewrap 0.8 and later)
    error: str = ""


@functools.cache
def bwrap_support() -> BwrapSupport:
    """Whether bwrap exists and can build the sandbox real commands get (checked once):
    a host where user namespaces are blocked or ``/proc`` cannot be mounted (Docker's
    default seccomp profile and masked paths, systemd's ProtectKernelTunables) fails here,
    not on the first command."""
    path = shutil.which("bwrap")
    if path is None:
        return BwrapSupport(None, error="bubblewrap (bwrap) is not installed")
    base = [
        path, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
        "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net",
        "--cap-drop", "ALL", "--die-with-parent",
    ]  # fmt: skip
    probe = _probe([*base, "--tmpfs", "/tmp", "--", "/bin/true"])
    if probe:
        return BwrapSupport(None, error=probe)
    sized = not _probe([*base, "--size", str(_MIB), "--tmpfs", "/tmp", "--", "/bin/true"])
    return BwrapSupport(path, sizes=sized)


def _probe(argv: list[str]) -> str:
    """ "" when ``argv`` ran, else bwrap's own words about why not."""
    try:
        done = subprocess.run(argv, capture_output=True, timeout=10, cwd=tempfile.gettempdir())
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if done.returncode == 0:
        return ""
    return done.stderr.decode(errors="replace").strip() or f"exit code {done.returncode}"


def bwrap_path() -> str | None:
    """The bwrap binary if it can create the sandbox here."""
    return bwrap_support().path


def sandbox_missing_reason(config: Config) -> str | None:
    """Why commands would run unsandboxed under ``tools.bash.sandbox: auto``; None when
    the sandbox works or the operator chose ``none`` or ``bwrap`` (which fails loudly)."""
    if config.tools.bash.sandbox != "auto":
        return None
    support = bwrap_support()
    if support.path is not None:
        return None
    return f"no sandbox on this host ({support.error})"


def bwrap_argv(config: Config, view: SandboxView, workspace: Path, home: Path) -> list[str]:
    """The bwrap command line (up to and including ``--``) for ``view``."""
    support = bwrap_support()
    assert support.path is not None

    def tmpfs(target: Path, size: int) -> list[str]:
        return [*(["--size", str(size)] if support.sizes else []), "--tmpfs", str(target)]

    bash = config.tools.bash
    args = [support.path, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    args += tmpfs(Path("/tmp"), bash.tmp_size_mb * _MIB)
    for directory in view.hidden:
        args += tmpfs(directory, _HIDDEN_TMPFS_BYTES)
    for directory in view.read_only:
        args += ["--ro-bind", str(directory), str(directory)]
    args += ["--bind", str(view.writable), str(view.writable)]
    for directory in view.hidden_inside:
        args += tmpfs(directory, _HIDDEN_TMPFS_BYTES)
    for entry in view.read_only_inside:
        args += ["--ro-bind", str(entry), str(entry)]
    args += [
        # The tool's private HOME (under /tmp) survives between commands.
        *(["--bind", str(home), str(home)] if home.is_dir() else ["--dir", str(home)]),
        "--unshare-pid", "--unshare-ipc", "--unshare-uts",
        "--cap-drop", "ALL",
        "--die-with-parent",
        "--chdir", str(workspace),
    ]  # fmt: skip
    if not bash.network:
        args.append("--unshare-net")
    return [*args, "--"]


def bwrap_wrapper(
    config: Config, workspace: Path, home: Path, path_entries: list[str] | None = None
) -> ArgvWrapper:
    workspace = workspace.resolve()
    view = view_for(config, workspace, path_entries or [])
    prefix = bwrap_argv(config, view, workspace, home)
    cgroup = PidsCgroup.create(config.tools.bash.max_processes) if running_as_root() else None
    if cgroup is not None:
        prefix = [*cgroup.launcher(), *prefix]

    def wrap(argv: list[str]) -> list[str]:
        return [*prefix, *argv]

    if cgroup is not None:
        cgroup.release_with(wrap)
    return wrap


def sandbox_for(config: Config, workspace: Path, home: Path, path: str = "") -> ArgvWrapper | None:
    """The argv wrapper for this configuration, or None to run unsandboxed (``none``, or
    ``auto`` where bwrap cannot run: the policy then asks before every command)."""
    mode = config.tools.bash.sandbox
    if mode == "none":
        return None
    support = bwrap_support()
    if support.path is None:
        if mode == "bwrap":
            raise ToolError(
                f"tools.bash.sandbox is 'bwrap' but bubblewrap cannot run here "
                f"({support.error}): install it (`apt-get install bubblewrap`), allow user "
                "namespaces (see docs/security.md), or set tools.bash.sandbox: auto"
            )
        return None
    return bwrap_wrapper(config, workspace, home, path.split(":") if path else [])
