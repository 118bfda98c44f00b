"""Streaming against Synapse's *default* message rate limit (rc_message 0.2/s, burst 10).

The bot edits faster than the homeserver allows here, on purpose: it must
meet the real ``M_LIMIT_EXCEEDED``, slow down to the server's pace instead of
retrying in a loop, and still finish with one edit carrying the whole answer.
"""

from __future__ import annotations

import time
from pathlib import Path

from bot.testing import Reply, ScriptedOllama
from tests.matrix_bot import bot_config, final_reply, matrix_bot, room_with_bot
from tests.matrix_harness.fixtures import HumanFactory, MatrixUserFactory
from tests.matrix_harness.human import relation
from tests.matrix_harness.synapse import SynapseServer

CHUNKS = 200


async def test_a_200_chunk_answer_completes_under_default_rate_limits(
    synapse_default_limits: SynapseServer,
    matrix_user: MatrixUserFactory,
    human: HumanFactory,
    scripted_ollama: ScriptedOllama,
    tmp_path: Path,
) -> None:
    server = synapse_default_limits
    workspace = tmp_path / "ws"
    workspace.mkdir()
    answer = " ".join(f"w{i:04d}" for i in range(CHUNKS)) + "."
    scripted_ollama.script(Reply(content=answer, chunk_size=6, chunk_delay=0.02))
    bot_user = await matrix_user("threadwright", server=server)
    config = bot_config(
        server,
        bot_user,
        workspace,
        scripted_ollama.url,
        tmp_path / "mx",
        matrix={"edit_interval": 0.2},  # far above 0.2 messages/s: throttling is certain
    )
    alice = await human("alice", server=server)
    async with matrix_bot(config) as bot:
        room_id = await room_with_bot(alice, bot)
        mention = await alice.send_text(room_id, "write a long answer", mentions=[bot.user_id])
        started = time.monotonic()
        reply_id, text = await final_reply(alice, bot, room_id, mention, within=60)
        elapsed = time.monotonic() - started
        limit_exceeded = bot.adapter.limit_exceeded
        report = bot.adapter.reports[-1]
    assert text.startswith(answer)
    edits = [
        e
        for e in alice.events
        if relation(e).get("rel_type") == "m.replace" and relation(e).get("event_id") == reply_id
    ]
    assert len(edits) == report.edits
    # The burst of 10 allows a few fast edits; after the first 429 the pace is the server's.
    assert 1 <= limit_exceeded <= 2, limit_exceeded
    assert report.posts == 1 and len(edits) <= 12
    assert elapsed < 30
