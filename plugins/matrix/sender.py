"""Sending to the homeserver: the one place where nio's error responses become exceptions.

nio is configured never to sleep on a 429 by itself (``max_limit_exceeded=0``;
its default retries forever in silence). The bot owns its pacing instead, and
callers need two different answers to a rate limit:

- the streaming transport hears about it at once (:class:`RateLimited`), so
  :class:`bot.streaming.StreamingMessage` coalesces more text into fewer,
  slower edits and always finishes with the full answer;
- one-shot events (reactions, notices, approval questions) must arrive: they
  wait out the limit and try again, a bounded number of times.

After any 429 the sender remembers until when the homeserver refuses (its
``retry_after_ms``); meanwhile streaming sends fail fast without a request, so
a throttled bot does not collect more 429s, and one-shot sends wait.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nio import AsyncClient, ErrorResponse, RoomSendResponse, RoomTypingResponse

from bot.streaming import RateLimited
from plugins.matrix.encryption import KeyMaintenance

log = logging.getLogger(__name__)

DEFAULT_RETRY_AFTER_S = 2.0
ONE_SHOT_ATTEMPTS = 4


class MatrixRequestFailed(Exception):
    """The homeserver refused a request for a reason other than a rate limit."""

    def __init__(self, action: str, response: ErrorResponse) -> None:
        super().__init__(f"{action} failed: {response}")
        self.errcode = response.status_code
        self.response = response


@dataclass(slots=True)
class SenderStats:
    events_sent: int = 0
    limit_exceeded: int = 0  # 429 / M_LIMIT_EXCEEDED answers received
    failures: int = 0


def is_rate_limit(response: ErrorResponse) -> bool:
    status = getattr(getattr(response, "transport_response", None), "status", None)
    return response.status_code in ("M_LIMIT_EXCEEDED", 429) or status == 429


def retry_after_s(response: ErrorResponse) -> float:
    if response.retry_after_ms is not None and response.retry_after_ms >= 0:
        return response.retry_after_ms / 1000
    return DEFAULT_RETRY_AFTER_S


class MatrixSender:
    def __init__(
        self,
        client: AsyncClient,
        keys: KeyMaintenance,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.keys = keys
        self.clock = clock
        self.stats = SenderStats()
        self._refused_until = 0.0
        self._closed = False

    def close(self) -> None:
        """Refuse further requests: a late one would make nio open a new HTTP session."""
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the Matrix adapter has stopped")

    def refused_for(self) -> float:
        """Seconds until the homeserver accepts messages again (0 when it does now)."""
        return max(0.0, self._refused_until - self.clock())

    async def send(
        self, room_id: str, event_type: str, content: dict[str, Any], *, wait: bool
    ) -> str:
        """Send one room event and return its id.

        ``wait=False`` raises :class:`RateLimited` on a limit; ``wait=True`` waits
        it out (up to :data:`ONE_SHOT_ATTEMPTS` tries). Other refusals raise
        :class:`MatrixRequestFailed`.
        """
        attempt = 0
        while True:
            self._check_open()
            attempt += 1
            pause = self.refused_for()
            if pause > 0:
                if not wait:
                    raise RateLimited(pause)
                await asyncio.sleep(pause)
            await self.keys.before_send(room_id)
            self._check_open()
            response = await self.client.room_send(
                room_id, event_type, content, ignore_unverified_devices=True
            )
            if isinstance(response, RoomSendResponse):
                self.stats.events_sent += 1
                return str(response.event_id)
            if is_rate_limit(response):
                delay = retry_after_s(response)
                self.stats.limit_exceeded += 1
                self._refused_until = max(self._refused_until, self.clock() + delay)
                log.info("homeserver rate limit on %s; retry after %.1fs", event_type, delay)
                if not wait or attempt >= ONE_SHOT_ATTEMPTS:
                    raise RateLimited(delay)
                continue
            self.stats.failures += 1
            raise MatrixRequestFailed(f"sending {event_type} to {room_id}", response)

    async def typing(self, room_id: str, typing: bool, timeout_ms: int) -> None:
        self._check_open()
        response = await self.client.room_typing(room_id, typing, timeout_ms)
        if not isinstance(response, RoomTypingResponse):
            raise MatrixRequestFailed(f"typing notice in {room_id}", response)
