"""Benchmark: streaming answers into Slack threads (the emulator) through the real adapter.

Runs threadwright's host with the ``slack`` adapter (slack-bolt, Socket Mode)
against the Slack emulator and the scripted Ollama server, all in this one
process and event loop, at the default ``slack.edit_interval`` of 1 s. Each
answer is 500 tokens streamed over 5 s. Scenarios: one thread; 20 threads at
once; and 20 threads at once with ``chat.update`` limited to 10 calls/s for
the workspace (the emulator answers 429 with ``Retry-After`` beyond that).

Figures per scenario:

- first model token → first visible text: from the scripted server starting
  its answer (it writes the first chunk right after picking the reply) until
  the emulator stores the bot's first ``chat.postMessage`` in that thread
  (target ≤ 300 ms);
- updates per message per second: ``chat.update`` calls per reply message over
  its streaming time, and the shortest gap between two writes of one message
  (target ≤ 1/s, i.e. gaps ≥ 1 s);
- event-loop lag p99: a sampler sleeps 10 ms in a loop and records how late it
  wakes (target ≤ 50 ms); it measures the whole process (bot, emulator and
  model server share the loop), so it is an upper bound for the bot;
- characters lost: the answer's length minus what the thread's final messages
  show of it (target 0).

Run: ``.venv/bin/python bench/slack_streaming.py [--threads 20] [--tokens 500]``
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.testing import Reply, ScriptedOllama  # noqa: E402
from tests.emulators.slack import SlackEmulator  # noqa: E402
from tests.slack_support import (  # noqa: E402
    CHANNEL,
    FOOTER,
    SlackBot,
    slack_bot,
    slack_workspace,
)

TARGET_FIRST_TEXT_MS = 300.0
TARGET_UPDATES_PER_S = 1.0
TARGET_LAG_P99_MS = 50.0
SAMPLE_EVERY_S = 0.01


class LagSampler:
    """How late the event loop wakes a task that sleeps SAMPLE_EVERY_S."""

    def __init__(self) -> None:
        self.lags_ms: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(SAMPLE_EVERY_S)
            self.lags_ms.append((time.perf_counter() - started - SAMPLE_EVERY_S) * 1000)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def p99(self) -> float:
        ordered = sorted(self.lags_ms)
        return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else 0.0


@dataclass
class Result:
    name: str
    first_text_ms: list[float] = field(default_factory=list)
    updates_per_s: list[float] = field(default_factory=list)
    min_gap_s: float = float("inf")
    lag_p99_ms: float = 0.0
    lost: int = 0
    messages: int = 0
    updates: int = 0
    rate_limited: int = 0
    wall_s: float = 0.0


def answer_text(tokens: int) -> str:
    return "".join(f"w{i:03d} " for i in range(tokens)).rstrip()


def first_token_times(model: ScriptedOllama, reply: Reply) -> dict[str, float]:
    """Answer every chat request with ``reply``, noting when each task's answer began."""
    started: dict[str, float] = {}

    def respond(body: dict[str, Any]) -> Reply:
        task = next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")
        started.setdefault(str(task), time.monotonic())
        return reply

    model.respond_with(respond)
    return started


def measure(emu: SlackEmulator, root: str, began: float, answer: str, result: Result) -> None:
    posts = [
        c
        for c in emu.calls_to("chat.postMessage")
        if c.status == 200 and c.args.get("thread_ts") == root
    ]
    result.first_text_ms.append((posts[0].time - began) * 1000)
    replies = emu.bot_replies(CHANNEL, root)
    result.messages += len(replies)
    for message, post in zip(replies, posts, strict=False):
        writes = [post.time] + [
            c.time
            for c in emu.calls_to("chat.update")
            if c.status == 200 and c.args.get("ts") == message.ts
        ]
        updates = len(writes) - 1
        result.updates += updates
        if updates:
            span = writes[-1] - writes[0]
            result.updates_per_s.append(updates / span if span > 0 else float("inf"))
            gaps = [b - a for a, b in itertools.pairwise(writes)]
            result.min_gap_s = min(result.min_gap_s, *gaps)
    shown = "\n".join(m.text for m in replies)
    match = FOOTER.search(shown)
    body = shown[: match.start()].rstrip("\n") if match else shown
    shown_of_answer = next(
        (i for i, (a, b) in enumerate(zip(body, answer, strict=False)) if a != b),
        min(len(body), len(answer)),
    )
    result.lost += len(answer) - shown_of_answer


