"""A scripted "human" Matrix user for tests, driving the homeserver through real matrix-nio.

Tests of the Matrix adapter need someone on the other side of the room: a person who mentions the
bot, replies in its thread, edits, reacts and redacts, and who watches what the bot sends back.
:class:`HumanClient` is that person. It speaks through ``nio.AsyncClient`` with
``max_limit_exceeded=0``, so a 429 from the homeserver surfaces as :class:`MatrixRequestError`
instead of being slept away, and it records every timeline event its background sync loop sees as
the raw event dict (``event_id``, ``sender``, ``origin_server_ts``, ``content`` ..., plus
``room_id``), in arrival order. Assertions are made over those recordings with :meth:`wait_for`,
:meth:`thread_events` and :meth:`latest_text`.

With a ``store_path`` the client keeps Olm/Megolm keys there (needs ``matrix-nio[e2e]``) and can
talk in encrypted rooms; messages it decrypts are recorded in their decrypted form with
``"decrypted": True``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from nio import (
    AsyncClient,
    AsyncClientConfig,
    BadEvent,
    ErrorResponse,
    Event,
    JoinResponse,
    LocalProtocolError,
    MatrixRoom,
    RoomCreateResponse,
    RoomInviteResponse,
    RoomPreset,
    RoomRedactResponse,
    RoomSendResponse,
    RoomTypingResponse,
    SyncError,
    TypingNoticeEvent,
    UnknownBadEvent,
)
from nio.events.ephemeral import EphemeralEvent
from nio.responses import LoginResponse

from tests.matrix_harness.synapse import RegisteredUser

logger = logging.getLogger(__name__)

EventDict = dict[str, Any]
EventPredicate = Callable[[EventDict], bool]
_T = TypeVar("_T")

SYNC_LONG_POLL_MS = 30_000
MEGOLM = "m.megolm.v1.aes-sha2"


class MatrixRequestError(RuntimeError):
    """The homeserver refused a request (including ``M_LIMIT_EXCEEDED``)."""

    def __init__(self, action: str, response: ErrorResponse) -> None:
        self.status_code = response.status_code
        self.retry_after_ms = response.retry_after_ms
        self.response = response
        super().__init__(f"{action} failed: {response}")


def relation(event: EventDict) -> dict[str, Any]:
    """The ``m.relates_to`` of an event's content (empty when it has none)."""
    relates_to = event.get("content", {}).get("m.relates_to")
    return relates_to if isinstance(relates_to, dict) else {}


