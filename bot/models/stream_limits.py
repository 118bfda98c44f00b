"""Limits on one streamed model answer: output tokens, wall-clock time, runaway repetition.

Servers are asked to stop on their own (``num_predict`` / ``max_tokens``), but
not every server honours that, and a read timeout only bounds *silence*: a
model that keeps streaming the same line is never cut by it.
:func:`limit_stream` wraps any client's stream and enforces the limits itself.
When one trips, the client's stream is closed (which closes the HTTP
response), every piece that arrived has been passed on, and one last ``done``
chunk names the limit in ``done_reason``:

- ``"max_tokens"``: more output than the cap. Tokens are counted here as the
  larger of the streamed pieces and characters / 8 (a server may put several
  tokens in one piece; real text runs 3 to 5 characters a token). Both count
  low on purpose: a server that honours the cap always ends first, with its
  own ``"length"`` and real counts, and one that batches tokens *and* ignores
  the cap is still cut by about twice the cap.
- ``"max_seconds"``: the stream had not ended by its deadline. The wait for
  each next piece is bounded by the deadline too, so a slow trickle or a
  silent server is cut on time, not at the next piece.
- ``"repetition"``: the answer's tail repeats one unit (a line, a phrase, a
  character) over at least ``repeated_chars`` characters.

:data:`TRUNCATING` lists every ``done_reason`` that means the answer is
incomplete, the servers' own (``"length"``, ``"content_filter"``) included.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

from bot.models.base import ModelChunk

MAX_TOKENS = "max_tokens"
MAX_SECONDS = "max_seconds"
REPETITION = "repetition"
SERVER_LENGTH = "length"
CONTENT_FILTER = "content_filter"
TRUNCATING = frozenset({MAX_TOKENS, MAX_SECONDS, REPETITION, SERVER_LENGTH, CONTENT_FILTER})
CHARS_PER_TOKEN = 8  # about half the real count of English or code: see above

# The repetition check: a probe of the newest characters is looked up further
# back; each earlier occurrence gives a candidate period, confirmed when the
# whole tail equals itself shifted by that period.
_PROBE = 32
_CANDIDATES = 8
_MIN_REPEATS = 8  # a long unit must still recur this often before it counts
_CHECK_EVERY = 256  # characters between checks: the check is O(tail), not O(token)


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """What one stream may do. ``None`` (or 0 for ``repeated_chars``) is no limit.

    ``deadline`` is a ``time.monotonic()`` instant; ``deadline_reason`` is the
    ``done_reason`` reported when it passes (the caller may have clamped the
    step's own deadline to an earlier one of the whole run).
    """

    max_tokens: int | None = None
    deadline: float | None = None
    deadline_reason: str = MAX_SECONDS
    repeated_chars: int = 0


@dataclass(frozen=True, slots=True)
class Repetition:
    """A runaway tail: ``unit`` characters repeated ``times`` times."""

    unit: int
    times: int


class RepetitionDetector:
    """Spots an answer whose newest ``min_chars`` characters repeat one unit."""

    def __init__(self, min_chars: int) -> None:
        self.min_chars = min_chars
        self._window = 4 * min_chars
        self._tail = ""
        self._unchecked = 0

    def feed(self, text: str) -> Repetition | None:
        self._tail += text
        if len(self._tail) > 2 * self._window:
            self._tail = self._tail[-self._window :]
        self._unchecked += len(text)
        if self._unchecked < _CHECK_EVERY or len(self._tail) < self.min_chars:
            return None
        self._unchecked = 0
        return self._check()

    def _check(self) -> Repetition | None:
        tail, n = self._tail, len(self._tail)
        probe = tail[-_PROBE:]
        end = n - 1  # the probe itself ends at n; look for occurrences ending before it
        for _ in range(_CANDIDATES):
            found = tail.rfind(probe, 0, end)
            if found < 0:
                return None
            period = n - _PROBE - found
            span = max(self.min_chars, period * _MIN_REPEATS)
            if span > n:
                return None
            if tail[n - span : n - period] == tail[n - span + period :]:
                return Repetition(period, span // period)
            end = found + _PROBE - 1
        return None


@dataclass(slots=True)
class StreamTally:
    """What a stream produced so far, counted client-side."""

    pieces: int = 0
    chars: int = 0

    @property
    def tokens(self) -> int:
        return max(self.pieces, self.chars // CHARS_PER_TOKEN)

    def add(self, chunk: ModelChunk) -> None:
        for text in (chunk.content, chunk.thinking):
            if text:
                self.pieces += 1
                self.chars += len(text)


class _Deadline:
    """One timer for a whole stream that cancels only the wait for the next chunk.

    A timeout around each wait would cost a timer per token; cancelling at any
    other moment would hit the consumer's code, which runs in the same task
    between chunks. When the deadline passes there, the next wait is not begun.
    """

    def __init__(self, deadline: float | None) -> None:
        self.expired = False
        self._fired = False
        self._waiter: asyncio.Task[object] | None = None
        self._handle: asyncio.TimerHandle | None = None
        if deadline is not None:
            loop = asyncio.get_running_loop()
            when = loop.time() + (deadline - time.monotonic())
            self._handle = loop.call_at(when, self._expire)

    def _expire(self) -> None:
        self.expired = True
        if self._waiter is not None:
            self._fired = True
            self._waiter.cancel()

    async def next(self, stream: AsyncIterator[ModelChunk]) -> ModelChunk | None:
        """The next chunk, or ``None`` when the deadline passed first."""
        if self.expired:
            return None
        task = asyncio.current_task()
        cancelling = task.cancelling() if task is not None else 0
        self._waiter = task
        try:
            return await anext(stream)
        except asyncio.CancelledError:
            # Ours only if the deadline cancelled and no one else asked as well.
            if self._fired and task is not None and task.uncancel() <= cancelling:
                return None
            raise
        except Exception:
            if not self._fired or task is None:
                raise
            task.uncancel()  # the stream turned our cancellation into an error of its own
            return None
        finally:
            self._waiter = None

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()


async def limit_stream(
    stream: AsyncIterator[ModelChunk], limits: StreamLimits
) -> AsyncGenerator[ModelChunk, None]:
    """``stream``'s chunks until it ends or a limit trips (then one ``done`` chunk
    naming it). A server's own ``done`` chunk without an output count gets the
    client-side count."""
    tally = StreamTally()
    detectors = (
        (RepetitionDetector(limits.repeated_chars), RepetitionDetector(limits.repeated_chars))
        if limits.repeated_chars
        else None
    )
    cut: str | None = None
    deadline = _Deadline(limits.deadline)
    try:
        while True:
            try:
                chunk = await deadline.next(stream)
            except StopAsyncIteration:
                break
            if chunk is None:
                cut = limits.deadline_reason
                break
            tally.add(chunk)
            if chunk.done:
                if chunk.completion_tokens is None:
                    chunk.completion_tokens = tally.tokens
                yield chunk
                continue  # read on to the end of the body, as the clients do
            if limits.max_tokens is not None and tally.tokens > limits.max_tokens:
                cut = MAX_TOKENS
            elif detectors is not None and (
                detectors[0].feed(chunk.content) or detectors[1].feed(chunk.thinking)
            ):
                cut = REPETITION
            yield chunk
            if cut is not None:
                break
    finally:
        deadline.close()
        closer = getattr(stream, "aclose", None)
        if closer is not None:
            await closer()
    if cut is not None:
        yield ModelChunk(done=True, done_reason=cut, completion_tokens=tally.tokens)
