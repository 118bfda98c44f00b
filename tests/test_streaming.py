"""StreamingMessage pacing, rate limits, splitting; ReplyDocument rendering."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from bot.events import AgentEvent, AgentEventKind
from bot.streaming import (
    CURSOR,
    RateLimited,
    ReplyDocument,
    StreamingMessage,
    split_text,
)


class LoopbackTransport:
    """Records what a platform would show; can refuse calls like a rate limiter."""

    def __init__(self, max_chars: int = 200) -> None:
        self.max_chars = max_chars
        self.messages: dict[str, str] = {}
        self.order: list[str] = []
        self.calls: list[tuple[float, str, str]] = []
        self.refuse: list[float] = []  # retry_after values for the next calls

    def _gate(self) -> None:
        if self.refuse:
            raise RateLimited(self.refuse.pop(0))

    async def post(self, text: str) -> str:
        self._gate()
        message_id = f"m{len(self.order) + 1}"
        self.messages[message_id] = text
        self.order.append(message_id)
        self.calls.append((time.monotonic(), "post", message_id))
        return message_id

    async def edit(self, message_id: str, text: str) -> None:
        self._gate()
        self.messages[message_id] = text
        self.calls.append((time.monotonic(), "edit", message_id))

    def shown(self) -> str:
        return "".join(self.messages[m] for m in self.order)


async def test_first_text_at_once_then_paced_coalesced_edits() -> None:
    transport = LoopbackTransport(max_chars=10_000)
    message = StreamingMessage(transport, interval=0.2)
    started = time.monotonic()
    message.update("a")
    for i in range(40):
        await asyncio.sleep(0.01)
        message.update("a" + "b" * (i + 1))
    assert await message.finish("final text")
    assert transport.shown() == "final text"
    first = transport.calls[0]
    assert first[1] == "post" and first[0] - started < 0.05
    times = [t for t, kind, _ in transport.calls]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap >= 0.19 for gap in gaps), gaps
    # ~0.4 s of updates at a 0.2 s pace: a handful of calls, not 41.
    assert len(transport.calls) <= 5


async def test_rate_limits_pause_and_lose_nothing() -> None:
    transport = LoopbackTransport(max_chars=10_000)
    transport.refuse = [0.05, 0.05, 0.05]
    message = StreamingMessage(transport, interval=0.01)
    text = ""
    for word in ["alpha ", "beta ", "gamma ", "delta"]:
        text += word
        message.update(text)
        await asyncio.sleep(0.02)
    assert await message.finish()
    assert transport.shown() == "alpha beta gamma delta"
    assert message.stats.rate_limited == 3
    assert message.interval >= 0.05  # slowed down after being refused


async def test_long_text_continues_in_more_messages() -> None:
    transport = LoopbackTransport(max_chars=100)
    message = StreamingMessage(transport, interval=0.0)
    paragraphs = [f"paragraph {i} " + "x" * 30 for i in range(12)]
    text = "\n\n".join(paragraphs)
    for cut in range(50, len(text) + 50, 50):
        message.update(text[:cut])
        await asyncio.sleep(0)
    assert await message.finish(text)
    assert len(transport.order) >= 5
    assert all(len(t) <= 100 for t in transport.messages.values())
    joined = "".join(transport.messages[m] for m in transport.order)
    assert joined.replace("\n", "") == text.replace("\n", "")


@pytest.mark.parametrize("limit", [60, 100, 333])
def test_split_keeps_every_character_and_fences_balanced(limit: int) -> None:
    code = "\n".join(f"print({i})" for i in range(40))
    text = f"Intro line.\n\n```python\n{code}\n```\n\nOutro with <b> & stuff."
    chunks = split_text(text, limit)
    assert all(len(c) <= limit for c in chunks)
    for chunk in chunks:
        assert chunk.count("```") % 2 == 0, chunk

    # Without fence lines and line breaks, the chunks are exactly the original text.
    def plain(s: str) -> str:
        return "".join(line for line in s.split("\n") if not line.startswith("```"))

    assert "".join(plain(c) for c in chunks) == plain(text)


def _ev(kind: AgentEventKind, text: str = "", **data: object) -> AgentEvent:
    return AgentEvent(kind, "s1", text, data)


def test_reply_document_renders_tools_notices_and_footer() -> None:
    doc = ReplyDocument()
    doc.apply(_ev(AgentEventKind.TOKEN, "Let me run the tests."))
    doc.apply(
        _ev(
            AgentEventKind.TOOL_CALL,
            "bash",
            id="c1",
            name="bash",
            arguments={"command": "pytest -q"},
        )
    )
    running = doc.render()
    assert running.endswith(CURSOR) and "⚙️ `bash: pytest -q`" in running
    doc.apply(_ev(AgentEventKind.TOOL_RESULT, "exit 0 (3 passed)", id="c1", result={"ok": True}))
    doc.apply(_ev(AgentEventKind.TOKEN, "All green."))
    doc.apply(_ev(AgentEventKind.STEERING, "use argparse", author="alice"))
    doc.apply(
        _ev(
            AgentEventKind.DONE,
            "All green.",
            reason="completed",
            stats={
                "steps": 2,
                "routes": {"local": 2},
                "prompt_tokens": 900,
                "completion_tokens": 300,
                "duration_s": 4.2,
            },
        )
    )
    final = doc.render()
    assert "✅ `bash: pytest -q` → exit 0 (3 passed)" in final
    assert "Let me run the tests.\n✅" in final
    assert "alice: use argparse" in final
    assert final.endswith("— _2 local · 2 steps · 1.2k tokens · 4.2s_")
    assert CURSOR not in final


async def test_pace_recovers_after_rate_limits() -> None:
    transport = LoopbackTransport(max_chars=10_000)
    transport.refuse = [0.2]
    message = StreamingMessage(transport, interval=0.01)
    message.update("a")
    for i in range(400):
        await asyncio.sleep(0.01)
        message.update("a" * (i + 2))
        if message.stats.rate_limited and message.interval <= 0.011:
            break
    assert message.stats.rate_limited == 1
    assert message.interval <= 0.011  # back to the configured pace
    assert await message.finish()


def test_a_retried_step_replaces_the_failed_attempts_text() -> None:
    doc = ReplyDocument()
    doc.apply(_ev(AgentEventKind.STEP, step=1, model="big"))
    doc.apply(_ev(AgentEventKind.TOKEN, "Half an answ"))
    assert doc.render().startswith("Half an answ")
    # The big model failed mid-stream; the same step runs again on the fallback model.
    doc.apply(_ev(AgentEventKind.NOTICE, "The big model failed; using the fallback."))
    assert doc.apply(_ev(AgentEventKind.STEP, step=1, model="fallback")) is True
    doc.apply(_ev(AgentEventKind.TOKEN, "A whole answer."))
    doc.apply(_ev(AgentEventKind.STEP, step=2, model="fallback"))
    doc.apply(_ev(AgentEventKind.TOKEN, " More."))
    assert doc.render() == (
        "_The big model failed; using the fallback._\nA whole answer. More." + CURSOR
    )
