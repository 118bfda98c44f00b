"""SessionManager: thread → session, per-thread serialisation, dedupe, reply routing.

Every adapter hands its :class:`ChatEvent` s to :meth:`SessionManager.handle`.
The manager drops duplicate deliveries, checks access, and decides what a
message means: a new task, a follow-up, steering, a stop, or a command. It
takes the thread's lock before loading session state, so two deliveries for
one thread never race (aiogram's issue 1317 was that race).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.access import AccessPolicy
from bot.agent import AgentSession, TurnOptions, new_session_id
from bot.events import AgentEvent, AgentEventKind, ChatEvent, ChatEventKind, ThreadKey
from bot.policy.approval_view import ApprovalView
from bot.policy.approvals import Approver, ChatApprover, PendingApprovals
from bot.store.base import SessionRecord

if TYPE_CHECKING:
    from bot.adapters import ChatAdapter
    from bot.runtime import Runtime

log = logging.getLogger(__name__)

STOP_REACTIONS = frozenset({"x", "❌", "octagonal_sign", "🛑"})
CONTROL_COMMANDS = frozenset({"help", "status", "stop", "diff", "undo", "model"})
_STOP_TEXT = re.compile(r"^\s*[/!]?(stop|cancel|abort)\s*[.!]*\s*$", re.IGNORECASE)
# How many delivery ids to remember in memory (the store remembers all).
DEDUPE_MEMORY = 4096
# Idle sessions kept in memory; older ones reload from the store on demand.
SESSION_CACHE = 256
REFUSAL_INTERVAL_S = 600.0


@dataclass(frozen=True, slots=True)
class Invocation:
    """What a message asks for, once mention and command syntax are understood."""

    text: str
    command: str | None = None
    arguments: str = ""


class SessionManager:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.access = AccessPolicy(runtime.config.access)
        self.adapters: dict[str, ChatAdapter] = {}
        self._sessions: OrderedDict[ThreadKey, AgentSession] = OrderedDict()
        self._locks: weakref.WeakValueDictionary[ThreadKey, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._refused: dict[tuple[str, str], float] = {}
        self._turns: set[asyncio.Task[None]] = set()
        self.approvals = PendingApprovals(self.access.may_approve)
        self.accepting = True
        from bot.workspaces import SessionWorkspaces

        self.workspaces = SessionWorkspaces(runtime.config)

    def register_adapter(self, adapter: ChatAdapter) -> None:
        self.adapters[adapter.name] = adapter

    # --- public entry point ---------------------------------------------------

    async def handle(self, event: ChatEvent) -> None:
        """Route one event. Never raises: one bad event must not stop an adapter."""
        try:
            await self._handle(event)
        except Exception:
            log.exception("failed to handle %s event in %s", event.kind, event.thread)

    async def _handle(self, event: ChatEvent) -> None:
        if await self._is_duplicate(event):
            log.debug("duplicate delivery dropped: %s", event.event_id or event.message_id)
            return
        adapter = self.adapters.get(event.thread.platform)
        if adapter is None:
            log.error("no adapter registered for platform %r", event.thread.platform)
            return
        platform = event.thread.platform
        if not self.access.room_allowed(platform, event.thread.room):
            return
        if event.kind in (ChatEventKind.REACTION, ChatEventKind.ACTION) and self._answer_approval(
            event
        ):
            return
        lock = self.lock_for(event.thread)
        async with lock:
            session = await self.get_session(event.thread)
            if event.kind is ChatEventKind.REACTION:
                await self._on_reaction(event, session)
                return
            if event.kind is ChatEventKind.ACTION:
                return  # a button that answered nothing pending
            await self._on_message(event, session, adapter)

    def _answer_approval(self, event: ChatEvent) -> bool:
        target = event.target_message_id
        choice = event.reaction if event.kind is ChatEventKind.REACTION else event.action_value
        if not target or not choice or not self.approvals.is_pending(str(event.thread), target):
            return False
        # Handled (answered or ignored) either way: a reaction on an approval
        # question never means "stop the session".
        self.approvals.answer(event.thread.platform, str(event.thread), target, event.user, choice)
        return True

    # --- routing --------------------------------------------------------------

    async def _on_reaction(self, event: ChatEvent, session: AgentSession | None) -> None:
        if session is None or not session.running:
            return
        if event.reaction in STOP_REACTIONS and self.access.may_stop(
            event.thread.platform, event.user, session.requester
        ):
            session.request_stop(event.author)

    async def _on_message(
        self, event: ChatEvent, session: AgentSession | None, adapter: ChatAdapter
    ) -> None:
        platform = event.thread.platform
        addressed = event.mentions_bot or event.kind is ChatEventKind.COMMAND
        invocation = self.parse_invocation(event)
        if not self.access.user_allowed(platform, event.user):
            if addressed:
                await self._refuse(event, adapter)
            return
        if session is not None and session.running:
            if self._is_stop(event, invocation):
                if self.access.may_stop(platform, event.user, session.requester):
                    session.request_stop(event.author)
                return
            if invocation.command in CONTROL_COMMANDS:
                await self._control(invocation, event, session, adapter)
                return
            if await self._refused_change(event, session, adapter, invocation):
                return
            if self.access.may_steer(platform, event.user, session.requester, addressed):
                await session.add_steering(event.author, invocation.text, event.message_id)
                if event.message_id:
                    await adapter.react(event.thread, event.message_id, "queued")
            return
        if invocation.command in CONTROL_COMMANDS:
            await self._control(invocation, event, session, adapter)
            return
        if session is not None:
            # A follow-up: the requester and approvers continue; others must mention.
            if not self.access.may_steer(platform, event.user, session.requester, addressed):
                return
            if await self._refused_change(event, session, adapter, invocation):
                return
        elif not addressed:
            return  # unmentioned chatter
        if not self.accepting:
            await adapter.post_notice(
                event.thread, "I'm restarting and not taking new work; try again in a minute."
            )
            return
        await self._start_turn(event, session, adapter, invocation)

    def parse_invocation(self, event: ChatEvent) -> Invocation:
        from bot.directives import parse_command_invocation

        if event.kind is ChatEventKind.COMMAND and event.command:
            return Invocation(event.text, event.command.lstrip("/!"), event.text)
        parsed = parse_command_invocation(event.text)
        if parsed is not None:
            name, args = parsed
            known = self.runtime.current_directives().commands
            if name in known or name in CONTROL_COMMANDS:
                return Invocation(event.text, name, args)
        return Invocation(event.text)

    @staticmethod
    def _is_stop(event: ChatEvent, invocation: Invocation) -> bool:
        return invocation.command == "stop" or bool(_STOP_TEXT.match(event.text))

    async def _control(
        self,
        invocation: Invocation,
        event: ChatEvent,
        session: AgentSession | None,
        adapter: ChatAdapter,
    ) -> None:
        if invocation.command == "help":
            await adapter.post_notice(event.thread, self.runtime.current_directives().help_text())
        elif invocation.command == "status":
            await adapter.post_notice(event.thread, self.status_text(session))
        elif invocation.command == "stop":
            if session is not None and session.running:
                if self.access.may_stop(event.thread.platform, event.user, session.requester):
                    session.request_stop(event.author)
            else:
                await adapter.post_notice(event.thread, "Nothing is running in this thread.")
        elif invocation.command == "model":
            if session is None:
                text = "No session in this thread yet: mention me with a task (add --cloud)."
            elif invocation.arguments.strip() and not self.access.may_change_session(
                event.thread.platform, event.user, session.requester
            ):
                text = self._change_refusal(session, "change the model of this session")
            else:
                text = session.routing.model_command(invocation.arguments)
            await adapter.post_notice(event.thread, text)
        elif invocation.command in ("diff", "undo"):
            requester = session.requester if session is not None else event.user
            await self.workspaces.control(
                invocation.command,
                event.thread,
                session,
                adapter,
                may_change=self.access.may_stop(event.thread.platform, event.user, requester),
            )

    async def _refused_change(
        self,
        event: ChatEvent,
        session: AgentSession,
        adapter: ChatAdapter,
        invocation: Invocation,
    ) -> bool:
        """Refuse (and say so) a message from someone else that would change where the
        session's code goes: a model wish in the text, or a command declaring a cloud
        model. True when refused; the message is then not applied at all."""
        if self.access.may_change_session(event.thread.platform, event.user, session.requester):
            return False
        from bot.complexity import parse_wish

        what = ""
        if parse_wish(invocation.text) is not None:
            what = "choose the model of this session (your message asks for one)"
        elif invocation.command:
            command = self.runtime.current_directives().commands.get(invocation.command)
            if (
                command is not None
                and command.model
                and self.runtime.router.is_cloud(command.model)
            ):
                what = f"run /{command.name} here: it sends this session's code to {command.model}"
        if not what:
            return False
        log.info("refused %s changing session %s: not its requester", event.user, session.id)
        await adapter.post_notice(
            event.thread, self._change_refusal(session, what) + " Your message was not applied."
        )
        return True

    def _change_refusal(self, session: AgentSession, what: str) -> str:
        return f"Only {self.access.who_may_change(session.requester)} can {what}."

    def status_text(self, session: AgentSession | None) -> str:
        active = sum(1 for s in self._sessions.values() if s.running)
        lines = [f"Active sessions: {active}"]
        if session is not None:
            stats = session.record.stats
            lines.append(
                f"This thread: session {session.id}, {session.record.status}, "
                f"{stats.get('turns', 0)} turns, {stats.get('steps', 0)} steps, "
                f"{stats.get('prompt_tokens', 0) + stats.get('completion_tokens', 0)} tokens"
            )
        lines.append(f"Local model: {self.runtime.config.routing.local_model}")
        if session is not None:
            lines.extend(session.routing.status_lines())
        return "\n".join(lines)

    async def _refuse(self, event: ChatEvent, adapter: ChatAdapter) -> None:
        key = (event.thread.platform, event.user)
        now = time.monotonic()
        last = self._refused.get(key)
        if last is not None and now - last < REFUSAL_INTERVAL_S:
            return
        self._refused[key] = now
        log.info("refused %s on %s: not in access.allowed_users", event.user, key[0])
        await adapter.post_notice(
            event.thread,
            "Sorry, I can only take requests from people on my allow-list. "
            "Ask the operator to add you to access.allowed_users.",
        )

    # --- sessions ---------------------------------------------------------------

    async def get_session(self, thread: ThreadKey) -> AgentSession | None:
        session = self._sessions.get(thread)
        if session is not None:
            self._sessions.move_to_end(thread)
            return session
        record = await self.runtime.store.find_session_by_thread(str(thread))
        if record is None:
            return None
        return await self._materialise(record, thread)

    async def load_session(self, session_id: str) -> AgentSession | None:
        record = await self.runtime.store.get_session(session_id)
        if record is None:
            return None
        thread = ThreadKey.parse(record.thread_key)
        existing = self._sessions.get(thread)
        if existing is not None:
            return existing
        return await self._materialise(record, thread)

    async def _materialise(self, record: SessionRecord, thread: ThreadKey) -> AgentSession:
        history = await self.runtime.store.load_messages(record.id)
        adapter = self.adapters.get(thread.platform)
        session = AgentSession(
            self.runtime,
            record,
            thread,
            workspace=await self.workspaces.workspace_for(thread, record.task),
            history=history,
        )
        self.workspaces.attach(session)
        if adapter is not None:
            session.approver = self.approver_for(adapter, session)
        for pending in await self.runtime.store.pending_steering(record.id):
            from bot.steering import SteeringMessage

            session.steering.put(
                SteeringMessage(
                    pending.author,
                    pending.text,
                    pending.message_id,
                    pending.id,
                    pending.received_at,
                )
            )
        self._remember(thread, session)
        return session

    async def create_session(self, thread: ThreadKey, requester: str, task: str) -> AgentSession:
        now = time.time()
        workspace = await self.workspaces.workspace_for(thread, task)
        record = SessionRecord(
            id=new_session_id(),
            thread_key=str(thread),
            requester=requester,
            task=task,
            status="idle",
            created_at=now,
            updated_at=now,
            workspace=str(workspace),
        )
        await self.runtime.store.create_session(record)
        session = AgentSession(self.runtime, record, thread, workspace=workspace)
        self.workspaces.attach(session)
        adapter = self.adapters.get(thread.platform)
        if adapter is not None:
            session.approver = self.approver_for(adapter, session)
        self._remember(thread, session)
        return session

    def approver_for(self, adapter: ChatAdapter, session: AgentSession) -> Approver:
        """Chat platforms ask in the thread; others decide through the adapter."""
        if not adapter.approvals_in_thread:
            return adapter.approver(session)
        thread = session.thread

        async def post(view: ApprovalView) -> str:
            return await adapter.post_approval(thread, view)

        return ChatApprover(
            str(thread), self.approvals, post, timeout=self.runtime.config.access.approval_timeout
        )

    def _remember(self, thread: ThreadKey, session: AgentSession) -> None:
        self._sessions[thread] = session
        self._sessions.move_to_end(thread)
        while len(self._sessions) > SESSION_CACHE:
            oldest, candidate = next(iter(self._sessions.items()))
            if candidate.running:
                self._sessions.move_to_end(oldest)
                break
            del self._sessions[oldest]

    def active_sessions(self) -> list[AgentSession]:
        return [s for s in self._sessions.values() if s.running]

    async def _start_turn(
        self,
        event: ChatEvent,
        session: AgentSession | None,
        adapter: ChatAdapter,
        invocation: Invocation,
    ) -> None:
        options = TurnOptions()
        text = invocation.text
        if invocation.command:
            command = self.runtime.current_directives().commands.get(invocation.command)
            if command is None:
                await adapter.post_notice(
                    event.thread, f"Unknown command /{invocation.command}. Try /help."
                )
                return
            text = command.expand(invocation.arguments)
            options = TurnOptions(
                allowed_tools=set(command.allowed_tools) if command.allowed_tools else None,
                model=command.model,
                local_only=command.local_only,
                command=command.name,
                complexity=command.complexity,
            )
        if not text.strip():
            await adapter.post_notice(event.thread, "What should I do? Mention me with a task.")
            return
        if session is None:
            session = await self.create_session(event.thread, event.user, text)
        await self.workspaces.ensure(session)  # its worktree may have been pruned meanwhile
        if event.message_id:
            await adapter.react(event.thread, event.message_id, "working")
        self.start(session, adapter, text, event.author, options, trigger=event)

    def start(
        self,
        session: AgentSession,
        adapter: ChatAdapter,
        text: str,
        author: str,
        options: TurnOptions | None = None,
        *,
        trigger: ChatEvent | None = None,
    ) -> asyncio.Task[None]:
        """Start a turn with the adapter's renderer attached; the manager keeps the task."""
        renderer = adapter.renderer(session, trigger)

        async def acknowledge_steering(event: AgentEvent) -> None:
            if event.kind is AgentEventKind.STEERING and event.data.get("message_id"):
                await adapter.react(session.thread, str(event.data["message_id"]), "applied")

        unsubscribe_renderer = session.subscribe(renderer)
        unsubscribe_ack = session.subscribe(acknowledge_steering)
        turn = session.start_turn(text, author, options)

        async def follow() -> None:
            try:
                await asyncio.wait([turn])
            finally:
                unsubscribe_renderer()
                unsubscribe_ack()
                try:
                    await renderer.close()
                except Exception:
                    log.exception("renderer for session %s failed to close", session.id)
                try:
                    await self.workspaces.after_turn(session, adapter)  # push, pull request
                except Exception:
                    log.exception("session %s: publishing the branch failed", session.id)
                if turn.done() and not turn.cancelled() and turn.exception() is not None:
                    log.error("session %s ended with %r", session.id, turn.exception())

        task = asyncio.create_task(follow(), name=f"follow-{session.id}")
        self._turns.add(task)
        task.add_done_callback(self._turns.discard)
        return task

    async def drain(self, timeout: float) -> None:  # noqa: ASYNC109 - bounded wait, no cancel
        """Wait (bounded) for running turns to finish."""
        if self._turns:
            await asyncio.wait(list(self._turns), timeout=timeout)

    # --- plumbing ----------------------------------------------------------------

    def lock_for(self, thread: ThreadKey) -> asyncio.Lock:
        """The thread's lock: hold it to load or start that thread's session."""
        lock = self._locks.get(thread)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[thread] = lock
        return lock

    async def _is_duplicate(self, event: ChatEvent) -> bool:
        keys = []
        if event.event_id:
            keys.append(f"e:{event.thread.platform}:{event.event_id}")
        if event.message_id and event.kind is not ChatEventKind.REACTION:
            keys.append(f"m:{event.thread.platform}:{event.thread.room}:{event.message_id}")
        if not keys:
            return False
        if any(k in self._seen for k in keys):
            return True
        for key in keys:
            self._seen[key] = None
        while len(self._seen) > DEDUPE_MEMORY:
            self._seen.popitem(last=False)
        fresh = True
        for key in keys:
            if not await self.runtime.store.mark_event_seen(key, time.time()):
                fresh = False
        return not fresh