async def scenario(
    name: str, threads: int, tokens: int, seconds: float, update_limit: float | None
) -> Result:
    answer = answer_text(tokens)
    chunk = len(answer) // tokens + 1
    reply = Reply(content=answer, chunk_size=chunk, chunk_delay=seconds / tokens)
    result = Result(name)
    sampler = LagSampler()
    with tempfile.TemporaryDirectory(prefix="tw-slack-bench-") as tmp:
        async with ScriptedOllama() as model, slack_workspace() as emu:
            if update_limit is not None:
                emu.set_rate("chat.update", per_second=update_limit, burst=int(update_limit))
            began = first_token_times(model, reply)
            async with slack_bot(emu, model, Path(tmp), slack={"edit_interval": 1.0}) as bot:
                sampler.start()
                started = time.monotonic()
                roots = await asyncio.gather(*(bot.mention(f"bench {n}") for n in range(threads)))
                await asyncio.gather(*(finished(bot, root) for root in roots))
                result.wall_s = time.monotonic() - started
                await sampler.stop()
            for n, root in enumerate(roots):
                measure(emu, root, began[f"bench {n}"], answer, result)
            result.rate_limited = emu.rate_limited_count["chat.update"]
    result.lag_p99_ms = sampler.p99()
    return result


async def finished(bot: SlackBot, root: str) -> None:
    await bot.emu.wait_for(
        lambda: any(FOOTER.search(m.text) for m in bot.replies(root)), timeout=180
    )


def report(result: Result) -> bool:
    first = sorted(result.first_text_ms)
    p90 = first[min(len(first) - 1, round(0.9 * (len(first) - 1)))]
    worst_rate = max(result.updates_per_s, default=0.0)
    ok = (
        p90 <= TARGET_FIRST_TEXT_MS
        and worst_rate <= TARGET_UPDATES_PER_S * 1.05
        and result.lag_p99_ms <= TARGET_LAG_P99_MS
        and result.lost == 0
    )
    print(f"{result.name}  ({result.wall_s:.1f} s wall, {'OK' if ok else 'MISSED A TARGET'})")
    print(
        f"  first token -> first visible text  median {statistics.median(first):6.1f} ms"
        f"   p90 {p90:6.1f} ms   max {first[-1]:6.1f} ms   (target <= {TARGET_FIRST_TEXT_MS:.0f})"
    )
    print(
        f"  updates per message per second     mean "
        f"{statistics.mean(result.updates_per_s or [0.0]):.2f}   worst {worst_rate:.2f}   "
        f"shortest gap {result.min_gap_s:.2f} s   (target <= {TARGET_UPDATES_PER_S:.0f}/s)"
    )
    print(
        f"  event-loop lag p99                 {result.lag_p99_ms:6.1f} ms"
        f"   (target <= {TARGET_LAG_P99_MS:.0f})"
    )
    print(f"  characters lost                    {result.lost}   (target 0)")
    print(
        f"  {result.messages} messages, {result.updates} updates, "
        f"{result.rate_limited} x 429 on chat.update"
    )
    return ok


async def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--threads", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    runs = [
        ("1 thread", 1, None),
        (f"{args.threads} threads at once", args.threads, None),
        (f"{args.threads} threads, chat.update limited to 10/s", args.threads, 10.0),
    ]
    ok = True
    for name, threads, limit in runs:
        result = await scenario(name, threads, args.tokens, args.seconds, limit)
        ok = report(result) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
