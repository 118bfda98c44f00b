"""The ``bash`` tool: one shell command in the workspace, bounded in time and output.

The command runs as ``/bin/bash -c COMMAND`` through
:func:`bot.tools.process.run_process`: its own process group (killed on
timeout, on cancel, and when the command exits, so background jobs do not
outlive the call), the workspace as cwd, the session's scrubbed environment
(``ctx.env``; built fresh if the context has none, never ``os.environ``).

Whether a command may run at all (``tools.bash.allowed_commands``, approval)
is decided before this function is called, by the policy's
``before_tool_call`` hook. This plugin adds one rule of its own there: under
``tools.bash.sandbox: auto`` on a host where bubblewrap cannot run, every
command on a chat platform needs an approval (refused outright in
``allowlist`` mode), and the thread is told once why — failing closed rather
than running what the model wrote as the bot, unseen. Sandboxing plugs in through the seam in
``ctx.extras``: a callable under ``"wrap_argv"`` maps the argv to the argv
that actually runs (for example a ``bwrap …`` prefix), and a
:class:`~bot.tools.process.ResourceLimits` under ``"resource_limits"``
replaces the default rlimits.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot import hookimpl
from bot.events import AgentEventKind
from bot.policy.sandbox import sandbox_for, sandbox_missing_reason
from bot.tools.base import ToolContext, ToolError, ToolResult
from bot.tools.environment import build_tool_env
from bot.tools.process import (
    RESOURCE_LIMITS_EXTRA,
    WRAP_ARGV_EXTRA,
    ResourceLimits,
    run_process,
    wrap_argv,
)
from plugins.policy import permission_mode

if TYPE_CHECKING:
    from collections.abc import Callable

    from bot.config import Config

SHELL = "/bin/bash"
_MIB = 1024 * 1024
_TOLD_EXTRA = "told_no_sandbox"


def limits_for(config: Config, sandboxed: bool) -> ResourceLimits:
    """The configured per-command limits. The process count only inside the sandbox:
    there bwrap's user namespace makes ``ulimit -u`` count the sandbox's processes
    alone; outside it would count (and starve) every process of the bot's user."""
    bash = config.tools.bash
    return ResourceLimits(
        file_size_bytes=bash.max_file_size_mb * _MIB,
        address_space_bytes=bash.max_memory_mb * _MIB,
        nproc=bash.max_processes if sandboxed else None,
    )


async def bash(
    ctx: ToolContext,
    command: str,
    timeout: float | None = None,  # noqa: ASYNC109 - the model-facing argument name
) -> ToolResult:
    """Run a bash command in the workspace and return its stdout, stderr and exit code.

    Use it to run tests, build, inspect git, or anything a shell does. The
    working directory is the workspace root; there is no terminal and no
    stdin. Background jobs are killed when the command ends.

    Args:
        command: The command line, run as `bash -c COMMAND`.
        timeout: Seconds before the command is killed; capped by the configured limit.
    """
    if not command.strip():
        raise ToolError("command is empty")
    limit = ctx.config.tools.bash.timeout
    if timeout is not None:
        if timeout <= 0:
            raise ToolError("timeout must be a positive number of seconds")
        limit = min(timeout, limit)
    env = ctx.env or build_tool_env(ctx.config, ctx.workspace)
    if WRAP_ARGV_EXTRA not in ctx.extras:
        # Decided once per session; probing bwrap runs a process, so off the loop.
        wrapper = await asyncio.to_thread(
            sandbox_for,
            ctx.config,
            ctx.workspace,
            Path(env.get("HOME", "/nonexistent")),
            env.get("PATH", ""),
        )
        ctx.extras[WRAP_ARGV_EXTRA] = wrapper
    limits = ctx.extras.get(RESOURCE_LIMITS_EXTRA) or limits_for(
        ctx.config, ctx.extras[WRAP_ARGV_EXTRA] is not None
    )
    outcome = await run_process(
        wrap_argv(ctx.extras, [SHELL, "-c", limits.bash_prefix() + command]),
        cwd=ctx.workspace,
        env=env,
        timeout=limit,
        max_output_bytes=ctx.config.tools.bash.max_output_bytes,
        # Applied by bash itself (a prefix on the same line, so line numbers in
        # errors stay the user's): no launcher process per command.
        limits=None,
    )
    return outcome.to_tool_result(command=command)


@hookimpl
def register_tools(register: Callable[..., None], config: Config) -> None:
    register(bash)


@hookimpl
async def before_tool_call(call: Any, session: Any) -> Any:
    """Fail closed where the sandbox is missing (see the module docstring)."""
    if session is None or call.name != "bash" or session.thread.platform == "console":
        return None
    config = session.runtime.config
    missing = await asyncio.to_thread(sandbox_missing_reason, config)
    if missing is None:
        return None
    extras = session.tool_context.extras
    if not extras.get(_TOLD_EXTRA):
        extras[_TOLD_EXTRA] = True
        await session.emit(
            AgentEventKind.NOTICE,
            f"Shell commands here run without a sandbox: {missing}. Each one needs an "
            "approval; the operator can fix this (see `threadwright doctor`).",
        )
    why = f"{missing}: it would run as the bot itself"
    if permission_mode(session) == "allowlist":
        return ("deny", f"{why} (permission_mode: allowlist, nothing unsandboxed runs)")
    return ("ask", why)