class HumanClient:
    """One test user logged in through nio, recording what it sees in its rooms."""

    def __init__(self, user: RegisteredUser, *, store_path: Path | None = None) -> None:
        self.user = user
        self.user_id = user.user_id
        self.store_path = store_path
        if store_path is not None:
            store_path.mkdir(parents=True, exist_ok=True)
        config = AsyncClientConfig(
            max_limit_exceeded=0,
            max_timeouts=0,
            request_timeout=20,
            encryption_enabled=store_path is not None,
            store_sync_tokens=False,
        )
        self.client = AsyncClient(
            user.homeserver,
            user.user_id,
            device_id=user.device_id,
            store_path=str(store_path) if store_path is not None else "",
            config=config,
        )
        # Loads (or creates) the Olm account when a store path is set.
        self.client.restore_login(user.user_id, user.device_id, user.access_token)
        self.events: list[EventDict] = []
        self.typing_seen: list[set[str]] = []
        self.typing_by_room: list[tuple[str, set[str]]] = []
        self._event_ids: set[str] = set()
        self._changed = asyncio.Event()
        self._sync_task: asyncio.Task[None] | None = None
        self._closed = False
        # Undecryptable and malformed events are recorded too, so tests can see them fail.
        self.client.add_event_callback(
            self._record_event,
            (Event, BadEvent, UnknownBadEvent),
        )
        self.client.add_ephemeral_callback(self._record_typing, TypingNoticeEvent)
        self.client.add_response_callback(self._fail_on_sync_error, SyncError)

    @classmethod
    async def login(
        cls,
        homeserver: str,
        user_id: str,
        password: str,
        *,
        store_path: Path | None = None,
    ) -> HumanClient:
        """Log in by password, creating a new device, as a person opening a fresh client would."""
        probe = AsyncClient(homeserver, user_id, config=AsyncClientConfig(max_limit_exceeded=0))
        try:
            response = await probe.login(password, device_name="threadwright-test-human")
        finally:
            await probe.close()
        if not isinstance(response, LoginResponse):
            raise MatrixRequestError(f"login as {user_id}", response)
        user = RegisteredUser(
            user_id=response.user_id,
            access_token=response.access_token,
            device_id=response.device_id,
            password=password,
            homeserver=homeserver,
        )
        return cls(user, store_path=store_path)

    # -- sync loop and recordings ----------------------------------------------------------

    async def start_sync(self) -> None:
        """Start the background sync loop and return after its first sync has completed."""
        if self._sync_task is not None:
            return
        first_sync = asyncio.ensure_future(self.client.synced.wait())
        self._sync_task = asyncio.create_task(
            self.client.sync_forever(timeout=SYNC_LONG_POLL_MS), name=f"sync {self.user_id}"
        )
        self._sync_task.add_done_callback(self._sync_ended)
        done, _ = await asyncio.wait(
            {first_sync, self._sync_task}, timeout=20, return_when=asyncio.FIRST_COMPLETED
        )
        if first_sync not in done:
            first_sync.cancel()
            self._raise_if_sync_failed()
            raise TimeoutError(f"first sync of {self.user_id} did not complete")

    async def stop_sync(self) -> None:
        task, self._sync_task = self._sync_task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.stop_sync()
        await self.client.close()
        if self.client.store is not None:
            self.client.store.database.close()

    async def wait_for(self, predicate: EventPredicate, timeout: float = 10.0) -> EventDict:  # noqa: ASYNC109
        """The first recorded event (oldest first) matching ``predicate``, waiting for it."""
        return await self._wait(
            lambda: next((event for event in self.events if predicate(event)), None),
            timeout,
            "matching event",
        )

    async def wait_for_typing(self, user_id: str, timeout: float = 10.0) -> set[str]:  # noqa: ASYNC109
        """Wait until a typing notification listing ``user_id`` has arrived."""
        return await self._wait(
            lambda: next((users for users in self.typing_seen if user_id in users), None),
            timeout,
            f"typing notification from {user_id}",
        )

    async def wait_for_join(self, room_id: str, user_id: str, timeout: float = 10.0) -> EventDict:  # noqa: ASYNC109
        """Wait until this client has seen ``user_id`` join ``room_id``."""
        return await self.wait_for(
            lambda event: (
                event.get("room_id") == room_id
                and event.get("type") == "m.room.member"
                and event.get("state_key") == user_id
                and event.get("content", {}).get("membership") == "join"
            ),
            timeout,
        )

    async def wait_for_latest_text(
        self,
        room_id: str,
        event_id: str,
        expected: str,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> str:
        """Wait until a message, with its edits applied, reads ``expected``."""
        return await self._wait(
            lambda: expected if self._current_text(room_id, event_id) == expected else None,
            timeout,
            f"text {expected!r} in {event_id}",
        )

    async def thread_events(self, room_id: str, root: str) -> list[EventDict]:
        """Replies in the thread under ``root``, oldest first (not the root, edits or reactions)."""
        replies = [
            event
            for event in self.events
            if event.get("room_id") == room_id
            and relation(event).get("rel_type") == "m.thread"
            and relation(event).get("event_id") == root
        ]
        return sorted(replies, key=lambda event: event["origin_server_ts"])

    async def latest_text(self, room_id: str, event_id: str) -> str:
        """A message's current body: the newest ``m.replace`` edit's, else the original's."""
        text = self._current_text(room_id, event_id)
        if text is None:
            raise LookupError(f"{self.user_id} has not seen event {event_id} in {room_id}")
        return text

    def _current_text(self, room_id: str, event_id: str) -> str | None:
        original = next(
            (e for e in self.events if e["event_id"] == event_id and e.get("room_id") == room_id),
            None,
        )
        if original is None:
            return None
        edits = [
            event
            for event in self.events
            if event.get("room_id") == room_id
            and event.get("sender") == original.get("sender")
            and relation(event).get("rel_type") == "m.replace"
            and relation(event).get("event_id") == event_id
            and "m.new_content" in event.get("content", {})
        ]
        if not edits:
            body: str = original.get("content", {}).get("body", "")
            return body
        # Arrival order breaks ties between edits sent within the same millisecond.
        _, newest = max(enumerate(edits), key=lambda item: (item[1]["origin_server_ts"], item[0]))
        new_body: str = newest["content"]["m.new_content"].get("body", "")
        return new_body

    async def _wait(self, check: Callable[[], _T | None], timeout: float, what: str) -> _T:  # noqa: ASYNC109
        try:
            async with asyncio.timeout(timeout):
                while True:
                    found = check()
                    if found is not None:
                        return found
                    self._raise_if_sync_failed()
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            recent = [(e.get("type"), e.get("sender")) for e in self.events[-5:]]
            raise TimeoutError(
                f"{self.user_id}: no {what} within {timeout}s "
                f"({len(self.events)} events recorded; latest {recent})"
            ) from None

    def _record_event(self, room: MatrixRoom, event: Event | BadEvent | UnknownBadEvent) -> None:
        source = event.source
        event_id = source.get("event_id")
        if not isinstance(event_id, str) or event_id in self._event_ids:
            return
        recorded = {**source, "room_id": room.room_id}
        if getattr(event, "decrypted", False):
            recorded["decrypted"] = True
        self._event_ids.add(event_id)
        self.events.append(recorded)
        self._changed.set()

    def _record_typing(self, room: MatrixRoom, event: EphemeralEvent) -> None:
        assert isinstance(event, TypingNoticeEvent)
        users = set(event.users)
        self.typing_seen.append(users)
        self.typing_by_room.append((room.room_id, users))
        self._changed.set()

    def _fail_on_sync_error(self, response: SyncError) -> None:
        # sync_forever would otherwise retry a failing sync at once, forever.
        raise MatrixRequestError(f"sync of {self.user_id}", response)

    def _sync_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error("sync loop of %s failed", self.user_id, exc_info=task.exception())
        self._changed.set()

    def _raise_if_sync_failed(self) -> None:
        task = self._sync_task
        if task is not None and task.done() and not task.cancelled():
            error = task.exception()
            if error is not None:
                raise RuntimeError(f"sync loop of {self.user_id} failed") from error

    # -- actions ---------------------------------------------------------------------------

    async def create_room(
        self,
        name: str | None = None,
        invite: Sequence[str] = (),
        encrypted: bool = False,
    ) -> str:
        initial_state: list[dict[str, Any]] = []
        if encrypted:
            initial_state.append(
                {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": MEGOLM}}
            )
        response = await self.client.room_create(
            name=name,
            invite=list(invite),
            preset=RoomPreset.private_chat,
            initial_state=initial_state,
        )
        if not isinstance(response, RoomCreateResponse):
            raise MatrixRequestError("room creation", response)
        return response.room_id

    async def invite(self, room_id: str, user_id: str) -> None:
        response = await self.client.room_invite(room_id, user_id)
        if not isinstance(response, RoomInviteResponse):
            raise MatrixRequestError(f"inviting {user_id}", response)

    async def join(self, room_id: str) -> None:
        response = await self.client.join(room_id)
        if not isinstance(response, JoinResponse):
            raise MatrixRequestError(f"joining {room_id}", response)

    async def send_text(
        self,
        room_id: str,
        body: str,
        *,
        mentions: Sequence[str] = (),
        intentional_mentions: bool = True,
        thread_root: str | None = None,
        reply_to: str | None = None,
        html: str | None = None,
    ) -> str:
        """Send an ``m.text`` message and return its event id.

        ``mentions`` go into ``m.mentions.user_ids``; with ``intentional_mentions=False`` the
        ``m.mentions`` key is left out entirely, as older clients do. In a thread, ``reply_to``
        defaults to the newest thread event this client has seen (or the root).
        """
        content: dict[str, Any] = {"msgtype": "m.text", "body": body}
        if html is not None:
            content["format"] = "org.matrix.custom.html"
            content["formatted_body"] = html
        if intentional_mentions:
            content["m.mentions"] = {"user_ids": list(mentions)} if mentions else {}
        if thread_root is not None:
            if reply_to is None:
                replies = await self.thread_events(room_id, thread_root)
                reply_to = replies[-1]["event_id"] if replies else thread_root
            content["m.relates_to"] = {
                "rel_type": "m.thread",
                "event_id": thread_root,
                "is_falling_back": True,
                "m.in_reply_to": {"event_id": reply_to},
            }
        return await self.send_event(room_id, "m.room.message", content)

    async def edit(
        self, room_id: str, event_id: str, new_body: str, *, html: str | None = None
    ) -> str:
        """Replace a message's text (``m.replace``) and return the edit's event id."""
        new_content: dict[str, Any] = {"msgtype": "m.text", "body": new_body}
        if html is not None:
            new_content["format"] = "org.matrix.custom.html"
            new_content["formatted_body"] = html
        content = {
            "msgtype": "m.text",
            "body": f"* {new_body}",
            "m.new_content": new_content,
            "m.relates_to": {"rel_type": "m.replace", "event_id": event_id},
        }
        return await self.send_event(room_id, "m.room.message", content)

    async def react(self, room_id: str, event_id: str, key: str) -> str:
        content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}}
        return await self.send_event(room_id, "m.reaction", content)

    async def redact(self, room_id: str, event_id: str, reason: str | None = None) -> str:
        """Redact an event and return the redaction's event id."""
        response = await self.client.room_redact(room_id, event_id, reason=reason)
        if not isinstance(response, RoomRedactResponse):
            raise MatrixRequestError(f"redacting {event_id}", response)
        return response.event_id

    async def set_typing(self, room_id: str, typing: bool = True, timeout_ms: int = 30_000) -> None:
        response = await self.client.room_typing(room_id, typing, timeout_ms)
        if not isinstance(response, RoomTypingResponse):
            raise MatrixRequestError(f"typing notice in {room_id}", response)

    async def send_event(self, room_id: str, event_type: str, content: dict[str, Any]) -> str:
        """Send any room event (encrypting it in encrypted rooms) and return its event id."""
        if self.client.olm is not None:
            await self._prepare_encrypted_send(room_id)
        response = await self.client.room_send(
            room_id, event_type, content, ignore_unverified_devices=True
        )
        if not isinstance(response, RoomSendResponse):
            raise MatrixRequestError(f"sending {event_type} to {room_id}", response)
        return response.event_id

    async def _prepare_encrypted_send(self, room_id: str) -> None:
        # nio encrypts only for rooms its sync has shown it, and shares the room key only with
        # devices whose keys it has queried: settle both before sending.
        await self._wait(
            lambda: True if room_id in self.client.rooms else None, 10.0, f"room {room_id}"
        )
        if self.client.should_query_keys:
            # LocalProtocolError: the sync loop's own key query got there first.
            with contextlib.suppress(LocalProtocolError):
                await self.client.keys_query()
