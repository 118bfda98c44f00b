"""A Slack workspace on loopback that the real slack_sdk and slack_bolt cannot tell from Slack.

`SlackEmulator` serves the Web API at `/api/{method}`, Socket Mode websockets at
the URL `apps.connections.open` hands out, the `files_upload_v2` upload URL and
slash-command `response_url`s, all from one aiohttp server on 127.0.0.1.  Test
code plays the humans (`user_posts`, `user_reacts`, `slash_command`,
`click_button`), injects faults (`rate_limit`, `disconnect_all`, a short
`ack_timeout`) and inspects what the bot did (`calls`, `thread`, `acks`).

Typical use::

    async with SlackEmulator(ack_timeout=0.3) as emu:
        emu.add_user("U1", "alice")
        emu.add_channel("C1", "general", members=["U1"])
        client = AsyncWebClient(token=emu.bot_token, base_url=emu.api_url)
        ...
        ts = await emu.user_posts("C1", "U1", f"<@{emu.bot_user_id}> hi")
        await emu.wait_for(lambda: emu.bot_replies("C1", ts))
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web

from tests.emulators.slack_chat import ChatMethods, Ephemeral, ThreadStatus
from tests.emulators.slack_delivery import Ack, Delivery, DeliveryHub, HttpAttempt, SentEnvelope
from tests.emulators.slack_hooks import ResponseUrlPost, ResponseUrls
from tests.emulators.slack_methods import WorkspaceMethods
from tests.emulators.slack_payloads import (
    app_mention_event,
    block_actions_payload,
    event_callback,
    message_changed_event,
    message_event,
    reaction_event,
    slash_command_payload,
)
from tests.emulators.slack_store import (
    MessageStore,
    SlackMessage,
    UploadedFile,
    Workspace,
    rich_text_blocks,
)
from tests.emulators.slack_webapi import ApiCall, TokenBucket, WebApi

T = TypeVar("T")


class SlackEmulator:
    """One emulated workspace with one app installed, served on 127.0.0.1.

    `ack_timeout` is how long an envelope may go unacked before Events API
    deliveries are retried (Slack: 3 s); `stream_ttl` is how long a
    `chat.startStream` message accepts appends (Slack: about 5 minutes).
    """

    def __init__(
        self,
        team_id: str = "T0001",
        bot_user_id: str = "UBOT",
        bot_id: str = "BBOT",
        bot_token: str = "xoxb-test",
        app_token: str = "xapp-test",
        ack_timeout: float = 3.0,
        *,
        app_id: str = "A0001",
        team_name: str = "Threadwright Test",
        team_domain: str = "threadwright-test",
        bot_name: str = "threadwright",
        stream_ttl: float = 300.0,
        max_retries: int = 3,
    ) -> None:
        self.workspace = Workspace(
            team_id=team_id,
            team_name=team_name,
            team_domain=team_domain,
            bot_user_id=bot_user_id,
            bot_id=bot_id,
            bot_name=bot_name,
            app_id=app_id,
            bot_token=bot_token,
            app_token=app_token,
            verification_token="emulator-verification-token",
        )
        self.store = MessageStore(self.workspace)
        self._changed = asyncio.Event()
        self.hub = DeliveryHub(app_id=app_id, ack_timeout=ack_timeout, max_retries=max_retries)
        self.hub.on_change.append(self._notify)
        self.web_api = WebApi(bot_token=bot_token, app_token=app_token, on_call=self._notify)
        self.chat = ChatMethods(self.store, self._emit, stream_ttl)
        self.chat.register(self.web_api)
        self.workspace_methods = WorkspaceMethods(
            self.store, self.chat, socket_url=self._issue_socket_url, upload_url=self._upload_url
        )
        self.workspace_methods.register(self.web_api)
        self.response_urls = ResponseUrls(self._post_response_in_channel)
        self.response_urls.on_post.append(self._notify)
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ------------------------------------------------------------- lifecycle

    async def start(self) -> SlackEmulator:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self.web_api.handle)
        app.router.add_get("/socket/{ticket}", self.hub.handle_socket)
        app.router.add_post("/upload/v1/{file_id}", self.workspace_methods.receive_upload)
        app.router.add_post("/commands/{team}/{hook_id}/{secret}", self.response_urls.handle)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self.hub.start()
        return self

    async def stop(self) -> None:
        await self.hub.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SlackEmulator:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ---------------------------------------------------------------- config

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/"

    @property
    def bot_token(self) -> str:
        return self.workspace.bot_token

    @property
    def app_token(self) -> str:
        return self.workspace.app_token

    @property
    def team_id(self) -> str:
        return self.workspace.team_id

    @property
    def bot_user_id(self) -> str:
        return self.workspace.bot_user_id

    @property
    def bot_id(self) -> str:
        return self.workspace.bot_id

    @property
    def ack_timeout(self) -> float:
        return self.hub.ack_timeout

    @ack_timeout.setter
    def ack_timeout(self, seconds: float) -> None:
        self.hub.ack_timeout = seconds

    @property
    def stream_ttl(self) -> float:
        return self.chat.stream_ttl

    @stream_ttl.setter
    def stream_ttl(self, seconds: float) -> None:
        self.chat.stream_ttl = seconds

    def add_user(self, user_id: str, name: str) -> None:
        self.store.add_user(user_id, name)

    def add_channel(
        self,
        channel_id: str,
        name: str,
        members: Iterable[str] = (),
        *,
        bot_member: bool = True,
        is_private: bool = False,
    ) -> None:
        """A channel (a `D…` id makes it a DM); the bot is in it unless `bot_member=False`."""
        people = set(members) | ({self.bot_user_id} if bot_member else set())
        self.store.add_channel(channel_id, name, people, is_private=is_private)

    def set_bot_member(self, channel_id: str, member: bool) -> None:
        members = self.store.channels[channel_id].members
        if member:
            members.add(self.bot_user_id)
        else:
            members.discard(self.bot_user_id)

    def rate_limit(self, method: str, times: int = 1, retry_after: int = 1) -> None:
        """Answer the next `times` calls to `method` with HTTP 429 and `Retry-After`."""
        self.web_api.limiter.forced[method] = (times, retry_after)

    def set_rate(self, method: str, per_second: float, burst: int = 1) -> None:
        """Limit `method` to a steady rate (token bucket); excess calls get HTTP 429."""
        self.web_api.limiter.buckets[method] = TokenBucket(per_second, burst)

    def deliver_http(self, url: str, signing_secret: str) -> None:
        """From now on POST payloads to the app at `url`, signed, instead of Socket Mode."""
        self.hub.use_http(url, signing_secret)

    async def url_verification(self) -> bool:
        """Slack's check of a new Request URL: does the app echo the challenge?"""
        return await self.hub.url_verification(self.workspace.verification_token)

    # ------------------------------------------------------------ inspection

    @property
    def calls(self) -> list[ApiCall]:
        return self.web_api.calls

    def calls_to(self, method: str) -> list[ApiCall]:
        return [call for call in self.web_api.calls if call.method == method]

    @property
    def rate_limited_count(self) -> Counter[str]:
        return self.web_api.limiter.limited_count

    @property
    def acks(self) -> list[Ack]:
        return self.hub.acks

    @property
    def envelopes(self) -> list[SentEnvelope]:
        """Every Socket Mode envelope sent, in order, retries included."""
        return self.hub.sent

    @property
    def http_attempts(self) -> list[HttpAttempt]:
        return self.hub.http_attempts

    @property
    def connection_count(self) -> int:
        """How many Socket Mode connections were ever opened."""
        return self.hub.connection_count

    @property
    def open_connections(self) -> int:
        return sum(1 for conn in self.hub.connections if conn.usable)

    @property
    def ephemerals(self) -> list[Ephemeral]:
        return self.chat.ephemerals

    @property
    def thread_statuses(self) -> dict[tuple[str, str], ThreadStatus]:
        return self.chat.thread_statuses

    @property
    def responses(self) -> list[ResponseUrlPost]:
        """POSTs the app made to `response_url`s, in order."""
        return self.response_urls.posts

    @property
    def files(self) -> dict[str, UploadedFile]:
        return self.store.files

    def message(self, channel: str, ts: str) -> SlackMessage | None:
        return self.store.get(channel, ts)

    def thread(self, channel: str, thread_ts: str) -> list[SlackMessage]:
        """The root and its replies in order, each with its current text and blocks."""
        return self.store.thread(channel, thread_ts)

    def bot_replies(self, channel: str, thread_ts: str) -> list[SlackMessage]:
        return [m for m in self.thread(channel, thread_ts)[1:] if m.bot_id == self.bot_id]

    def reactions(self, channel: str, ts: str) -> dict[str, list[str]]:
        message = self.store.get(channel, ts)
        return {} if message is None else {k: list(v) for k, v in message.reactions.items()}

    async def wait_for(self, predicate: Callable[[], T], timeout: float = 5.0) -> T:  # noqa: ASYNC109
        """Wait until `predicate()` is truthy and return its value; wakes on every change."""
        deadline = time.monotonic() + timeout
        while True:
            self._changed.clear()
            result = predicate()
            if result:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"condition not met within {timeout}s: {predicate!r}")
            # Short polls as well, for predicates over state outside the emulator.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.05))

    # ----------------------------------------------------------- human users

    async def user_posts(
        self, channel: str, user: str, text: str, thread_ts: str | None = None
    ) -> str:
        """A person posts; the app gets `message` and, when it is mentioned, `app_mention`."""
        conversation = self.store.channels[channel]
        self.store.ensure_user(user)
        conversation.members.add(user)
        root = None
        if thread_ts is not None:
            root = self.store.thread_root_ts(channel, thread_ts)
            if root is None:
                raise ValueError(f"no message {thread_ts} in {channel} to reply to")
        message = SlackMessage(
            channel=channel,
            ts=self.store.next_ts(),
            text=text,
            user=user,
            thread_ts=root,
            client_msg_id=str(uuid.uuid4()),
        )
        # A Slack client sends the rich_text form of what was typed along with the text.
        message.blocks = rich_text_blocks(text, seed=message.ts)
        self.store.add_message(message)
        self._emit(message_event(self.store, message))
        if f"<@{self.bot_user_id}" in text and not conversation.is_im:
            self._emit(app_mention_event(self.store, message))
        return message.ts

    async def user_edits(self, channel: str, user: str, ts: str, text: str) -> None:
        message = self._existing(channel, ts)
        if message.user != user:
            raise ValueError(f"{user} did not write {ts}")
        previous = self.store.render_message(message)
        self.store.edit(message, text, rich_text_blocks(text, seed=self.store.next_ts()))
        self._emit(message_changed_event(self.store, message, previous))

    async def user_reacts(self, channel: str, user: str, ts: str, reaction: str) -> None:
        message = self._existing(channel, ts)
        name = reaction.strip(":")
        users = message.reactions.setdefault(name, [])
        if user not in users:
            users.append(user)
            self._emit(reaction_event(self.store, "reaction_added", user, name, message))

    async def user_unreacts(self, channel: str, user: str, ts: str, reaction: str) -> None:
        message = self._existing(channel, ts)
        name = reaction.strip(":")
        if user in message.reactions.get(name, []):
            message.reactions[name].remove(user)
            if not message.reactions[name]:
                del message.reactions[name]
            self._emit(reaction_event(self.store, "reaction_removed", user, name, message))

    async def slash_command(
        self,
        command: str,
        text: str,
        user: str,
        channel: str,
        timeout: float = 3.0,  # noqa: ASYNC109 - Slack's ack deadline, part of the API
    ) -> dict[str, Any]:
        """Run a slash command; returns the ack's response payload ({} for a bare ack).

        Raises TimeoutError if the app does not ack within `timeout` (Slack: 3 s).
        """
        conversation = self.store.channels[channel]
        person = self.store.ensure_user(user)
        payload = slash_command_payload(
            self.workspace,
            command=command,
            text=text,
            user=user,
            user_name=person.name,
            channel=conversation,
            response_url=self._hook(channel),
        )
        delivery = self.hub.deliver("slash_commands", payload, accepts_response_payload=True)
        return await self._ack_payload(delivery, timeout)

    async def click_button(
        self,
        user: str,
        channel: str,
        message_ts: str,
        action_id: str,
        value: str,
        timeout: float = 3.0,  # noqa: ASYNC109 - Slack's ack deadline, part of the API
    ) -> dict[str, Any]:
        """Click a button on a message; returns the ack's payload ({} for a bare ack)."""
        message = self._existing(channel, message_ts)
        payload = block_actions_payload(
            self.store,
            user=user,
            channel=self.store.channels[channel],
            message=message,
            action_id=action_id,
            value=value,
            response_url=self._hook(channel),
        )
        delivery = self.hub.deliver("interactive", payload, accepts_response_payload=False)
        return await self._ack_payload(delivery, timeout)

    async def disconnect_all(self, reason: str = "refresh_requested") -> None:
        """Tell every Socket Mode client to go away, as Slack does before a refresh."""
        await self.hub.disconnect_all(reason)

    def deliver_event(self, event: dict[str, Any]) -> Delivery | None:
        """Push an arbitrary Events API event (already shaped); None if the bot cannot see it."""
        return self._emit(event)

    # ------------------------------------------------------------- internals

    def _notify(self) -> None:
        self._changed.set()

    def _existing(self, channel: str, ts: str) -> SlackMessage:
        message = self.store.get(channel, ts)
        if message is None:
            raise ValueError(f"no message {ts} in {channel}")
        return message

    def _emit(self, event: dict[str, Any]) -> Delivery | None:
        channel = event.get("channel") or event.get("item", {}).get("channel")
        if channel is not None and not self.store.bot_is_member(channel):
            return None
        payload = event_callback(self.workspace, event)
        return self.hub.deliver("events_api", payload, accepts_response_payload=False)

    async def _ack_payload(self, delivery: Delivery, deadline: float) -> dict[str, Any]:
        try:
            await asyncio.wait_for(delivery.acked.wait(), deadline)
        except TimeoutError as error:
            raise TimeoutError(f"{delivery.kind} not acked within {deadline}s") from error
        assert delivery.ack is not None
        return dict(delivery.ack.payload or {})

    def _issue_socket_url(self) -> str:
        return self.hub.issue_socket_url(f"ws://127.0.0.1:{self.port}/socket/")

    def _upload_url(self, file_id: str) -> str:
        return f"{self.base_url}/upload/v1/{file_id}"

    def _hook(self, channel: str) -> str:
        return self.response_urls.issue(self.base_url, self.team_id, channel)

    def _post_response_in_channel(self, channel: str, body: dict[str, Any]) -> SlackMessage:
        text, blocks = str(body.get("text", "")), body.get("blocks")
        return self.chat.post_bot_message(self.store.channels[channel], text, blocks=blocks)
