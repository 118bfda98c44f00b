"""Tools over the Markdown directives: load a skill on demand, delegate to a sub-agent.

Skills are listed (name: description) in the system prompt; a skill's body
enters the context only when the model calls ``load_skill``. Sub-agents are
listed in the system prompt too; ``delegate`` runs one on a focused task.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bot import hookimpl
from bot.tools.base import ToolContext, ToolError, ToolResult

if TYPE_CHECKING:
    from bot.agent import AgentSession
    from bot.config import Config


def _session(ctx: ToolContext) -> AgentSession:
    session = ctx.extras.get("session")
    if session is None:
        raise ToolError("this tool needs a running session")
    return session


async def load_skill(ctx: ToolContext, name: str) -> ToolResult:
    """Load a skill's instructions (see the Skills list in your instructions) before doing
    that kind of work.

    Args:
        name: The skill's name, as listed.
    """
    directives = _session(ctx).runtime.current_directives()
    skill = directives.skills.get(name.strip().lower())
    if skill is None:
        known = ", ".join(sorted(directives.skills)) or "none"
        raise ToolError(f"no skill named {name!r}; available skills: {known}")
    return ToolResult(ok=True, stdout=skill.as_prompt(), metadata={"summary": f"loaded {name}"})


async def delegate(ctx: ToolContext, agent: str, task: str) -> ToolResult:
    """Hand a focused sub-task to a sub-agent (see the Sub-agents list in your instructions).
    It works with its own context and tools and returns its summary.

    Args:
        agent: The sub-agent's name, as listed.
        task: The sub-task, self-contained: the sub-agent does not see this conversation.
    """
    from bot.subagents import run_subagent

    session = _session(ctx)
    directives = session.runtime.current_directives()
    sub = directives.agents.get(agent.strip().lower())
    if sub is None:
        known = ", ".join(sorted(directives.agents)) or "none"
        raise ToolError(f"no sub-agent named {agent!r}; available: {known}")
    outcome = await run_subagent(session, sub, task)
    summary = outcome.text or "(the sub-agent gave no summary)"
    if not outcome.ok:
        why = f": {outcome.error}" if outcome.error else ""
        return ToolResult.failure(
            f"sub-agent {sub.name} ended with {outcome.reason.value}{why}", stdout=summary
        )
    return ToolResult(ok=True, stdout=summary, metadata={"summary": f"{sub.name} finished"})


@hookimpl
def register_tools(register: Callable[..., Any], config: Config) -> None:
    register(load_skill)
    register(delegate)
