"""The web adapter: browser threads in, session events out to SSE logs.

Each browser conversation is a ``ThreadKey("web", "browser", <id>)`` and goes
through :meth:`bot.sessions.SessionManager.handle` like a Slack thread does;
the manager decides whether a line is a task, steering, a follow-up or a
stop. What a web session emits reaches its :class:`~plugins.web.sse.EventLog`
through the turn renderer; what other platforms' sessions emit arrives
through the ``session_event`` hook and is shown read-only. Every payload is
redacted before it is encoded, so no configured secret reaches a browser.
"""

from __future__ import annotations

import ipaddress
import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bot.adapters import ChatAdapter
from bot.events import AgentEvent, AgentEventKind, ChatEvent, ChatEventKind, ThreadKey
from bot.policy.redaction import Redactor
from bot.policy.redaction_env import held_secrets
from plugins.web.redact_stream import StreamRedactor
from plugins.web.sse import EventHub, EventLog

if TYPE_CHECKING:
    from bot.agent import AgentSession
    from bot.config import Config
    from bot.policy.approval_view import ApprovalView
    from bot.runtime import Runtime
    from bot.sessions import SessionManager
    from plugins.web.server import WebServer

log = logging.getLogger(__name__)

PLATFORM = "web"
ROOM = "browser"
# Whoever reaches the view is the operator (loopback, or holds the token).
WEB_USER = "browser"
# Pieces of one text, redacted as a stream so a secret split across them is caught.
STREAMED = frozenset({AgentEventKind.TOKEN, AgentEventKind.THINKING})
# Typed text remembered per message id, so "queued" acknowledgements can show it.
TYPED_MEMORY = 512


class WebStartError(RuntimeError):
    """The browser view cannot start as configured; the message says what to change."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def redact_tree(value: Any, redact: Callable[[str], str]) -> Any:
    """Redact every string inside a JSON-like value (before encoding, so escapes
    can never hide a secret from the redactor)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_tree(v, redact) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_tree(v, redact) for v in value]
    return value


def new_message_id() -> str:
    return "w" + uuid.uuid4().hex[:15]


class WebRenderer:
    """Copies one web turn's events into the session's log."""

    def __init__(self, adapter: WebAdapter, session: AgentSession) -> None:
        self.adapter = adapter
        self.session = session

    async def __call__(self, event: AgentEvent) -> None:
        self.adapter.publish(self.session, event)

    async def close(self) -> None:
        return None


