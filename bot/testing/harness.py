"""An in-memory chat adapter and a host builder, for tests of the host and of plugins.

``RecordingAdapter`` is a real :class:`bot.adapters.ChatAdapter` that keeps
everything it is asked to show (events per session, notices, reactions) and
answers approvals from a script, so a test can drive the whole session
machinery without a chat platform.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.adapters import ChatAdapter
from bot.events import AgentEvent, AgentEventKind, ChatEvent, ChatEventKind, ThreadKey
from bot.policy.approvals import ApprovalDecision, ApprovalRequest, Approver

if TYPE_CHECKING:
    from bot.agent import AgentSession
    from bot.config import Config
    from bot.host import Host
    from bot.sessions import SessionManager


@dataclass
class RecordedTurn:
    session_id: str
    trigger: ChatEvent | None
    events: list[AgentEvent] = field(default_factory=list)
    closed: bool = False

    @property
    def text(self) -> str:
        return "".join(e.text for e in self.events if e.kind is AgentEventKind.TOKEN)

    def kinds(self) -> list[AgentEventKind]:
        return [e.kind for e in self.events]

    def of(self, kind: AgentEventKind) -> list[AgentEvent]:
        return [e for e in self.events if e.kind is kind]


class _Renderer:
    def __init__(self, turn: RecordedTurn, done: asyncio.Event) -> None:
        self.turn = turn
        self.done = done

    async def __call__(self, event: AgentEvent) -> None:
        self.turn.events.append(event)

    async def close(self) -> None:
        self.turn.closed = True
        self.done.set()


class ScriptedApprover:
    """Answers approvals from a list of decisions (default: deny), recording requests."""

    def __init__(self, decisions: list[ApprovalDecision] | None = None) -> None:
        self.decisions = list(decisions or [])
        self.requests: list[ApprovalRequest] = []

    async def request_approval(self, request: ApprovalRequest) -> ApprovalDecision:
        self.requests.append(request)
        if self.decisions:
            return self.decisions.pop(0)
        return ApprovalDecision(approved=False, reason="denied by test")


class RecordingAdapter(ChatAdapter):
    def __init__(
        self, name: str = "test", approver: Approver | None = None, *, in_thread: bool = False
    ) -> None:
        """``in_thread=True`` asks approvals in the thread (answered by reactions via
        :meth:`say`) like a chat platform; otherwise ``approver`` answers."""
        self.name = name
        self.approvals_in_thread = in_thread
        self.turns: list[RecordedTurn] = []
        self.notices: list[tuple[ThreadKey, str]] = []
        self.posted_ids: list[str] = []  # the id of each notice, in order
        self.reactions: list[tuple[ThreadKey, str, str]] = []
        self.sessions: SessionManager | None = None
        self._approver = approver or ScriptedApprover()
        self._turn_done = asyncio.Event()
        self._ids = itertools.count(1)
        # Delivery ids are remembered in the store across restarts: keep each
        # adapter's ids distinct so a second host on the same store sees new ones.
        self._run = uuid.uuid4().hex[:6]

    async def start(self, sessions: SessionManager) -> None:
        self.sessions = sessions
        sessions.register_adapter(self)

    async def stop(self) -> None:
        return None

    def renderer(self, session: AgentSession, trigger: ChatEvent | None) -> _Renderer:
        turn = RecordedTurn(session.id, trigger)
        self.turns.append(turn)
        self._turn_done = asyncio.Event()
        return _Renderer(turn, self._turn_done)

    async def post_message(self, thread: ThreadKey, text: str) -> str:
        message_id = f"posted{next(self._ids)}"
        self.notices.append((thread, text))
        self.posted_ids.append(message_id)
        return message_id

    async def react(self, thread: ThreadKey, message_id: str, meaning: str) -> None:
        self.reactions.append((thread, message_id, meaning))

    def approver(self, session: AgentSession) -> Approver:
        return self._approver

    # --- driving ----------------------------------------------------------------

    def thread(self, name: str = "t1", room: str = "room") -> ThreadKey:
        return ThreadKey(self.name, room, name)

    async def say(
        self,
        text: str,
        *,
        user: str = "alice",
        thread: ThreadKey | None = None,
        mention: bool = True,
        event_id: str | None = None,
        message_id: str | None = None,
        kind: ChatEventKind = ChatEventKind.MESSAGE,
        command: str | None = None,
        reaction: str | None = None,
        target: str | None = None,
    ) -> ChatEvent:
        assert self.sessions is not None, "start the adapter first"
        n = next(self._ids)
        event = ChatEvent(
            kind=kind,
            thread=thread or self.thread(),
            user=user,
            text=text,
            event_id=event_id if event_id is not None else f"ev{self._run}-{n}",
            message_id=message_id if message_id is not None else f"msg{self._run}-{n}",
            mentions_bot=mention,
            command=command,
            reaction=reaction,
            target_message_id=target,
        )
        await self.sessions.handle(event)
        return event

    async def wait_turn(self, timeout: float = 10.0) -> RecordedTurn:  # noqa: ASYNC109
        """Wait until the latest turn's renderer was closed; return it."""
        async with asyncio.timeout(timeout):
            while not (self.turns and self.turns[-1].closed):
                await self._turn_done.wait()
                if not (self.turns and self.turns[-1].closed):
                    await asyncio.sleep(0)
        return self.turns[-1]


_EMPTY_CONFIG = Path(__file__).with_name("empty_config.yaml")


def make_test_config(workspace: Path, model_url: str, **overrides: Any) -> Config:
    """A Config for tests: workspace, store under it, model at ``model_url``;
    ``overrides`` are merged over these defaults section by section."""
    from bot.config import load_config, merge_settings

    defaults: dict[str, Any] = {
        "workspace": {"root": str(workspace)},
        "store": {"path": str(workspace.parent / f"{workspace.name}-store.db")},
        "routing": {"local_model": "qwen3:4b", "request_timeout": 30},
        "access": {"allowed_users": ["alice", "bob", "carol"], "approvers": ["alice"]},
    }
    # The cwd may hold an agent_config.yaml; tests must not read it.
    return load_config(
        _EMPTY_CONFIG,
        env={"OLLAMA_HOST": model_url},
        overrides=merge_settings(defaults, overrides),
    )


@asynccontextmanager
async def running_host(
    config: Any,
    *,
    adapter: RecordingAdapter | None = None,
    extra_plugins: tuple[object, ...] = (),
    on_host: Callable[[Host], None] | None = None,
) -> AsyncIterator[tuple[Host, RecordingAdapter]]:
    """A started host (entry points off) with a RecordingAdapter attached."""
    from bot.host import Host
    from bot.plugins import make_plugin_manager

    plugins = make_plugin_manager(load_entrypoints=False, extra_plugins=extra_plugins)
    adapter = adapter or RecordingAdapter()
    async with Host(config, plugins=plugins) as host:
        if on_host is not None:
            on_host(host)
        await adapter.start(host.sessions)
        host.adapters.append(adapter)
        try:
            yield host, adapter
        finally:
            await host.sessions.drain(5.0)
