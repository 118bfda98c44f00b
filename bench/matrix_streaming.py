"""Benchmark: the Matrix bot streaming answers into a real Synapse on loopback.

Starts two Synapse homeservers through the test harness (one with every rate
limit out of reach, one with Synapse's default ``rc_message`` of 0.2/s, burst
10), a scripted Ollama server, and threadwright with the ``matrix`` adapter at
its default ``matrix.edit_interval`` (1 s). A person (a nio client) mentions
the bot; figures:

- mention → first bot event: from sending the mention until the person's
  client sees the bot's first event about it (the 👀 reaction), median / p90;
- first token → first visible text: from the bot receiving the model's first
  token until the person's client receives the reply, median / p90;
- edits per answer for a 400-chunk answer streamed over about 8 s;
- with default rate limits, a 200-chunk answer: time from mention until the
  full answer (with its footer) is visible, and the number of 429s the bot got
  (target: completes, 429s ≤ 2).

Run: ``.venv/bin/python bench/matrix_streaming.py [--rounds 5]`` (needs
``.ci/synapse-venv``; see ``.ci/install-synapse.sh``).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nio import MatrixRoom, RoomMessageText  # noqa: E402

from bot.testing import Reply, ScriptedOllama  # noqa: E402
from tests.matrix_bot import (  # noqa: E402
    FOOTER_MARK,
    RunningBot,
    bot_config,
    final_reply,
    matrix_bot,
    room_with_bot,
)
from tests.matrix_harness.human import EventDict, HumanClient, relation  # noqa: E402
from tests.matrix_harness.synapse import SynapseServer  # noqa: E402

TARGET_429S = 2


class ArrivalClock:
    """When the person's client received each event (monotonic seconds)."""

    def __init__(self, person: HumanClient) -> None:
        self.arrived: dict[str, float] = {}
        person.client.add_event_callback(self._seen, RoomMessageText)

    def _seen(self, room: MatrixRoom, event: RoomMessageText) -> None:
        self.arrived.setdefault(event.event_id, time.monotonic())


def about(bot: RunningBot, room_id: str, mention: str) -> object:
    def check(event: EventDict) -> bool:
        return (
            event.get("room_id") == room_id
            and event.get("sender") == bot.user_id
            and relation(event).get("event_id") == mention
        )

    return check


def quantiles(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return f"median {statistics.median(ordered):7.1f} ms   p90 {p90:7.1f} ms   (n={len(ordered)})"


async def latency_and_edits(server: SynapseServer, work: Path, rounds: int) -> None:
    async with ScriptedOllama() as model:
        for _ in range(rounds):
            model.script(
                Reply(content="Sure, here is the plan. " * 2, chunk_size=4, chunk_delay=0.01)
            )
        model.script(Reply(content="word " * 400, chunk_size=5, chunk_delay=0.02))
        bot_user = await server.register("threadwright-bench", "bench-password")
        person_user = await server.register("alice-bench", "bench-password")
        workspace = work / "ws"
        workspace.mkdir()
        config = bot_config(
            server, bot_user, workspace, model.url, work / "mx", matrix={"edit_interval": 1.0}
        )
        alice = HumanClient(person_user)
        clock = ArrivalClock(alice)
        await alice.start_sync()
        try:
            async with matrix_bot(config) as bot:
                room_id = await room_with_bot(alice, bot)
                first_event: list[float] = []
                after_ack: list[float] = []
                send_cost: list[float] = []
                first_text: list[float] = []
                for n in range(rounds):
                    sent = time.monotonic()
                    mention = await alice.send_text(room_id, f"plan {n}", mentions=[bot.user_id])
                    acked = time.monotonic()
                    await alice.wait_for(about(bot, room_id, mention))
                    seen = time.monotonic()
                    first_event.append((seen - sent) * 1000)
                    after_ack.append((seen - acked) * 1000)
                    send_cost.append((acked - sent) * 1000)
                    reply_id, _ = await final_reply(alice, bot, room_id, mention)
                    report = bot.adapter.reports[-1]
                    assert report.first_token_at is not None
                    first_text.append((clock.arrived[reply_id] - report.first_token_at) * 1000)
                mention = await alice.send_text(room_id, "long one", mentions=[bot.user_id])
                started = time.monotonic()
                await final_reply(alice, bot, room_id, mention, within=60)
                streamed = time.monotonic() - started
                long_report = bot.adapter.reports[-1]
        finally:
            await alice.close()
    print("relaxed limits (edit_interval 1.0 s)")
    print(f"  mention -> first bot event          {quantiles(first_event)}")
    print(f"    of which after the server's ack   {quantiles(after_ack)}")
    print(f"  (a person's send, for scale)        {quantiles(send_cost)}")
    print(f"  first token -> first visible text   {quantiles(first_text)}")
    print(
        f"  400-chunk answer: {long_report.edits} edits, {long_report.posts} message(s), "
        f"{streamed:.1f} s to the footer, {long_report.rate_limited} rate limits"
    )


async def default_limits(server: SynapseServer, work: Path) -> tuple[float, int, bool]:
    answer = " ".join(f"w{i:04d}" for i in range(200)) + "."
    async with ScriptedOllama() as model:
        model.script(Reply(content=answer, chunk_size=6, chunk_delay=0.05))
        bot_user = await server.register("threadwright-limits", "bench-password")
        person_user = await server.register("alice-limits", "bench-password")
        workspace = work / "ws-limits"
        workspace.mkdir()
        config = bot_config(
            server,
            bot_user,
            workspace,
            model.url,
            work / "mx-limits",
            matrix={"edit_interval": 1.0},
        )
        alice = HumanClient(person_user)
        await alice.start_sync()
        try:
            async with matrix_bot(config) as bot:
                room_id = await room_with_bot(alice, bot)
                mention = await alice.send_text(room_id, "write it", mentions=[bot.user_id])
                started = time.monotonic()
                _, text = await final_reply(alice, bot, room_id, mention, within=120)
                elapsed = time.monotonic() - started
                report = bot.adapter.reports[-1]
                limit_exceeded = bot.adapter.limit_exceeded
        finally:
            await alice.close()
    complete = text.startswith(answer) and FOOTER_MARK in text
    print("default limits (rc_message 0.2/s, burst 10; edit_interval 1.0 s)")
    print(
        f"  200-chunk answer (~10 s of tokens): {elapsed:.1f} s to the full text, "
        f"{report.edits} edits, {limit_exceeded} x 429 "
        f"({'complete' if complete else 'INCOMPLETE'}; target: complete, 429s <= {TARGET_429S})"
    )
    return elapsed, limit_exceeded, complete


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="mentions for the latency figures")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tw-matrix-bench-") as tmp:
        work = Path(tmp)
        async with SynapseServer(work / "hs") as relaxed:
            await latency_and_edits(relaxed, work, args.rounds)
        async with SynapseServer(work / "hs-default", default_rate_limits=True) as limited:
            _, limit_exceeded, complete = await default_limits(limited, work)
    return 0 if complete and limit_exceeded <= TARGET_429S else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