class WebAdapter(ChatAdapter):
    name = PLATFORM
    approvals_in_thread = True

    def __init__(self, config: Config) -> None:
        self.config = config
        self.hub = EventHub(history_events=config.web.history_events)
        self._secrets = held_secrets(config.secrets.values())
        self.redactor = Redactor(self._secrets)
        self._streams: dict[str, dict[AgentEventKind, StreamRedactor]] = {}
        self.sessions: SessionManager | None = None
        self.runtime: Runtime | None = None
        self.server: WebServer | None = None
        self._thread_sessions: dict[ThreadKey, str] = {}
        self._orphan_notices: dict[ThreadKey, list[str]] = {}
        self._typed: dict[str, str] = {}

    # --- configuration ----------------------------------------------------------

    @property
    def token(self) -> str | None:
        return self.config.secrets.web_token or self.config.web.token

    def check_config(self) -> None:
        host = self.config.web.host
        if not is_loopback(host) and not self.token:
            raise WebStartError(
                f"web.host is {host!r}, which is reachable from other machines, and no token "
                "is set: set THREADWRIGHT_WEB_TOKEN in the environment (a long random string) "
                "or bind web.host to 127.0.0.1"
            )

    # --- ChatAdapter --------------------------------------------------------------

    async def start(self, sessions: SessionManager) -> None:
        from plugins.web import OBSERVERS
        from plugins.web.server import WebServer

        self.check_config()
        self.sessions = sessions
        self.runtime = sessions.runtime
        sessions.register_adapter(self)
        self.server = WebServer(self)
        await self.server.start()
        OBSERVERS.append(self.observe)
        log.info("browser view at %s", self.server.url)

    async def stop(self) -> None:
        from plugins.web import OBSERVERS

        if self.observe in OBSERVERS:
            OBSERVERS.remove(self.observe)
        if self.server is not None:
            server, self.server = self.server, None
            await server.stop()

    def renderer(self, session: AgentSession, trigger: ChatEvent | None) -> WebRenderer:
        self._thread_sessions[session.thread] = session.id
        entry = self.log_for(session)
        entry.meta["running"] = True
        if trigger is not None:
            self.append_note(
                entry,
                "turn",
                trigger.text,
                author=trigger.author,
                message_id=trigger.message_id,
            )
        return WebRenderer(self, session)

    async def post_message(self, thread: ThreadKey, text: str) -> str:
        message_id = new_message_id()
        entry = await self._log_for_thread(thread)
        if entry is None:
            self._orphan_notices.setdefault(thread, []).append(self.redactor(text))
        else:
            self.append_note(entry, "notice", text, message_id=message_id)
        return message_id

    async def post_approval(self, thread: ThreadKey, view: ApprovalView) -> str:
        # The page shows the text as a text node (no markup) with line breaks kept, so
        # the whole call fits in the question; the buttons replace the reactions.
        request = view.request
        message_id = new_message_id()
        question = view.plain(whole=True) + f"\nNo answer within {view.timeout_s} s means deny."
        entry = await self._log_for_thread(thread)
        if entry is not None:
            self.append_note(
                entry,
                "approval",
                question,
                message_id=message_id,
                state="pending",
                tool=request.tool,
                arguments=request.arguments,
                summary=request.summary,
                reason=request.reason,
            )
        return message_id

    async def react(self, thread: ThreadKey, message_id: str, meaning: str) -> None:
        entry = await self._log_for_thread(thread)
        if entry is not None:
            self.append_note(
                entry,
                "reaction",
                meaning,
                message_id=message_id,
                meaning=meaning,
                typed=self._typed.get(message_id, ""),
            )

    @property
    def connected(self) -> bool:
        return self.server is not None

    # --- events -------------------------------------------------------------------

    def log_for(self, session: AgentSession) -> EventLog:
        entry = self.hub.log_for(session.id)
        if not entry.meta:
            entry.meta.update(self.describe(session))
        return entry

    def describe(self, session: AgentSession) -> dict[str, Any]:
        record = session.record
        return {
            "id": session.id,
            "platform": session.thread.platform,
            "task": self.redactor(record.task)[:300],
            "status": record.status,
            "running": session.running,
            "read_only": session.thread.platform != PLATFORM,
            "updated_at": record.updated_at,
        }

    def publish(self, session: AgentSession, event: AgentEvent) -> None:
        entry = self.log_for(session)
        meta = entry.meta
        meta["updated_at"] = event.ts
        streams = self._streams.setdefault(session.id, {})
        if event.kind in STREAMED:
            stream = streams.get(event.kind)
            if stream is None:
                stream = streams[event.kind] = StreamRedactor(self.redactor, self._secrets)
            self._append_piece(entry, event, stream.feed(event.text))
        else:
            for kind, stream in streams.items():
                self._append_piece(
                    entry, AgentEvent(kind, session.id, seq=event.seq), stream.flush()
                )
            entry.append(event.kind.value, redact_tree(event.to_dict(), self.redactor))
        if event.kind is AgentEventKind.DONE:
            self._streams.pop(session.id, None)
            meta["running"] = False
            meta["status"] = session.record.status
            self.hub.trim()
        elif not meta.get("running"):
            meta["running"] = True
            meta["status"] = "running"

    def _append_piece(self, entry: EventLog, event: AgentEvent, text: str) -> None:
        """A token or thinking piece whose text was already redacted (as a stream)."""
        if not text:
            return
        payload = event.to_dict()
        payload["text"] = text
        if payload["data"]:
            payload["data"] = redact_tree(payload["data"], self.redactor)
        entry.append(event.kind.value, payload)

    def observe(self, session: AgentSession, event: AgentEvent) -> None:
        """The ``session_event`` hook: sessions of other platforms, watched read-only."""
        if session.runtime is not self.runtime or session.thread.platform == PLATFORM:
            return
        self.publish(session, event)

    def append_note(self, entry: EventLog, kind: str, text: str, **data: Any) -> None:
        payload = {
            "kind": kind,
            "session_id": entry.session_id,
            "seq": 0,
            "ts": time.time(),
            "text": text,
            "data": data,
        }
        entry.append(kind, redact_tree(payload, self.redactor))

    async def _log_for_thread(self, thread: ThreadKey) -> EventLog | None:
        session_id = self._thread_sessions.get(thread)
        if session_id is None and self.sessions is not None:
            session = await self.sessions.get_session(thread)
            if session is not None:
                self._thread_sessions[thread] = session.id
                return self.log_for(session)
        return None if session_id is None else self.hub.log_for(session_id)

    # --- what the HTTP API asks for -------------------------------------------------

    def remember_typed(self, message_id: str, text: str) -> None:
        self._typed[message_id] = text
        while len(self._typed) > TYPED_MEMORY:
            self._typed.pop(next(iter(self._typed)))

    def take_orphan_notices(self, thread: ThreadKey) -> list[str]:
        return self._orphan_notices.pop(thread, [])

    def message(
        self,
        thread: ThreadKey,
        text: str,
        *,
        kind: ChatEventKind = ChatEventKind.MESSAGE,
        command: str | None = None,
        target: str | None = None,
        action: str | None = None,
    ) -> ChatEvent:
        message_id = new_message_id()
        return ChatEvent(
            kind=kind,
            thread=thread,
            user=WEB_USER,
            user_name=WEB_USER,
            text=text,
            event_id=message_id,
            message_id=message_id,
            mentions_bot=True,
            command=command,
            target_message_id=target,
            action_value=action,
        )

    @staticmethod
    def new_thread() -> ThreadKey:
        return ThreadKey(PLATFORM, ROOM, uuid.uuid4().hex[:12])
