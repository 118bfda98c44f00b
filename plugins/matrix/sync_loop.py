"""The bot's sync loop: long-poll the homeserver, hand each batch over, remember the position.

The first sync after a start asks for the full room state (nio needs member
lists and encryption settings to send) but only a short timeline, and its
timeline is history: it is never treated as new input. With a saved sync
token it continues from there, so to-device messages (room keys) sent while
the bot was down still arrive. Each later batch goes to the handler in order;
the new ``next_batch`` is saved after the handler returns, so a crash replays
at most one batch (and the session manager's store drops what it had seen).

Errors back off exponentially (up to a minute) instead of spinning; an access
token the homeserver no longer accepts ends the loop, loudly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from nio import AsyncClient, ErrorResponse, SyncResponse

from plugins.matrix.encryption import KeyMaintenance
from plugins.matrix.login_state import LoginState, LoginStateFile

log = logging.getLogger(__name__)

LONG_POLL_MS = 30_000
MAX_BACKOFF_S = 60.0
# The first sync only needs state; its timeline is history the bot ignores.
FIRST_SYNC_FILTER = {"room": {"timeline": {"limit": 1}}}
FATAL_ERRCODES = frozenset({"M_UNKNOWN_TOKEN", "M_MISSING_TOKEN", "M_USER_DEACTIVATED"})

SyncHandler = Callable[[SyncResponse, bool], Awaitable[None]]


class SyncFailed(Exception):
    def __init__(self, response: ErrorResponse) -> None:
        super().__init__(str(response))
        self.errcode = response.status_code


class SyncLoop:
    def __init__(
        self,
        client: AsyncClient,
        keys: KeyMaintenance,
        state: LoginState,
        state_file: LoginStateFile,
        handler: SyncHandler,
        *,
        long_poll_ms: int = LONG_POLL_MS,
    ) -> None:
        self.client = client
        self.keys = keys
        self.state = state
        self.state_file = state_file
        self.handler = handler
        self.long_poll_ms = long_poll_ms
        self.healthy = False
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def first_sync(self) -> None:
        """Catch up with the room state; raises when the homeserver refuses."""
        await self.keys.settle()
        since = self.state.next_batch
        response = await self.client.sync(
            timeout=0, since=since, sync_filter=FIRST_SYNC_FILTER, full_state=True
        )
        if isinstance(response, ErrorResponse) and since is not None:
            # The saved position may belong to a homeserver that was reset.
            log.warning("sync from the saved position failed (%s); starting afresh", response)
            response = await self.client.sync(timeout=0, sync_filter=FIRST_SYNC_FILTER)
        if not isinstance(response, SyncResponse):
            raise SyncFailed(response)
        await self._handled(response, first=True)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="matrix-sync")
            self._task.add_done_callback(self._ended)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self.healthy = False

    async def _run(self) -> None:
        backoff = 1.0
        while True:
            try:
                await self._once()
                backoff = 1.0
            except asyncio.CancelledError:
                raise
            except SyncFailed as exc:
                if exc.errcode in FATAL_ERRCODES:
                    log.error("the homeserver no longer accepts the bot's login: %s", exc)
                    raise
                self.healthy = False
                log.warning("Matrix sync failed (%s); retrying in %.0fs", exc, backoff)
            except Exception as exc:
                self.healthy = False
                log.warning("Matrix sync failed (%r); retrying in %.0fs", exc, backoff)
            else:
                continue
            await asyncio.sleep(backoff)
            backoff = min(MAX_BACKOFF_S, backoff * 2)

    async def _once(self) -> None:
        await self.keys.settle()
        response = await self.client.sync(timeout=self.long_poll_ms)
        if not isinstance(response, SyncResponse):
            raise SyncFailed(response)
        await self._handled(response, first=False)

    async def _handled(self, response: SyncResponse, *, first: bool) -> None:
        try:
            await self.handler(response, first)
        except Exception:
            # One bad batch must not stall the bot on the same batch forever.
            log.exception("handling a Matrix sync batch failed")
        self.healthy = True
        if response.next_batch and response.next_batch != self.state.next_batch:
            self.state = self.state.with_next_batch(response.next_batch)
            try:
                await self.state_file.save(self.state)
            except OSError as exc:
                log.error("cannot save the Matrix sync position: %s", exc)

    def _ended(self, task: asyncio.Task[None]) -> None:
        self.healthy = False
        if not task.cancelled() and task.exception() is not None:
            log.error("Matrix sync loop stopped", exc_info=task.exception())
