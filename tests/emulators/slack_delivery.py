"""How Slack pushes payloads to an app: Socket Mode envelopes or signed HTTP POSTs.

Every push is a `Delivery`.  In Socket Mode it goes out as an envelope on the
newest open websocket (queued while none is open) and must be acked by echoing
its `envelope_id`; in HTTP mode it is POSTed to the app with Slack's signature
headers and the HTTP response is the ack.  Events API deliveries that are not
acked in time are sent again, up to three more times, with `retry_attempt`
(Socket Mode) or `X-Slack-Retry-Num` (HTTP) raised and the same `event_id`, as
Slack does; slash commands and clicks are never retried.  Each attempt in
Socket Mode gets a fresh `envelope_id`, so an app must deduplicate on
`event_id`, which is what Slack tells apps to do.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

logger = logging.getLogger(__name__)


@dataclass
class Delivery:
    """One payload Slack must get acknowledged; attempts count from 0."""

    kind: str  # "events_api" | "slash_commands" | "interactive"
    payload: dict[str, Any]
    accepts_response_payload: bool
    attempt: int = 0
    retry_reason: str = ""
    envelope_ids: list[str] = field(default_factory=list)
    ack: Ack | None = None
    acked: asyncio.Event = field(default_factory=asyncio.Event)
    timer: asyncio.TimerHandle | None = None

    @property
    def event_id(self) -> str | None:
        return self.payload.get("event_id")


@dataclass(frozen=True)
class Ack:
    """An acknowledgement as the emulator received it."""

    envelope_id: str | None
    kind: str
    payload: dict[str, Any] | None
    latency: float
    retry_attempt: int
    event_id: str | None


@dataclass(frozen=True)
class SentEnvelope:
    connection_id: int
    envelope: dict[str, Any]
    time: float


@dataclass(frozen=True)
class HttpAttempt:
    """One POST to the app in HTTP mode and what the app answered (status 0: timed out)."""

    kind: str
    status: int
    body: str
    retry_num: int
    event_id: str | None


@dataclass
class SocketConnection:
    id: int
    ws: web.WebSocketResponse
    disconnecting: bool = False
    gone: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def usable(self) -> bool:
        return not self.disconnecting and not self.ws.closed


def slack_signature(signing_secret: str, timestamp: str, body: str) -> str:
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()


class DeliveryHub:
    """Sends deliveries over Socket Mode or HTTP, tracks acks and redelivers."""

    def __init__(self, *, app_id: str, ack_timeout: float, max_retries: int = 3) -> None:
        self.app_id = app_id
        self.ack_timeout = ack_timeout
        self.max_retries = max_retries
        self.acks: list[Ack] = []
        self.sent: list[SentEnvelope] = []
        self.http_attempts: list[HttpAttempt] = []
        self.connections: list[SocketConnection] = []
        self.connection_count = 0
        self.http_url: str | None = None
        self.signing_secret: str | None = None
        self._outbox: collections.deque[Delivery] = collections.deque()
        # envelope_id -> (delivery, the attempt it carried, when it was sent)
        self._by_envelope: dict[str, tuple[Delivery, int, float]] = {}
        self._wake = asyncio.Event()
        self._pump_task: asyncio.Task[None] | None = None
        self._http_tasks: set[asyncio.Task[None]] = set()
        self._http_session: aiohttp.ClientSession | None = None
        self._deliveries: list[Delivery] = []
        self._socket_tickets: set[str] = set()
        self.on_change: list[Callable[[], None]] = []

    def start(self) -> None:
        self._pump_task = asyncio.create_task(self._pump(), name="slack-emulator-delivery")

    async def stop(self) -> None:
        tasks = [t for t in [self._pump_task, *self._http_tasks] if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for delivery in self._deliveries:
            if delivery.timer is not None:
                delivery.timer.cancel()
        for conn in list(self.connections):
            await conn.ws.close()
        if self._http_session is not None:
            await self._http_session.close()

    def _changed(self) -> None:
        self._wake.set()
        for callback in self.on_change:
            callback()

    # ---------------------------------------------------------------- queueing

    def deliver(
        self, kind: str, payload: dict[str, Any], *, accepts_response_payload: bool
    ) -> Delivery:
        delivery = Delivery(
            kind=kind, payload=payload, accepts_response_payload=accepts_response_payload
        )
        self._deliveries.append(delivery)
        self._outbox.append(delivery)
        self._changed()
        return delivery

    def use_http(self, url: str, signing_secret: str) -> None:
        self.http_url = url
        self.signing_secret = signing_secret
        self._changed()

    def _open_connection(self) -> SocketConnection | None:
        usable = [c for c in self.connections if c.usable]
        return usable[-1] if usable else None

    async def _pump(self) -> None:
        while True:
            if not self._outbox or (self.http_url is None and self._open_connection() is None):
                self._wake.clear()
                await self._wake.wait()
                continue
            delivery = self._outbox.popleft()
            if self.http_url is not None:
                task = asyncio.create_task(self._post(delivery), name="slack-emulator-http-post")
                self._http_tasks.add(task)
                task.add_done_callback(self._http_task_done)
                continue
            conn = self._open_connection()
            assert conn is not None
            if not await self._send_envelope(conn, delivery):
                self._outbox.appendleft(delivery)

    async def _send_envelope(self, conn: SocketConnection, delivery: Delivery) -> bool:
        envelope_id = str(uuid.uuid4())
        envelope = {
            "envelope_id": envelope_id,
            "type": delivery.kind,
            "payload": delivery.payload,
            "accepts_response_payload": delivery.accepts_response_payload,
            "retry_attempt": delivery.attempt,
            "retry_reason": delivery.retry_reason,
        }
        try:
            await conn.ws.send_str(json.dumps(envelope))
        except (ConnectionError, RuntimeError):
            # The socket closed under us; this connection is gone, try the next one.
            conn.disconnecting = True
            return False
        delivery.envelope_ids.append(envelope_id)
        sent_at = time.monotonic()
        self._by_envelope[envelope_id] = (delivery, delivery.attempt, sent_at)
        self.sent.append(SentEnvelope(conn.id, envelope, sent_at))
        attempt = delivery.attempt
        delivery.timer = asyncio.get_running_loop().call_later(
            self.ack_timeout, self._ack_timed_out, delivery, attempt
        )
        self._changed()
        return True

    def _ack_timed_out(self, delivery: Delivery, attempt: int) -> None:
        if delivery.ack is not None or delivery.attempt != attempt:
            return
        if delivery.kind == "events_api" and delivery.attempt < self.max_retries:
            delivery.attempt += 1
            delivery.retry_reason = "timeout"
            self._outbox.append(delivery)
            self._changed()

    def _record_ack(
        self,
        delivery: Delivery,
        envelope_id: str | None,
        payload: dict[str, Any] | None,
        attempt: int,
        sent_at: float,
    ) -> None:
        """Record every ack received; the first one settles the delivery."""
        ack = Ack(
            envelope_id=envelope_id,
            kind=delivery.kind,
            payload=payload,
            latency=time.monotonic() - sent_at,
            retry_attempt=attempt,
            event_id=delivery.event_id,
        )
        self.acks.append(ack)
        if delivery.ack is None:
            if delivery.timer is not None:
                delivery.timer.cancel()
            delivery.ack = ack
            delivery.acked.set()
        self._changed()

    # ------------------------------------------------------------ Socket Mode

    def issue_socket_url(self, prefix: str) -> str:
        """A one-time websocket URL, as apps.connections.open returns."""
        ticket = secrets.token_urlsafe(12)
        self._socket_tickets.add(ticket)
        return prefix + ticket

    async def handle_socket(self, request: web.Request) -> web.StreamResponse:
        ticket = request.match_info["ticket"]
        if ticket not in self._socket_tickets:
            return web.Response(status=401, text="invalid or used Socket Mode URL")
        self._socket_tickets.discard(ticket)
        # autoping answers the client's pings with pongs carrying the same data.
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.connection_count += 1
        conn = SocketConnection(id=self.connection_count, ws=ws)
        self.connections.append(conn)
        hello = {
            "type": "hello",
            "num_connections": sum(1 for c in self.connections if c.usable),
            "debug_info": {"host": "applink-emulator", "approximate_connection_time": 18060},
            "connection_info": {"app_id": self.app_id},
        }
        await ws.send_json(hello)
        self._changed()
        try:
            async for frame in ws:
                if frame.type == aiohttp.WSMsgType.TEXT:
                    self._on_client_frame(frame.data)
        finally:
            self.connections.remove(conn)
            conn.gone.set()
            self._changed()
        return ws

    def _on_client_frame(self, data: str) -> None:
        try:
            frame = json.loads(data)
        except json.JSONDecodeError:
            logger.warning("Socket Mode client sent a non-JSON frame: %r", data)
            return
        sent = self._by_envelope.get(frame.get("envelope_id", ""))
        if sent is None:
            logger.warning("Socket Mode client acked an unknown envelope: %r", data)
            return
        delivery, attempt, sent_at = sent
        self._record_ack(delivery, frame["envelope_id"], frame.get("payload"), attempt, sent_at)

    async def disconnect_all(self, reason: str, grace: float = 1.0) -> None:
        """Send Slack's `disconnect` frame, give clients `grace` seconds to leave, then close."""
        conns = [c for c in self.connections if c.usable]
        for conn in conns:
            conn.disconnecting = True
            frame = {"type": "disconnect", "reason": reason, "debug_info": {"host": "emulator"}}
            try:
                await conn.ws.send_json(frame)
            except (ConnectionError, RuntimeError):
                continue
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                for conn in conns:
                    await conn.gone.wait()
        for conn in conns:
            await conn.ws.close()
        self._changed()

    # -------------------------------------------------------------- HTTP mode

    def _signed_headers(self, body: str, content_type: str) -> dict[str, str]:
        assert self.signing_secret is not None
        timestamp = str(int(time.time()))
        return {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": slack_signature(self.signing_secret, timestamp, body),
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        }

    async def url_verification(self, token: str) -> bool:
        if self.http_url is None:
            raise RuntimeError("url_verification needs deliver_http() first")
        challenge = secrets.token_urlsafe(24)
        body = json.dumps({"token": token, "challenge": challenge, "type": "url_verification"})
        headers = self._signed_headers(body, "application/json")
        async with self._session().post(self.http_url, data=body, headers=headers) as response:
            if response.status != 200:
                return False
            answer = _json_or_none(await response.text()) or {}
        return answer.get("challenge") == challenge

    def _session(self) -> aiohttp.ClientSession:
        if self._http_session is None:
            self._http_session = aiohttp.ClientSession()
        return self._http_session

    def _http_task_done(self, task: asyncio.Task[None]) -> None:
        self._http_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("HTTP delivery failed", exc_info=task.exception())

    def _encode_http_body(self, delivery: Delivery) -> tuple[str, str]:
        if delivery.kind == "events_api":
            return json.dumps(delivery.payload), "application/json"
        if delivery.kind == "slash_commands":
            return urllib.parse.urlencode(delivery.payload), "application/x-www-form-urlencoded"
        form = {"payload": json.dumps(delivery.payload)}
        return urllib.parse.urlencode(form), "application/x-www-form-urlencoded"

    async def _post(self, delivery: Delivery) -> None:
        assert self.http_url is not None and self.signing_secret is not None
        body, content_type = self._encode_http_body(delivery)
        while True:
            headers = self._signed_headers(body, content_type)
            if delivery.attempt > 0:
                headers["X-Slack-Retry-Num"] = str(delivery.attempt)
                headers["X-Slack-Retry-Reason"] = delivery.retry_reason
            sent_at = time.monotonic()
            status, text = 0, ""
            try:
                async with self._session().post(
                    self.http_url,
                    data=body.encode(),
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=self.ack_timeout),
                ) as response:
                    status, text = response.status, await response.text()
            except TimeoutError:
                delivery.retry_reason = "http_timeout"
            except aiohttp.ClientError:
                delivery.retry_reason = "http_error"
            self.http_attempts.append(
                HttpAttempt(delivery.kind, status, text, delivery.attempt, delivery.event_id)
            )
            if 200 <= status < 300:
                self._record_ack(delivery, None, _json_or_none(text), delivery.attempt, sent_at)
                return
            if status:
                delivery.retry_reason = "http_error"
            self._changed()
            if delivery.kind != "events_api" or delivery.attempt >= self.max_retries:
                return
            delivery.attempt += 1


def _json_or_none(text: str) -> dict[str, Any] | None:
    if not text.strip():
        return None
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        return {"text": text}
    return parsed if isinstance(parsed, dict) else None
