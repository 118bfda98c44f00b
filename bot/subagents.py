"""Running a sub-agent: a focused child loop with its own context and tools.

The parent delegates through the ``delegate`` tool. The child is a full
:class:`bot.agent.AgentSession` (stored, so its run is in the transcript)
whose system prompt is the sub-agent's instructions, whose tools are the ones
its file lists (never ``delegate`` itself: no recursion), and whose steps are
routed like any other (its ``model`` is a preference for the router). Its
tool calls and notices stream into the parent's reply; its final answer
returns to the parent as the tool result.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from bot.agent import AgentSession, TurnOptions, TurnOutcome, new_session_id
from bot.events import AgentEvent, AgentEventKind
from bot.store.base import SessionRecord

if TYPE_CHECKING:
    from bot.directives import SubAgent

DELEGATE_TOOL = "delegate"
# Kinds of child events shown in the parent's reply; the child's tokens are
# its working notes, and its answer comes back as the tool result.
FORWARDED = frozenset({AgentEventKind.TOOL_CALL, AgentEventKind.TOOL_RESULT, AgentEventKind.NOTICE})


def subagent_tools(agent: SubAgent, available: list[str]) -> set[str]:
    wanted = set(agent.tools) if agent.tools else set(available)
    return {name for name in wanted if name in available and name != DELEGATE_TOOL}


async def run_subagent(parent: AgentSession, agent: SubAgent, task: str) -> TurnOutcome:
    runtime = parent.runtime
    now = time.time()
    record = SessionRecord(
        id=new_session_id(),
        thread_key=f"{parent.thread}/sub:{agent.name}",
        requester=parent.requester,
        task=task,
        status="idle",
        created_at=now,
        updated_at=now,
        workspace=str(parent.workspace),
        meta={"parent": parent.id, "subagent": agent.name},
    )
    await runtime.store.create_session(record)
    tools = subagent_tools(agent, runtime.tools.names())
    memory = runtime.current_directives().project_memory
    prompt = agent.instructions.strip()
    if memory:
        prompt += "\n\n# Project memory\n\n" + memory
    child = AgentSession(
        runtime,
        record,
        parent.thread,
        workspace=parent.workspace,
        approver=parent.approver,
        system_prompt=prompt,
    )

    async def forward(event: AgentEvent) -> None:
        if event.kind in FORWARDED:
            await parent.emit(event.kind, event.text, subagent=agent.name, **event.data)

    child.subscribe(forward)
    await parent.emit(AgentEventKind.NOTICE, f"↳ {agent.name} is working on: {task[:120]}")
    outcome = await child.run_turn(
        task, parent.requester, TurnOptions(allowed_tools=tools, model=agent.model)
    )
    await parent.emit(
        AgentEventKind.NOTICE,
        f"↳ {agent.name} finished ({outcome.reason.value}, {outcome.stats.steps} steps)",
    )
    return outcome
