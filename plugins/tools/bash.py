"""The ``bash`` tool: one shell command in the workspace, bounded in time and output.

The command runs as ``/bin/bash -c COMMAND`` through
:func:`bot.tools.process.run_process`: its own process group (killed on
timeout, on cancel, and when the command exits, so background jobs do not
outlive the call), the workspace as cwd, the session's scrubbed environment
(``ctx.env``; built fresh if the context has none, never ``os.environ``).

Whether a command may run at all (``tools.bash.allowed_commands``, approval)
is decided before this function is called, by the policy's
``before_tool_call`` hook. Sandboxing plugs in through the seam in
``ctx.extras``: a callable under ``"wrap_argv"`` maps the argv to the argv
that actually runs (for example a ``bwrap …`` prefix), and a
:class:`~bot.tools.process.ResourceLimits` under ``"resource_limits"``
replaces the default rlimits.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from bot import hookimpl
from bot.policy.sandbox import sandbox_for
from bot.tools.base import ToolContext, ToolError, ToolResult
from bot.tools.environment import build_tool_env
from bot.tools.process import (
    DEFAULT_LIMITS,
    RESOURCE_LIMITS_EXTRA,
    WRAP_ARGV_EXTRA,
    run_process,
    wrap_argv,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from bot.config import Config

SHELL = "/bin/bash"


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
    limits = ctx.extras.get(RESOURCE_LIMITS_EXTRA, DEFAULT_LIMITS)
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
