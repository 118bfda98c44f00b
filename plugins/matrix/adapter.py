"""MatrixAdapter: the :class:`bot.adapters.ChatAdapter` for Matrix (matrix-nio).

It translates and nothing more. Inbound: the sync loop hands each batch
over; invites from allowed users are accepted (others declined); timeline
events newer than the bot's start become :class:`bot.events.ChatEvent` s
(:mod:`plugins.matrix.inbound`) for :meth:`bot.sessions.SessionManager.handle`.
Outbound: a turn streams through :class:`bot.streaming.StreamingRenderer` over
a :class:`plugins.matrix.transport.MatrixTransport`, with typing notices;
notices and approval questions are thread replies; acknowledgements are
reactions (👀 working, 📥 queued, ✅ applied, 🛑 stopped), sent in the
background so a rate-limited homeserver never holds up the sync loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from nio import (
    AsyncClient,
    InviteMemberEvent,
    JoinResponse,
    MatrixRoom,
    MegolmEvent,
    ProfileGetDisplayNameResponse,
    RoomGetEventResponse,
    SyncResponse,
)
from nio.crypto import ENCRYPTION_ENABLED

from bot.adapters import ChatAdapter
from bot.config import Config
from bot.events import ChatEvent, ChatEventKind, ThreadKey
from bot.streaming import StreamingRenderer, split_text
from plugins.matrix import content
from plugins.matrix.approvals import question_content, whole_text_contents
from plugins.matrix.connection import MatrixCredentials, MatrixSetupError, log_in
from plugins.matrix.encryption import KeyMaintenance
from plugins.matrix.inbound import PLATFORM, EventTranslator, thread_root
from plugins.matrix.login_state import LoginState, LoginStateFile
from plugins.matrix.mentions import BotIdentity
from plugins.matrix.reactions import APPROVAL_CHOICES, MEANING_EMOJI
from plugins.matrix.renderer import MatrixTurnRenderer, ReplyReport
from plugins.matrix.sender import MatrixSender
from plugins.matrix.sync_loop import SyncLoop
from plugins.matrix.threads import ThreadIndex
from plugins.matrix.transport import MAX_MESSAGE_CHARS, MatrixTransport
from plugins.matrix.typing_notices import TypingNotifier

if TYPE_CHECKING:
    from bot.agent import AgentSession
    from bot.policy.approval_view import ApprovalView
    from bot.sessions import SessionManager

log = logging.getLogger(__name__)

# Events stamped this much before the bot started are history, whatever the
# sync says; the margin absorbs clock skew between the bot and its homeserver.
CLOCK_SKEW_MS = 10_000
BACKGROUND_GRACE_S = 3.0


class MatrixAdapter(ChatAdapter):
    name = PLATFORM
    approvals_in_thread = True

    def __init__(self, host: Any) -> None:
        self.config: Config = host.config
        self.sessions: SessionManager | None = None
        self.threads = ThreadIndex()
        self.reports: deque[ReplyReport] = deque(maxlen=256)
        self.started_at_ms = 0
        self.state: LoginState | None = None
        self._client: AsyncClient | None = None
        self._sender: MatrixSender | None = None
        self._typing: TypingNotifier | None = None
        self._sync: SyncLoop | None = None
        self._translator: EventTranslator | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._warned_unreadable: set[str] = set()

    # --- lifecycle --------------------------------------------------------------

    async def start(self, sessions: SessionManager) -> None:
        credentials = MatrixCredentials.from_config(self.config)
        encryption = self.config.matrix.encryption
        if encryption and not ENCRYPTION_ENABLED:
            raise MatrixSetupError(
                "matrix.encryption is on but matrix-nio's e2e extra is missing: "
                "pip install 'matrix-nio[e2e]'"
            )
        state_file = await LoginStateFile.prepare(self.config.matrix.store_path)
        client, state = await log_in(
            credentials,
            state_file,
            encryption=encryption,
            device_name=self.config.matrix.device_name,
        )
        self._client, self.state = client, state
        try:
            keys = KeyMaintenance(client)
            self._sender = MatrixSender(client, keys)
            self._typing = TypingNotifier(self._sender)
            identity = BotIdentity(client.user_id, await self._display_name(client))
            self._translator = EventTranslator(
                identity,
                self.threads,
                is_command=self._is_command,
                resolve_thread=self._resolve_thread,
            )
            self.sessions = sessions
            sessions.register_adapter(self)
            self.started_at_ms = int(time.time() * 1000)
            self._sync = SyncLoop(client, keys, state, state_file, self._on_sync)
            await self._sync.first_sync()
            self._sync.start()
        except BaseException:
            await self._close_client()
            raise
        log.info(
            "Matrix: logged in as %s (device %s)%s",
            client.user_id,
            client.device_id,
            ", encryption on" if encryption else "",
        )

    async def stop(self) -> None:
        if self._sync is not None:
            await self._sync.stop()
        if self._typing is not None:
            await self._typing.aclose()
        if self._background:
            await asyncio.wait(list(self._background), timeout=BACKGROUND_GRACE_S)
            for task in list(self._background):
                task.cancel()
            await asyncio.gather(*self._background, return_exceptions=True)
        if self._sender is not None:
            self._sender.close()
        await self._close_client()

    async def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        await client.close()
        if client.store is not None:
            client.store.database.close()

    @property
    def connected(self) -> bool:
        return self._sync is not None and self._sync.running and self._sync.healthy

    @property
    def user_id(self) -> str:
        return self._require_state().user_id

    @property
    def device_id(self) -> str:
        return self._require_state().device_id

    @property
    def limit_exceeded(self) -> int:
        """How many 429s the homeserver has answered so far."""
        return self._sender.stats.limit_exceeded if self._sender is not None else 0

    # --- outbound ---------------------------------------------------------------

    def renderer(self, session: AgentSession, trigger: ChatEvent | None) -> MatrixTurnRenderer:
        thread = session.thread
        transport = MatrixTransport(
            self._require_sender(),
            self.threads,
            thread.room,
            thread.thread,
            encrypted=lambda: self._room_encrypted(thread.room),
        )
        streaming = StreamingRenderer(transport, interval=self.config.matrix.edit_interval)
        assert self._typing is not None
        renderer = MatrixTurnRenderer(streaming, self._typing, thread)
        self.reports.append(renderer.report)
        return renderer

    async def post_message(self, thread: ThreadKey, text: str) -> str:
        return await self._post(thread, text, "m.text")

    async def post_notice(self, thread: ThreadKey, text: str) -> None:
        await self._post(thread, text, "m.notice")

    async def post_approval(self, thread: ThreadKey, view: ApprovalView) -> str:
        for notice in whole_text_contents(view):
            await self._send_in_thread(thread, notice)
        question = await self._send_in_thread(thread, question_content(view))
        # The choices under the question: approvers answer with one click.
        self._in_background(self._offer_choices(thread.room, question, APPROVAL_CHOICES))
        return question

    async def react(self, thread: ThreadKey, message_id: str, meaning: str) -> None:
        emoji = MEANING_EMOJI.get(meaning)
        if emoji is not None:
            self._in_background(self._send_reaction(thread.room, message_id, emoji))

    async def _post(self, thread: ThreadKey, text: str, msgtype: str) -> str:
        first: str | None = None
        for chunk in split_text(text, MAX_MESSAGE_CHARS):
            event_id = await self._send_in_thread(thread, content.message(chunk, msgtype=msgtype))
            first = first or event_id
        assert first is not None
        return first

    async def _send_in_thread(self, thread: ThreadKey, message: content.Content) -> str:
        sender = self._require_sender()
        reply_to = self.threads.latest(thread.room, thread.thread)
        event = content.in_thread(message, thread.thread, reply_to)
        limit = self._event_limit(thread.room)
        event_id = await sender.send(
            thread.room, "m.room.message", content.fit_to_size(event, limit), wait=True
        )
        self.threads.record(thread.room, event_id, thread.thread)
        return event_id

    async def _send_reaction(self, room_id: str, target: str, key: str) -> None:
        await self._require_sender().send(
            room_id, "m.reaction", content.reaction(target, key), wait=True
        )

    async def _offer_choices(self, room_id: str, target: str, keys: Sequence[str]) -> None:
        for key in keys:
            await self._send_reaction(room_id, target, key)

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work, name="matrix-background")
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("a Matrix reaction could not be sent: %s", task.exception())

    # --- inbound ----------------------------------------------------------------

    async def _on_sync(self, response: SyncResponse, first: bool) -> None:
        for room_id, invited in response.rooms.invite.items():
            try:
                await self._on_invite(room_id, invited.invite_state)
            except Exception:
                log.exception("Matrix: handling the invite to %s failed", room_id)
        if first:
            return  # history, and whatever arrived while the bot was down
        client = self._require_client()
        for room_id, joined in response.rooms.join.items():
            room = client.rooms.get(room_id)
            for event in self._after_own_join(joined.timeline.events, client.user_id):
                try:
                    await self._on_timeline_event(room_id, room, event)
                except Exception:
                    # One event must not cost the rest of the batch.
                    log.exception("Matrix: handling %s failed", getattr(event, "event_id", "?"))

    @staticmethod
    def _after_own_join(events: Sequence[Any], user_id: str) -> Sequence[Any]:
        """The events after the bot's own join (earlier ones are the room's history)."""
        for index in range(len(events) - 1, -1, -1):
            source = getattr(events[index], "source", {})
            if (
                source.get("type") == "m.room.member"
                and source.get("state_key") == user_id
                and source.get("content", {}).get("membership") == "join"
                and source.get("unsigned", {}).get("prev_content", {}).get("membership") != "join"
            ):
                return events[index + 1 :]
        return events

    async def _on_timeline_event(self, room_id: str, room: MatrixRoom | None, event: Any) -> None:
        source = getattr(event, "source", None)
        if not isinstance(source, dict):
            return
        if source.get("sender") == self.user_id:
            return
        timestamp = source.get("origin_server_ts")
        if not isinstance(timestamp, int) or timestamp < self.started_at_ms - CLOCK_SKEW_MS:
            return
        if isinstance(event, MegolmEvent) or source.get("type") == "m.room.encrypted":
            self._unreadable(room_id, event)
            return
        assert self._translator is not None and self.sessions is not None
        sender_name = room.user_name(source["sender"]) if room is not None else None
        chat_event = await self._translator.translate(room_id, source, sender_name)
        if chat_event is not None:
            await self.sessions.handle(chat_event)

    def _unreadable(self, room_id: str, event: Any) -> None:
        if self._require_client().olm is None:
            if room_id not in self._warned_unreadable:
                self._warned_unreadable.add(room_id)
                log.warning(
                    "room %s is encrypted but matrix.encryption is off: cannot read it",
                    room_id,
                )
            return
        log.warning(
            "could not decrypt %s in %s (no room key from the sender's device yet)",
            getattr(event, "event_id", "?"),
            room_id,
        )

    async def _on_invite(self, room_id: str, invite_state: Sequence[Any]) -> None:
        client = self._require_client()
        inviter = next(
            (
                event.sender
                for event in invite_state
                if isinstance(event, InviteMemberEvent)
                and event.state_key == client.user_id
                and event.membership == "invite"
            ),
            None,
        )
        if inviter is None or self.sessions is None:
            return
        access = self.sessions.access
        if access.user_allowed(PLATFORM, inviter) and access.room_allowed(PLATFORM, room_id):
            response = await client.join(room_id)
            if isinstance(response, JoinResponse):
                log.info("Matrix: joined %s, invited by %s", room_id, inviter)
            else:
                log.warning("Matrix: could not join %s: %s", room_id, response)
        else:
            await client.room_leave(room_id)
            log.info("Matrix: declined the invite to %s from %s (not allowed)", room_id, inviter)

    def _is_command(self, text: str) -> bool:
        if self.sessions is None:
            return False
        probe = ChatEvent(ChatEventKind.MESSAGE, ThreadKey(PLATFORM, "", ""), user="", text=text)
        return self.sessions.parse_invocation(probe).command is not None

    async def _resolve_thread(self, room_id: str, event_id: str) -> str | None:
        """The thread root of an event the index has forgotten (or never saw)."""
        response = await self._require_client().room_get_event(room_id, event_id)
        if not isinstance(response, RoomGetEventResponse):
            return None
        source = getattr(response.event, "source", {})
        # In encrypted rooms m.relates_to stays in the clear, so no decryption is needed.
        root = thread_root(event_id, source.get("content") or {})
        self.threads.record(room_id, event_id, root)
        return root

    # --- helpers ----------------------------------------------------------------

    async def _display_name(self, client: AsyncClient) -> str | None:
        response = await client.get_displayname(client.user_id)
        if isinstance(response, ProfileGetDisplayNameResponse):
            return response.displayname
        return None

    def _room_encrypted(self, room_id: str) -> bool:
        client = self._client
        room = client.rooms.get(room_id) if client is not None else None
        return bool(room is not None and room.encrypted)

    def _event_limit(self, room_id: str) -> int:
        if self._room_encrypted(room_id):
            return content.MAX_ENCRYPTED_EVENT_BYTES
        return content.MAX_EVENT_BYTES

    def _require_client(self) -> AsyncClient:
        if self._client is None:
            raise RuntimeError("the Matrix adapter is not started")
        return self._client

    def _require_state(self) -> LoginState:
        if self.state is None:
            raise RuntimeError("the Matrix adapter has not logged in")
        return self.state

    def _require_sender(self) -> MatrixSender:
        if self._sender is None:
            raise RuntimeError("the Matrix adapter is not started")
        return self._sender
