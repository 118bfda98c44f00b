"""Server-Sent Events for the browser view: a per-session event log and its readers.

Every event a session emits is encoded once, as a complete SSE frame
(``id:``, ``event:``, ``data:``), and appended to that session's
:class:`EventLog`. Ids are ``<epoch>-<n>``: ``n`` counts up per log and the
epoch is random per log, so a ``Last-Event-ID`` from before a restart (or
from a log that was dropped and rebuilt) is recognised instead of being
compared with unrelated numbers.

A connected browser is a :class:`StreamClient`: a bounded queue of references
to frames in the log (``streaming.buffer_size`` of them). Appending never
waits for a client; a client whose queue is full is cut off at once, and its
``EventSource`` reconnects with ``Last-Event-ID`` and catches up from the
log. That is how a slow reader neither blocks the agent nor loses events.
:func:`pump` is the writer side: it sends the backlog, then live frames as
they arrive, heartbeats when idle, and gives up on a write that does not
finish within the disconnect timeout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

log = logging.getLogger(__name__)

# Logs dropped from memory beyond these (least recently used, idle ones first).
MAX_LOGS = 64
MAX_TOTAL_BYTES = 256 * 1024 * 1024
HEARTBEAT = b": keepalive\n\n"
# Tells EventSource how soon to reconnect (ms) after a drop.
RETRY_FRAME = b"retry: 1000\n\n"
# Frames written per socket write while catching up.
BACKLOG_BATCH = 256
COALESCED_KINDS = frozenset({"token", "thinking"})
# Below asyncio's default high-water mark (64 KiB): into an empty transport
# buffer such a write never pauses the protocol, so it cannot wait.
UNTIMED_WRITE_MAX = 32 * 1024
# A token burst is written at most this often: its frames share one write per
# client instead of costing a wake-up and a syscall each (the first token of a
# step, and anything after a pause, still goes out at once).
FLUSH_INTERVAL_S = 0.005


@dataclass(frozen=True, slots=True)
class LogEntry:
    n: int
    kind: str
    frame: bytes


def encode_frame(event_id: str, kind: str, data: dict[str, Any]) -> bytes:
    # json.dumps escapes newlines, so the payload is always a single data: line.
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    return f"id: {event_id}\nevent: {kind}\ndata: {payload}\n\n".encode()


def parse_event_id(value: str | None) -> tuple[str, int] | None:
    """``"<epoch>-<n>"`` → (epoch, n); None when absent or malformed."""
    if not value:
        return None
    epoch, _, number = value.strip().rpartition("-")
    if not epoch or not number.isdigit():
        return None
    return epoch, int(number)


class StreamClient:
    """One connected reader: a bounded queue of frames not yet written."""

    def __init__(self, buffer_size: int, on_overflow: Callable[[], None] | None = None) -> None:
        self.buffer_size = buffer_size
        self.queue: deque[LogEntry] = deque()
        self.wakeup = asyncio.Event()
        self.overflowed = False
        self.closed = False
        self._on_overflow = on_overflow

    def offer(self, entry: LogEntry) -> None:
        if self.closed or self.overflowed:
            return
        if len(self.queue) >= self.buffer_size:
            # Too far behind: drop the connection (the browser resumes from the log)
            # rather than hold the agent or grow without bound.
            self.overflowed = True
            self.queue.clear()
            self.wakeup.set()
            if self._on_overflow is not None:
                self._on_overflow()
            return
        self.queue.append(entry)
        self.wakeup.set()

    def close(self) -> None:
        self.closed = True
        self.wakeup.set()

    def take(self) -> list[LogEntry]:
        items = list(self.queue)
        self.queue.clear()
        self.wakeup.clear()
        return items


@dataclass
class EventLog:
    """The events of one session, kept (bounded) for late joiners and resumes."""

    session_id: str
    capacity: int
    entries: deque[LogEntry] = field(default_factory=deque)
    clients: set[StreamClient] = field(default_factory=set)
    next_n: int = 1
    meta: dict[str, Any] = field(default_factory=dict)
    epoch: str = field(default_factory=lambda: secrets.token_hex(3))
    size: int = 0  # bytes of the frames kept

    def append(self, kind: str, data: dict[str, Any]) -> LogEntry:
        n = self.next_n
        self.next_n += 1
        entry = LogEntry(n, kind, encode_frame(f"{self.epoch}-{n}", kind, data))
        self.entries.append(entry)
        self.size += len(entry.frame)
        while len(self.entries) > self.capacity:
            self.size -= len(self.entries.popleft().frame)
        for client in list(self.clients):
            client.offer(entry)
        return entry

    @property
    def first_n(self) -> int:
        return self.entries[0].n if self.entries else self.next_n

    def attach(
        self, client: StreamClient, last_event_id: str | None
    ) -> tuple[list[LogEntry], bool]:
        """Subscribe ``client`` and return (backlog, reset).

        Subscribing and taking the backlog happen in one synchronous step, so
        nothing appended concurrently is missed or sent twice. ``reset`` is
        True when the client's position cannot be continued (events it has not
        seen were dropped, or its id is from another process): it must start
        over from the backlog.
        """
        self.clients.add(client)
        parsed = parse_event_id(last_event_id)
        if parsed is None:
            return list(self.entries), False
        epoch, after = parsed
        if epoch != self.epoch or after + 1 < self.first_n or after >= self.next_n:
            return list(self.entries), True
        return list(islice(self.entries, after + 1 - self.first_n, None)), False

    def reset_frame(self) -> bytes:
        """Tells a client to clear its view; its id is the position before the backlog."""
        return encode_frame(
            f"{self.epoch}-{self.first_n - 1}", "reset", {"session_id": self.session_id}
        )

    def detach(self, client: StreamClient) -> None:
        self.clients.discard(client)


class EventHub:
    """The logs of every session this process shows, least recently used dropped first."""

    def __init__(
        self,
        *,
        history_events: int,
        max_logs: int = MAX_LOGS,
        max_total_bytes: int = MAX_TOTAL_BYTES,
    ) -> None:
        self.history_events = history_events
        self.max_logs = max_logs
        self.max_total_bytes = max_total_bytes
        self.logs: OrderedDict[str, EventLog] = OrderedDict()

    def get(self, session_id: str) -> EventLog | None:
        return self.logs.get(session_id)

    def log_for(self, session_id: str) -> EventLog:
        existing = self.logs.get(session_id)
        if existing is not None:
            self.logs.move_to_end(session_id)
            return existing
        created = EventLog(session_id, self.history_events)
        self.logs[session_id] = created
        self.trim()
        return created

    def trim(self) -> None:
        """Drop the least recently used idle logs beyond the count and byte budgets."""
        total = sum(entry.size for entry in self.logs.values())
        while len(self.logs) > self.max_logs or total > self.max_total_bytes:
            for key, candidate in self.logs.items():
                if not candidate.clients and not candidate.meta.get("running"):
                    total -= candidate.size
                    del self.logs[key]
                    break
            else:
                return

    def client_count(self) -> int:
        return sum(len(entry.clients) for entry in self.logs.values())

    def close_all(self) -> None:
        for entry in self.logs.values():
            for client in list(entry.clients):
                client.close()


Writer = Callable[[bytes], Awaitable[None]]


async def _write(write: Writer, data: bytes, timeout: float) -> None:  # noqa: ASYNC109
    # asyncio.timeout, not wait_for: on 3.11 wait_for costs a task per write.
    async with asyncio.timeout(timeout):
        await write(data)


async def pump(
    write: Writer,
    client: StreamClient,
    backlog: Iterable[LogEntry],
    *,
    preamble: bytes = b"",
    heartbeat: float,
    write_timeout: float,
    is_gone: Callable[[], bool],
    backed_up: Callable[[], bool] = lambda: True,
) -> str:
    """Write the backlog, then live frames, until the client goes away.

    Returns why it ended: ``closed`` (server side), ``overflow``, ``gone``
    (the peer left) or ``timeout`` (a write stalled past ``write_timeout``).
    ``backed_up()`` says whether the socket still holds unsent bytes: only
    then (or for a write near the transport's high-water mark) can a write
    wait, so only then is it put under the timeout.
    """
    loop = asyncio.get_running_loop()
    # One timer per period (not one per wait) notices a closed peer and idleness.
    poll = min(heartbeat, write_timeout / 2)
    ticked = False
    timer: asyncio.TimerHandle

    def tick() -> None:
        nonlocal ticked, timer
        ticked = True
        client.wakeup.set()
        timer = loop.call_later(poll, tick)

    timer = loop.call_later(poll, tick)
    last_sent = loop.time()
    last_write = 0.0
    last_kind = ""
    try:
        await _write(write, RETRY_FRAME + preamble, write_timeout)
        batch: list[bytes] = []
        for entry in backlog:
            batch.append(entry.frame)
            if len(batch) >= BACKLOG_BATCH:
                await _write(write, b"".join(batch), write_timeout)
                batch = []
        if batch:
            await _write(write, b"".join(batch), write_timeout)
        while True:
            if client.closed:
                return "closed"
            if client.overflowed:
                return "overflow"
            if not client.queue:
                await client.wakeup.wait()
            if ticked:
                ticked = False
                if is_gone():
                    return "gone"
                if not client.queue:
                    client.wakeup.clear()
                    if loop.time() - last_sent >= heartbeat:
                        last_sent = loop.time()
                        await _write(write, HEARTBEAT, write_timeout)
                    continue
            # Only a burst of tokens waits to be coalesced; the first token of a
            # step, a tool call or the end goes out at once.
            if last_kind in COALESCED_KINDS and client.queue and client.queue[0].kind == last_kind:
                pause = last_write + FLUSH_INTERVAL_S - loop.time()
                if pause > 0:
                    await asyncio.sleep(pause)
            frames = client.take()
            if frames:
                last_write = last_sent = loop.time()
                last_kind = frames[-1].kind
                data = b"".join(e.frame for e in frames)
                if backed_up() or len(data) > UNTIMED_WRITE_MAX:
                    await _write(write, data, write_timeout)
                else:
                    await write(data)
    except TimeoutError:
        return "timeout"
    except (ConnectionError, RuntimeError):
        # aiohttp raises ConnectionResetError (or RuntimeError on a closing
        # transport) once the browser has gone.
        return "gone"
    finally:
        timer.cancel()
