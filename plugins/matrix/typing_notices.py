"""Typing notifications while the agent works ("threadwright is typing…").

Matrix typing notices expire after the timeout they were sent with, so a
holder refreshes them while the agent works and switches them off when the
last turn in the room ends. Several turns in one room share one notice
(counted holds). Failures are logged and never disturb a turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from plugins.matrix.sender import MatrixSender

log = logging.getLogger(__name__)

TYPING_TIMEOUT_MS = 30_000
REFRESH_S = 20.0


class TypingNotifier:
    def __init__(self, sender: MatrixSender, *, refresh_s: float = REFRESH_S) -> None:
        self.sender = sender
        self.refresh_s = refresh_s
        self._holds: dict[str, int] = {}
        self._refreshers: dict[str, asyncio.Task[None]] = {}
        self._offs: set[asyncio.Task[None]] = set()

    def hold(self, room_id: str) -> None:
        self._holds[room_id] = self._holds.get(room_id, 0) + 1
        if room_id not in self._refreshers:
            self._refreshers[room_id] = asyncio.create_task(
                self._refresh(room_id), name=f"matrix-typing {room_id}"
            )

    def release(self, room_id: str) -> None:
        count = self._holds.get(room_id, 0) - 1
        if count > 0:
            self._holds[room_id] = count
            return
        self._holds.pop(room_id, None)
        refresher = self._refreshers.pop(room_id, None)
        if refresher is None:
            return
        refresher.cancel()
        off = asyncio.create_task(self._switch_off(room_id, refresher), name="matrix-typing-off")
        self._offs.add(off)
        off.add_done_callback(self._offs.discard)

    async def aclose(self) -> None:
        """Stop every notice (best effort) and wait for the requests in flight."""
        for room_id in list(self._refreshers):
            self._holds[room_id] = 1
            self.release(room_id)
        if self._offs:
            await asyncio.wait(list(self._offs), timeout=5)
        for task in list(self._offs):
            task.cancel()
        await asyncio.gather(*self._offs, return_exceptions=True)

    async def _refresh(self, room_id: str) -> None:
        while True:
            try:
                await self.sender.typing(room_id, True, TYPING_TIMEOUT_MS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("typing notice in %s failed: %s", room_id, exc)
            await asyncio.sleep(self.refresh_s)

    async def _switch_off(self, room_id: str, refresher: asyncio.Task[None]) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await refresher
        if room_id in self._refreshers:
            return  # a new turn started in the meantime
        try:
            await self.sender.typing(room_id, False, 0)
        except Exception as exc:
            log.warning("clearing the typing notice in %s failed: %s", room_id, exc)
