"""Running the Slack adapter: `threadwright run` as a process, HTTP mode, bad set-ups."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from bot.config import Secrets
from bot.host import Host
from bot.plugins import make_plugin_manager
from bot.testing import Reply, ScriptedOllama
from plugins.slack.adapter import SlackAdapter, SlackSetupError
from plugins.slack.connection import HttpConnection
from tests.slack_support import (
    ALICE,
    CHANNEL,
    FOOTER,
    SIGNING_SECRET,
    slack_bot,
    slack_config,
    slack_workspace,
    user_messages,
)

REPO = Path(__file__).resolve().parent.parent


async def test_threadwright_run_serves_slack_until_sigterm(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    scripted_ollama.script(Reply(content="Hello from a real process."))
    (tmp_path / "ws").mkdir()
    (tmp_path / "agent_config.yaml").write_text(
        "adapters: [slack]\n"
        "access: {allowed_users: [U1], approvers: [U1]}\n"
        "workspace: {root: ./ws}\n"
        "store: {path: ./state/threadwright.db}\n"
        "routing: {local_model: 'qwen3:4b'}\n"
        "slack: {edit_interval: 0.2}\n"
    )
    async with slack_workspace() as emu:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "THREADWRIGHT"))},
            "SLACK_BOT_TOKEN": emu.bot_token,
            "SLACK_APP_TOKEN": emu.app_token,
            "SLACK_API_URL": emu.api_url,
            "OLLAMA_HOST": scripted_ollama.url,
            "PYTHONPATH": str(REPO),
            "THREADWRIGHT_PLUGINS": "",
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "run",
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await emu.wait_for(lambda: emu.open_connections == 1, timeout=30)
            root = await emu.user_posts(CHANNEL, ALICE, f"<@{emu.bot_user_id}> say hello")
            [reply] = await emu.wait_for(
                lambda: [m for m in emu.bot_replies(CHANNEL, root) if FOOTER.search(m.text)],
                timeout=15,
            )
            process.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(process.wait(), 20)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        assert process.stderr is not None
        log = (await process.stderr.read()).decode()
        await emu.wait_for(lambda: emu.open_connections == 0)
    assert code == 0, log[-2000:]
    assert "Hello from a real process." in reply.text
    assert user_messages(scripted_ollama.chat_requests[0])[-1] == "say hello"
    assert "adapter slack started" in log
    assert emu.bot_token not in log


async def test_http_mode_with_signature_verification(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    scripted_ollama.script(Reply(content="Over HTTP."))
    async with (
        slack_workspace() as emu,
        slack_bot(emu, scripted_ollama, tmp_path, slack={"mode": "http", "http_port": 0}) as bot,
    ):
        connection = bot.adapter.connection
        assert isinstance(connection, HttpConnection) and bot.adapter.connected
        emu.deliver_http(connection.url, signing_secret=SIGNING_SECRET)
        assert await emu.url_verification() is True
        root = await bot.mention("over http please")
        text = await bot.wait_finished(root)
        ack = await emu.slash_command("/threadwright", "status", user=ALICE, channel=CHANNEL)
    assert "Over HTTP." in text
    assert "Active sessions" in ack["text"]
    assert emu.envelopes == []
    assert {a.status for a in emu.http_attempts} == {200}


async def test_http_mode_rejects_forged_requests(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    async with (
        slack_workspace() as emu,
        slack_bot(emu, scripted_ollama, tmp_path, slack={"mode": "http", "http_port": 0}) as bot,
    ):
        connection = bot.adapter.connection
        assert isinstance(connection, HttpConnection)
        emu.deliver_http(connection.url, signing_secret="not-the-secret")
        await bot.mention("forged")
        await emu.wait_for(lambda: len(emu.http_attempts) == 8)  # two events, each retried
    assert {a.status for a in emu.http_attempts} == {401}
    assert scripted_ollama.chat_requests == []


@pytest.mark.parametrize(
    ("mode", "secrets", "named"),
    [
        ("socket", {"slack_app_token": "xapp-1"}, "SLACK_BOT_TOKEN"),
        ("socket", {"slack_bot_token": "xoxb-1"}, "SLACK_APP_TOKEN"),
        ("http", {"slack_bot_token": "xoxb-1"}, "SLACK_SIGNING_SECRET"),
    ],
)
async def test_missing_tokens_are_named(
    scripted_ollama: ScriptedOllama,
    tmp_path: Path,
    mode: str,
    secrets: dict[str, str],
    named: str,
) -> None:
    async with slack_workspace() as emu:
        config = slack_config(tmp_path, scripted_ollama.url, emu, slack={"mode": mode})
        config.secrets = Secrets(**secrets)
        async with Host(config, plugins=make_plugin_manager(load_entrypoints=False)) as host:
            adapter = host.create_adapter("slack")
            with pytest.raises(SlackSetupError, match=named):
                await adapter.start(host.sessions)
            assert emu.calls == []


async def test_refused_tokens_fail_start_clearly(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    async with slack_workspace() as emu:
        config = slack_config(tmp_path, scripted_ollama.url, emu)
        plugins = make_plugin_manager(load_entrypoints=False)
        config.secrets = Secrets(slack_bot_token="xoxb-wrong", slack_app_token=emu.app_token)
        async with Host(config, plugins=plugins) as host:
            with pytest.raises(SlackSetupError, match=r"SLACK_BOT_TOKEN .*invalid_auth"):
                await SlackAdapter(config).start(host.sessions)
        config.secrets = Secrets(slack_bot_token=emu.bot_token, slack_app_token="xapp-wrong")
        async with Host(config, plugins=plugins) as host:
            with pytest.raises(SlackSetupError, match=r"SLACK_APP_TOKEN .*invalid_auth"):
                await SlackAdapter(config).start(host.sessions)
    assert emu.connection_count == 0
