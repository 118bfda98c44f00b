"""The shell sandbox: bubblewrap around every ``bash`` tool command, where available.

Inside: the whole system read-only, the workspace read-write, a private
``/tmp`` (holding the tool's private HOME), no network unless
``tools.bash.network: true``, the bot's own home directory and its store
hidden, fresh PID/IPC/UTS namespaces. ``--unshare-pid`` plus
``--die-with-parent`` mean killing bwrap (our process-group kill on timeout
or stop) takes everything inside down with it.

``tools.bash.sandbox``: ``auto`` uses bwrap when it is installed and works,
``bwrap`` requires it (a clear tool error otherwise), ``none`` runs commands
directly (resource limits, process groups and output caps still apply).
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from bot.tools.base import ToolError

if TYPE_CHECKING:
    from bot.config import Config

ArgvWrapper = Callable[[list[str]], list[str]]


@functools.cache
def bwrap_path() -> str | None:
    """The bwrap binary if it exists and can create a sandbox here (checked once)."""
    path = shutil.which("bwrap")
    if path is None:
        return None
    try:
        probe = subprocess.run(
            [path, "--ro-bind", "/", "/", "--unshare-pid", "--", "/bin/true"],
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return path if probe.returncode == 0 else None


def _hidden_dirs(config: Config, workspace: Path) -> list[Path]:
    """Directories that hold the bot's secrets or state, unless the workspace is inside one."""
    candidates = [Path.home(), config.store_path().expanduser().resolve().parent]
    hidden = []
    for directory in candidates:
        try:
            directory = directory.resolve()
        except OSError:
            continue
        if not directory.is_dir() or directory == Path("/"):
            continue
        if workspace == directory or directory in workspace.parents:
            continue  # hiding it would hide the workspace itself
        hidden.append(directory)
    return hidden


# Never re-exposed from a hidden home, even when a PATH entry lives there.
SECRET_HOME_DIRS = frozenset(
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
    }
)


def _toolchains_in(hidden: list[Path], path_entries: list[str]) -> list[Path]:
    """Toolchain roots on PATH inside a hidden home (``~/.pyenv``, ``~/.cargo``), to re-expose
    read-only: hiding the home must not hide the interpreters the project runs with."""
    roots: list[Path] = []
    for entry in path_entries:
        try:
            path = Path(entry).resolve()
        except OSError:
            continue
        for directory in hidden:
            if directory in path.parents:
                top = directory / path.relative_to(directory).parts[0]
                if top.name not in SECRET_HOME_DIRS and top.is_dir() and top not in roots:
                    roots.append(top)
    return roots


def bwrap_wrapper(
    config: Config, workspace: Path, home: Path, binary: str, path_entries: list[str] | None = None
) -> ArgvWrapper:
    workspace = workspace.resolve()
    args = [
        binary,
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--tmpfs",
        "/tmp",
    ]
    hidden = _hidden_dirs(config, workspace)
    for directory in hidden:
        args += ["--tmpfs", str(directory)]
    for toolchain in _toolchains_in(hidden, path_entries or []):
        args += ["--ro-bind", str(toolchain), str(toolchain)]
    args += [
        "--bind", str(workspace), str(workspace),
        # The tool's private HOME (under /tmp) survives between commands.
        *(["--bind", str(home), str(home)] if home.is_dir() else ["--dir", str(home)]),
        "--unshare-pid", "--unshare-ipc", "--unshare-uts",
        "--die-with-parent",
        "--chdir", str(workspace),
    ]  # fmt: skip
    if not config.tools.bash.network:
        args.append("--unshare-net")
    prefix = [*args, "--"]

    def wrap(argv: list[str]) -> list[str]:
        return [*prefix, *argv]

    return wrap


def sandbox_for(config: Config, workspace: Path, home: Path, path: str = "") -> ArgvWrapper | None:
    """The argv wrapper for this configuration, or None to run unsandboxed."""
    mode = config.tools.bash.sandbox
    if mode == "none":
        return None
    binary = bwrap_path()
    if binary is None:
        if mode == "bwrap":
            raise ToolError(
                "tools.bash.sandbox is 'bwrap' but bubblewrap is not usable here: "
                "install it (`apt-get install bubblewrap`) or set tools.bash.sandbox: auto"
            )
        return None
    return bwrap_wrapper(config, workspace, home, binary, path.split(":") if path else [])
