"""The ``think`` tool: a scratchpad where the model reasons before acting.

A thought is appended to ``ctx.scratchpad``, which the context window keeps
out of the main history, and the model gets only a short acknowledgement
back, so planning costs no context on later turns. Each thought is cut to
``tools.reasoning.max_trace_length`` characters. With
``tools.reasoning.scratchpad_enabled: false`` the tool is not registered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot import hookimpl
from bot.tools.base import ToolContext, ToolError, ToolResult

if TYPE_CHECKING:
    from collections.abc import Callable

    from bot.config import Config


async def think(ctx: ToolContext, thought: str) -> ToolResult:
    """Think step by step in a private scratchpad before acting; nothing in the workspace changes.

    Use it to plan, to weigh options, or to reason about a tool result.

    Args:
        thought: Your reasoning, in as many words as it needs.
    """
    if not thought.strip():
        raise ToolError("thought is empty")
    limit = ctx.config.tools.reasoning.max_trace_length
    entry = thought
    if len(thought) > limit:
        entry = f"{thought[:limit]} … [{len(thought) - limit:,} characters cut]"
    ctx.scratchpad.append(entry)
    return ToolResult(
        ok=True,
        stdout="noted",
        truncated=len(thought) > limit,
        metadata={"chars": len(thought), "summary": "noted"},
    )


@hookimpl
def register_tools(register: Callable[..., None], config: Config) -> None:
    if config.tools.reasoning.scratchpad_enabled:
        register(think)
