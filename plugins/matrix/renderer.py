"""MatrixTurnRenderer: the core's StreamingRenderer plus typing notices and figures.

The reply text, its pacing and its splitting all come from
:class:`bot.streaming.StreamingRenderer`; this wrapper keeps the room's typing
notice on while the agent works and records when the first token arrived and
when text first became visible, for the benchmark and the logs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bot.events import AgentEvent, AgentEventKind, ThreadKey
from bot.streaming import StreamingRenderer
from plugins.matrix.typing_notices import TypingNotifier


@dataclass(slots=True)
class ReplyReport:
    """What one streamed reply cost: messages, edits, rate limits, latency."""

    thread: ThreadKey
    first_token_at: float | None = None
    first_visible_at: float | None = None
    posts: int = 0
    edits: int = 0
    rate_limited: int = 0
    finished: bool = False


class MatrixTurnRenderer:
    """A :class:`bot.adapters.TurnRenderer` for one turn in one Matrix thread."""

    def __init__(
        self, streaming: StreamingRenderer, typing: TypingNotifier, thread: ThreadKey
    ) -> None:
        self.streaming = streaming
        self.typing = typing
        self.thread = thread
        self.report = ReplyReport(thread)
        self._typing_held = False
        self._typing_done = False

    async def __call__(self, event: AgentEvent) -> None:
        if not self._typing_held and not self._typing_done:
            self._typing_held = True
            self.typing.hold(self.thread.room)
        if event.kind is AgentEventKind.TOKEN and self.report.first_token_at is None:
            self.report.first_token_at = time.monotonic()
        if event.kind is AgentEventKind.DONE:
            self._stop_typing()
        await self.streaming(event)

    async def close(self) -> None:
        self._stop_typing()
        try:
            await self.streaming.close()
        finally:
            stats = self.streaming.message.stats
            self.report.first_visible_at = stats.first_visible_at
            self.report.posts = stats.posts
            self.report.edits = stats.edits
            self.report.rate_limited = stats.rate_limited
            self.report.finished = True

    def _stop_typing(self) -> None:
        if self._typing_held and not self._typing_done:
            self.typing.release(self.thread.room)
        self._typing_done = True
