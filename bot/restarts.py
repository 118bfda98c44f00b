"""Restarts without loss: pause running sessions on the way down, resume them on the way up.

What must survive is already in the store: each user message is written when
its turn starts, steering before it is queued, the transcript at every loop
boundary, delivery ids as they arrive. This module does the rest.

On stop (:func:`pause_for_restart`): take no new work, ask every running
session to end its turn at the next loop boundary, wait (bounded), interrupt
whatever is still running (losing only the step in flight), and tell each
thread that the bot is restarting.

On start (:func:`resume_after_restart`): find sessions the store still shows
as ``running`` (the process died) or ``interrupted`` (it stopped politely),
tell each thread, and either continue the loop from the last boundary, with
any steering that arrived in between, or wait for a reply
(``sessions.resume_on_start``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from bot.agent import TurnOptions
from bot.events import ThreadKey

if TYPE_CHECKING:
    from bot.adapters import ChatAdapter
    from bot.agent import AgentSession
    from bot.sessions import SessionManager
    from bot.store.base import Store

log = logging.getLogger(__name__)

RESUMABLE_STATUSES = ("running", "interrupted")
# After the grace, interrupted turns get this long to persist and close their renderers.
INTERRUPT_WAIT_S = 5.0
RESUME_SCAN_LIMIT = 500

RESTARTING_RESUME = (
    "I'm restarting. This session is saved and will resume here when I'm back "
    "(anything you write meanwhile is kept)."
)
RESTARTING_WAIT = (
    "I'm restarting. This session is saved; reply in this thread when I'm back to continue."
)
RESUMING = "I'm back after a restart and resuming this session where it stopped."
WAITING = "I'm back after a restart. This session stopped mid-task; reply here to continue."
NOT_RUN_AFTER_RESTART = (
    "ERROR: not run: the bot restarted before this tool call finished. "
    "Run it again if it is still needed."
)


async def pause_for_restart(sessions: SessionManager, grace: float) -> list[AgentSession]:
    """Stop taking work and bring running sessions to rest; returns those interrupted."""
    sessions.accepting = False
    active = sessions.active_sessions()
    for session in active:
        session.request_pause()
    if active:
        log.info("waiting up to %.0f s for %d session(s) to reach a boundary", grace, len(active))
        await sessions.drain(grace)
    late = [s for s in active if s.running]
    for session in late:
        log.warning("session %s did not reach a boundary in time; interrupting it", session.id)
        session.interrupt()
    if late:
        await sessions.drain(INTERRUPT_WAIT_S)
    interrupted = [s for s in active if s.record.status == "interrupted"]
    notice = (
        RESTARTING_RESUME if sessions.runtime.config.sessions.resume_on_start else RESTARTING_WAIT
    )
    for session in interrupted:
        await _tell(sessions.adapters.get(session.thread.platform), session.thread, notice)
    return interrupted


async def resume_after_restart(sessions: SessionManager) -> list[AgentSession]:
    """Pick up sessions a stop left behind, on the platforms whose adapters run now.

    Returns the sessions whose loop was continued. Sessions on platforms
    without a running adapter (the console's, when ``run`` serves Slack) stay
    as they are for the process that owns them.
    """
    store = sessions.runtime.store
    records = []
    for status in RESUMABLE_STATUSES:
        records.extend(await store.list_sessions(status=status, limit=RESUME_SCAN_LIMIT))
    resumed: list[AgentSession] = []
    for record in sorted(records, key=lambda r: r.updated_at):
        if record.meta.get("parent"):
            # A sub-agent runs inside its parent's tool call: the parent is told that
            # call was not run and delegates again if it still needs to.
            await store.update_session(record.id, status="cancelled")
            continue
        thread = ThreadKey.parse(record.thread_key)
        adapter = sessions.adapters.get(thread.platform)
        if adapter is None:
            continue
        try:
            session = await continue_session(sessions, adapter, record.id)
        except Exception:
            log.exception("could not resume session %s", record.id)
            continue
        if session is not None:
            resumed.append(session)
    if resumed:
        log.info("resumed %d session(s) after a restart", len(resumed))
    return resumed


async def continue_session(
    sessions: SessionManager,
    adapter: ChatAdapter,
    session_id: str,
    *,
    resume: bool | None = None,
) -> AgentSession | None:
    """Tell the thread, then continue the session's loop or leave it waiting for a reply.

    ``resume`` None follows ``sessions.resume_on_start``. Returns the session
    when a turn was started.
    """
    store = sessions.runtime.store
    record = await store.get_session(session_id)
    if record is None:
        return None
    # Under the thread's lock, like every delivery: a message arriving meanwhile
    # must find this same session object, not materialise a second one.
    async with sessions.lock_for(ThreadKey.parse(record.thread_key)):
        return await _continue_locked(sessions, adapter, session_id, resume)


async def _continue_locked(
    sessions: SessionManager, adapter: ChatAdapter, session_id: str, resume: bool | None
) -> AgentSession | None:
    store = sessions.runtime.store
    session = await sessions.load_session(session_id)
    if session is None or session.running:
        return None
    await close_unanswered_tool_calls(store, session)
    thread = session.thread
    if resume is None:
        resume = sessions.runtime.config.sessions.resume_on_start
    if not has_work_left(session):
        # It had answered and only its final bookkeeping was lost.
        session.record.status = "idle"
        await store.update_session(session.id, status="idle")
        return None
    if not resume:
        # A reply in the thread continues it as a follow-up, pending steering included.
        session.record.status = "idle"
        await store.update_session(session.id, status="idle")
        await _tell(adapter, thread, WAITING)
        return None
    await _tell(adapter, thread, RESUMING)
    if session.running:  # a message that arrived while we posted started a turn already
        return None
    text = "" if session.history else session.record.task
    options = TurnOptions.from_dict(session.record.meta.get("turn_options") or {})
    sessions.start(session, adapter, text, session.requester, options)
    return session


def has_work_left(session: AgentSession) -> bool:
    """True when the loop stopped between a request and its final answer."""
    if session.steering:
        return True
    if not session.history:
        return True
    last = session.history[-1]
    return last.get("role") in ("user", "tool") or bool(last.get("tool_calls"))


async def close_unanswered_tool_calls(store: Store, session: AgentSession) -> int:
    """Answer tool calls whose results were lost, so the next request is well formed."""
    messages = session.history
    last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=-1)
    if last < 0 or not messages[last].get("tool_calls"):
        return 0
    answered = {m.get("tool_call_id") for m in messages[last + 1 :] if m.get("role") == "tool"}
    missing: list[dict[str, Any]] = []
    for call in messages[last]["tool_calls"]:
        call_id = call.get("id")
        if call_id and call_id not in answered:
            name = (call.get("function") or {}).get("name", "")
            missing.append(
                {
                    "role": "tool",
                    "tool_name": name,
                    "tool_call_id": call_id,
                    "content": NOT_RUN_AFTER_RESTART,
                    "_summary": f"{name} → not run (restart)",
                }
            )
    if missing:
        await store.append_messages(session.id, missing)
        session.history.extend(missing)
    return len(missing)


async def _tell(adapter: ChatAdapter | None, thread: ThreadKey, text: str) -> None:
    if adapter is None:
        return
    try:
        async with asyncio.timeout(10):
            await adapter.post_notice(thread, text)
    except Exception as exc:
        log.warning("could not tell %s about the restart: %s", thread, exc)
