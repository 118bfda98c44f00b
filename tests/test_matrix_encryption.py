"""An encrypted room: with ``matrix.encryption: true`` the bot reads and answers in it."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import httpx

from bot.testing import Reply, ScriptedOllama
from tests.matrix_bot import bot_config, final_reply, matrix_bot, room_with_bot
from tests.matrix_harness.fixtures import HumanFactory, MatrixUserFactory
from tests.matrix_harness.human import relation
from tests.matrix_harness.synapse import SynapseServer


async def raw_event(server: SynapseServer, token: str, room_id: str, event_id: str) -> dict:
    path = f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/event/{quote(event_id, safe='')}"
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.get(path, headers={"Authorization": f"Bearer {token}"})
    response.raise_for_status()
    data: dict = response.json()
    return data


async def test_the_bot_reads_and_answers_in_an_encrypted_room(
    synapse: SynapseServer,
    matrix_user: MatrixUserFactory,
    human: HumanFactory,
    scripted_ollama: ScriptedOllama,
    tmp_path: Path,
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    scripted_ollama.script(
        Reply(content="the answer is forty-two", chunk_size=5, chunk_delay=0.02),
        Reply(content="still here after a restart"),
    )
    bot_user = await matrix_user("threadwright")
    store = tmp_path / "mx"
    config = bot_config(
        synapse, bot_user, workspace, scripted_ollama.url, store, matrix={"encryption": True}
    )
    alice = await human("alice", e2e=True)
    async with matrix_bot(config) as bot:
        room_id = await room_with_bot(alice, bot, encrypted=True)
        mention = await alice.send_text(
            room_id, "what is the secret number?", mentions=[bot.user_id]
        )
        reply_id, text = await final_reply(alice, bot, room_id, mention, within=30)
        device = bot.adapter.device_id
    # Restarted on the same store: the same Olm identity reads the room on.
    async with matrix_bot(config) as bot:
        assert bot.adapter.device_id == device
        again = await alice.send_text(room_id, "are you there?", mentions=[bot.user_id])
        _, after_restart = await final_reply(alice, bot, room_id, again, within=30)
    assert after_restart.startswith("still here after a restart")
    assert "secret number" in str(scripted_ollama.chat_requests[0]["messages"])
    assert text.startswith("the answer is forty-two")
    reply = next(e for e in alice.events if e["event_id"] == reply_id)
    assert reply.get("decrypted") is True
    assert relation(reply)["rel_type"] == "m.thread"
    on_server = await raw_event(synapse, alice.user.access_token, room_id, reply_id)
    assert on_server["type"] == "m.room.encrypted"
    assert "forty-two" not in json.dumps(on_server)
    # The Olm identity lives in the store, next to the saved login.
    assert (store / f"{bot_user.user_id}_{device}.db").exists()
