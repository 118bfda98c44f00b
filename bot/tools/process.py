"""Running a child process for a tool: bounded output, a hard timeout, no leftovers.

Every process a tool starts goes through :func:`run_process`. The child gets
its own session (``start_new_session=True``), so it leads a fresh process
group; on timeout, on cancellation of the awaiting task, and after the
child exits, the whole group is killed with SIGKILL. A background job the
command left behind (``server &``) therefore never outlives the tool call.

Output is captured by a :class:`asyncio.SubprocessProtocol` rather than
``create_subprocess_exec``'s stream readers: the protocol's callbacks keep
the first and last half of each stream up to the cap and count the rest, so
memory stays bounded while the pipes are always drained (a child never
blocks on a full pipe), and the transport it comes with can be closed
publicly even when a process that escaped the group still holds a pipe.

Resource limits are set by ``/bin/sh -c 'ulimit …; exec "$@"'``, which
applies them and then ``exec``s the real command (same pid, so the process
group is unchanged) for about half a millisecond. ``preexec_fn`` would run
Python code between ``fork`` and ``exec``, which the Python docs call unsafe
when other threads exist — and this process has them (aiosqlite,
``asyncio.to_thread``); a Python launcher costs ~10 ms a command. POSIX only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.tools.base import ToolError, ToolResult

# ``ctx.extras`` key of a callable ``(argv) -> argv`` that every tool-launched
# command goes through; the sandbox (bwrap) plugs in here.
WRAP_ARGV_EXTRA = "wrap_argv"
# ``ctx.extras`` key of a :class:`ResourceLimits` overriding the defaults.
RESOURCE_LIMITS_EXTRA = "resource_limits"

# How long to wait for the pipes to close once the child's group is dead:
# only a process that left the group (setsid) can hold them longer.
_PIPE_GRACE_S = 0.5
_EXIT_AFTER_KILL_S = 2.0

_GIB = 1024**3

# POSIX sh (dash here) takes one option per ``ulimit`` and counts -f and -c in
# 512-byte blocks; bash counts them in 1024-byte blocks. Both count -v in KiB.
_LIMIT_SHELL = "/bin/sh"
_SH_UNITS = {"t": 1, "f": 512, "v": 1024, "c": 512, "u": 1}
_BASH_UNITS = {"t": 1, "f": 1024, "v": 1024, "c": 1024, "u": 1}


@dataclass(frozen=True, slots=True)
class ResourceLimits:
    """Per-process rlimits for tool commands; ``None`` leaves a limit as inherited.

    The defaults are a backstop, not a policy: CPU time bounds a process that
    escaped the group kill, file size bounds one runaway file, address space
    bounds a runaway allocation (16 GiB leaves room for JVMs and V8).
    ``nproc`` is off by default: RLIMIT_NPROC counts every process of the
    user (the bot's own included) and root ignores it; a PID namespace in
    the sandbox is the right tool against fork bombs.
    """

    cpu_seconds: int | None = 3600
    file_size_bytes: int | None = 4 * _GIB
    address_space_bytes: int | None = 16 * _GIB
    core_bytes: int | None = 0
    nproc: int | None = None

    def ulimit_steps(self, units: Mapping[str, int]) -> str:
        """``ulimit -X n 2>/dev/null; `` for each limit set, in the shell's ``units``
        (bytes per block for each flag). A limit above an existing hard limit fails
        and is skipped: the inherited one is stricter already."""
        pairs = [
            ("t", self.cpu_seconds),
            ("f", self.file_size_bytes),
            ("v", self.address_space_bytes),
            ("c", self.core_bytes),
            ("u", self.nproc),
        ]
        return "".join(
            f"ulimit -{flag} {value // units[flag]} 2>/dev/null; "
            for flag, value in pairs
            if value is not None
        )

    def bash_prefix(self) -> str:
        """The limits as bash builtins, to put before a ``bash -c`` script: no extra
        process, so about 1.5 ms less per command than :meth:`launcher_argv`."""
        return self.ulimit_steps(_BASH_UNITS)

    def launcher_argv(self) -> list[str]:
        """The argv prefix that applies these limits, or ``[]`` when none is set."""
        steps = self.ulimit_steps(_SH_UNITS)
        return [_LIMIT_SHELL, "-c", steps + 'exec "$@"', "sh"] if steps else []


DEFAULT_LIMITS = ResourceLimits()


def wrap_argv(extras: Mapping[str, Any], argv: list[str]) -> list[str]:
    """Pass ``argv`` through the sandbox seam in ``ctx.extras`` (if one is installed)."""
    wrapper: Callable[[list[str]], list[str]] | None = extras.get(WRAP_ARGV_EXTRA)
    # A key present with None means "decided: no sandbox".
    return list(wrapper(list(argv))) if wrapper is not None else list(argv)


class _HeadTailBuffer:
    """Keeps the first and last ``cap // 2`` bytes of a stream and counts the rest."""

    def __init__(self, cap: int) -> None:
        self._head_cap = cap - cap // 2
        self._tail_cap = cap // 2
        self._head = bytearray()
        self._tail = bytearray()
        self.dropped = 0

    def feed(self, data: bytes) -> None:
        room = self._head_cap - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        if not data:
            return
        self._tail += data
        excess = len(self._tail) - self._tail_cap
        if excess > 0:
            del self._tail[:excess]
            self.dropped += excess

    def text(self) -> str:
        head = self._head.decode("utf-8", errors="replace")
        tail = self._tail.decode("utf-8", errors="replace")
        if not self.dropped:
            return head + tail
        return f"{head}\n[… {self.dropped:,} bytes truncated …]\n{tail}"


class _CaptureProtocol(asyncio.SubprocessProtocol):
    def __init__(self, loop: asyncio.AbstractEventLoop, cap: int) -> None:
        self.stdout = _HeadTailBuffer(cap)
        self.stderr = _HeadTailBuffer(cap)
        self.exited: asyncio.Future[None] = loop.create_future()
        self.finished: asyncio.Future[None] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        chunk = data.encode() if isinstance(data, str) else data
        (self.stdout if fd == 1 else self.stderr).feed(chunk)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.exited.done():
            self.exited.set_result(None)
        if not self.finished.done():
            self.finished.set_result(None)


@dataclass(slots=True)
class ProcessOutcome:
    """What a finished (or killed) child left behind."""

    argv: list[str]
    stdout: str
    stderr: str
    exit_code: int | None
    timed_out: bool
    truncated: bool
    duration: float
    timeout: float

    def to_tool_result(self, command: str | None = None) -> ToolResult:
        """The tool-facing shape; ``command`` is what to show (default: the argv)."""
        ok = self.exit_code == 0 and not self.timed_out
        error: str | None = None
        exit_code = self.exit_code
        if self.timed_out:
            error = f"timed out after {self.timeout:g} s (process group killed)"
            exit_code = None
        elif self.exit_code is None:
            error = "the process ended without reporting an exit status"
        elif self.exit_code < 0:
            error = f"killed by signal {_signal_name(-self.exit_code)}"
        elif not ok:
            error = f"exited with code {self.exit_code}"
        return ToolResult(
            ok=ok,
            stdout=self.stdout,
            stderr=self.stderr,
            exit_code=exit_code,
            error=error,
            truncated=self.truncated,
            metadata={
                "duration_ms": round(self.duration * 1000),
                "command": command if command is not None else shlex.join(self.argv),
            },
        )


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def install_fast_child_watcher() -> None:
    """On Python 3.11, watch children with pidfds instead of a thread per child.

    3.11's default ThreadedChildWatcher starts (and waits for) a thread for
    every subprocess, which costs milliseconds per tool call; 3.12+ already
    uses pidfds. Call before the event loop starts.
    """
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:  # kernel without pidfd support
        return
    asyncio.set_child_watcher(asyncio.PidfdChildWatcher())


def kill_process_group(pgid: int) -> None:
    """SIGKILL every process in the group; a group already gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


async def run_process(
    argv: list[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float,  # noqa: ASYNC109 - enforced by killing the group, not by cancelling
    max_output_bytes: int,
    stdin: bytes | None = None,
    limits: ResourceLimits | None = DEFAULT_LIMITS,
) -> ProcessOutcome:
    """Run ``argv`` (no shell) in its own process group and capture bounded output.

    ``max_output_bytes`` caps each of stdout and stderr (head and tail kept,
    a marker in between). The group is killed on timeout, after the child
    exits (background jobs die with it) and when the awaiting task is
    cancelled, in which case :class:`asyncio.CancelledError` is re-raised.
    A command that cannot be started raises :class:`ToolError`.
    """
    if not argv:
        raise ToolError("no command to run")
    loop = asyncio.get_running_loop()
    launch = [*(limits.launcher_argv() if limits else []), *argv]
    started = time.monotonic()
    try:
        transport, protocol = await loop.subprocess_exec(
            lambda: _CaptureProtocol(loop, max_output_bytes),
            *launch,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=dict(env),
            start_new_session=True,
        )
    except OSError as exc:
        raise ToolError(f"cannot start {argv[0]!r}: {exc.strerror or exc}") from None

    pgid = transport.get_pid()  # a new session's leader: its pid is the group id
    timed_out = cancelled = False
    try:
        if stdin is not None:
            pipe = transport.get_pipe_transport(0)
            if isinstance(pipe, asyncio.WriteTransport):
                pipe.write(stdin)
                pipe.write_eof()
        done, _ = await asyncio.wait([protocol.exited], timeout=timeout)
        timed_out = not done
    except asyncio.CancelledError:
        cancelled = True
        raise
    finally:
        # Also on cancellation. The kill is synchronous, so nothing survives
        # even if this task is cancelled again while it waits below.
        kill_process_group(pgid)
        await asyncio.wait(
            [protocol.exited], timeout=_PIPE_GRACE_S if cancelled else _EXIT_AFTER_KILL_S
        )
        if not cancelled:
            # Output written just before the exit may still be in flight.
            await asyncio.wait([protocol.finished], timeout=_PIPE_GRACE_S)
        transport.close()
        await asyncio.wait([protocol.finished], timeout=_PIPE_GRACE_S)
    return ProcessOutcome(
        argv=list(argv),
        stdout=protocol.stdout.text(),
        stderr=protocol.stderr.text(),
        exit_code=transport.get_returncode(),
        timed_out=timed_out,
        truncated=bool(protocol.stdout.dropped or protocol.stderr.dropped),
        duration=time.monotonic() - started,
        timeout=timeout,
    )
