"""Restarts and logins: the bot keeps its device and its place in the timeline."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import httpx
import pytest

from bot.testing import Reply, ScriptedOllama
from plugins.matrix.connection import MatrixCredentials, MatrixSetupError
from tests.matrix_bot import bot_config, final_reply, matrix_bot, room_with_bot
from tests.matrix_harness.fixtures import HumanFactory, MatrixUserFactory
from tests.matrix_harness.synapse import RegisteredUser, SynapseServer


async def device_ids(server: SynapseServer, user: RegisteredUser) -> set[str]:
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.get(
            "/_matrix/client/v3/devices",
            headers={"Authorization": f"Bearer {user.access_token}"},
        )
    response.raise_for_status()
    return {device["device_id"] for device in response.json()["devices"]}


def user_messages(request: dict) -> list[str]:
    return [m["content"] for m in request["messages"] if m["role"] == "user"]


async def test_restart_reuses_the_device_and_answers_no_old_mention(
    synapse: SynapseServer,
    matrix_user: MatrixUserFactory,
    human: HumanFactory,
    scripted_ollama: ScriptedOllama,
    tmp_path: Path,
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    store = tmp_path / "matrix-store"
    scripted_ollama.script(Reply(content="first answer"), Reply(content="second answer"))
    bot_user = await matrix_user("threadwright")
    alice = await human("alice")
    first_config = bot_config(synapse, bot_user, workspace, scripted_ollama.url, store)
    async with matrix_bot(first_config) as bot:
        room_id = await room_with_bot(alice, bot)
        first = await alice.send_text(room_id, "task one", mentions=[bot.user_id])
        await final_reply(alice, bot, room_id, first)
        device = bot.adapter.device_id
    devices_after_first_run = await device_ids(synapse, bot_user)
    assert device in devices_after_first_run

    saved = store / "login.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.stat().st_mode) == 0o700
    state = json.loads(saved.read_text())
    assert state["device_id"] == device and state["next_batch"]

    # Typed while the bot was down: history for the next run, not a task.
    await alice.send_text(room_id, "task while you were away", mentions=[bot.user_id])
    # A new host store, so only the Matrix side can keep old mentions from replaying.
    second_config = bot_config(
        synapse,
        bot_user,
        workspace,
        scripted_ollama.url,
        store,
        store={"path": str(tmp_path / "second-host.db")},
    )
    async with matrix_bot(second_config) as bot:
        assert bot.adapter.device_id == device
        second = await alice.send_text(room_id, "task two", mentions=[bot.user_id])
        _, text = await final_reply(alice, bot, room_id, second)
    assert text.startswith("second answer")
    assert await device_ids(synapse, bot_user) == devices_after_first_run
    assert [user_messages(r) for r in scripted_ollama.chat_requests] == [
        ["task one"],
        ["task two"],
    ]


async def test_access_token_login_uses_the_token_device(
    synapse: SynapseServer,
    matrix_user: MatrixUserFactory,
    scripted_ollama: ScriptedOllama,
    tmp_path: Path,
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    bot_user = await matrix_user("threadwright")
    config = bot_config(synapse, bot_user, workspace, scripted_ollama.url, tmp_path / "mx")
    config.secrets = config.secrets.model_copy(
        update={"matrix_password": None, "matrix_access_token": bot_user.access_token}
    )
    async with matrix_bot(config) as bot:
        assert bot.adapter.device_id == bot_user.device_id
        assert bot.adapter.connected
    assert await device_ids(synapse, bot_user) == {bot_user.device_id}


async def test_wrong_password_fails_start_with_a_clear_error(
    synapse: SynapseServer,
    matrix_user: MatrixUserFactory,
    scripted_ollama: ScriptedOllama,
    tmp_path: Path,
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    bot_user = await matrix_user("threadwright")
    config = bot_config(synapse, bot_user, workspace, scripted_ollama.url, tmp_path / "mx")
    config.secrets = config.secrets.model_copy(update={"matrix_password": "not-the-password"})
    with pytest.raises(MatrixSetupError, match="check MATRIX_PASSWORD"):
        async with matrix_bot(config):
            pass


def test_missing_credentials_name_the_environment_variables(tmp_path: Path) -> None:
    from bot.config import load_config

    empty = Path(__file__).resolve().parents[1] / "bot" / "testing" / "empty_config.yaml"
    config = load_config(empty, env={"MATRIX_USER_ID": "@bot:example.org"})
    with pytest.raises(MatrixSetupError) as raised:
        MatrixCredentials.from_config(config)
    message = str(raised.value)
    assert "MATRIX_HOMESERVER" in message and "MATRIX_PASSWORD or MATRIX_ACCESS_TOKEN" in message
    assert "missing MATRIX_USER_ID" not in message
    config = load_config(
        empty,
        env={
            "MATRIX_HOMESERVER": "https://hs.example.org/",
            "MATRIX_USER_ID": "bot",
            "MATRIX_ACCESS_TOKEN": "t",
        },
    )
    with pytest.raises(MatrixSetupError, match=r"full user id like @bot:example\.org"):
        MatrixCredentials.from_config(config)
