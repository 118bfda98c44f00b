"""Slash commands in Slack, commands typed in threads, and the app manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.cli import main as cli_main
from bot.testing import Reply, ScriptedOllama
from tests.slack_support import (
    ALICE,
    CHANNEL,
    MALLORY,
    slack_bot,
    slack_workspace,
    user_messages,
)


async def test_slash_command_acks_fast_posts_a_root_and_runs_in_its_thread(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    scripted_ollama.script(Reply(content="Refactored.", chunk_size=2, chunk_delay=0.02))
    async with slack_workspace() as emu, slack_bot(emu, scripted_ollama, tmp_path) as bot:
        ack = await emu.slash_command("/refactor", "src/utils.py", user=ALICE, channel=CHANNEL)
        [root] = await emu.wait_for(lambda: emu.store.history(CHANNEL))
        text = await bot.wait_finished(root.ts)
    [ack_record] = [a for a in emu.acks if a.kind == "slash_commands"]
    assert ack == {} and ack_record.latency < 3.0
    assert root.bot_id == emu.bot_id
    assert f"<@{ALICE}>" in root.text and "/refactor src/utils.py" in root.text
    assert "Refactored." in text
    assert emu.reactions(CHANNEL, root.ts) == {"eyes": ["UBOT"]}
    first = user_messages(scripted_ollama.chat_requests[0])[-1]
    assert "# Refactor directive" in first and "Target and goal: src/utils.py" in first


async def test_command_mentioned_inside_a_thread(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    scripted_ollama.script(Reply(content="Refactored in place."))
    async with slack_workspace() as emu, slack_bot(emu, scripted_ollama, tmp_path) as bot:
        root = await emu.user_posts(CHANNEL, ALICE, "utils.py has grown too big")
        ask = await bot.mention("/refactor src/utils.py split it up", thread_ts=root)
        text = await bot.wait_finished(root)
    assert bot.reactions(ask) == {"eyes": ["UBOT"]}
    assert "Refactored in place." in text
    first = user_messages(scripted_ollama.chat_requests[0])[-1]
    assert "Target and goal: src/utils.py split it up" in first


async def test_app_command_takes_a_task_and_control_words(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    scripted_ollama.script(Reply(content="Flag added."))
    async with slack_workspace() as emu, slack_bot(emu, scripted_ollama, tmp_path) as bot:
        help_ack = await emu.slash_command("/threadwright", "help", user=ALICE, channel=CHANNEL)
        status_ack = await emu.slash_command("/threadwright", "status", user=ALICE, channel=CHANNEL)
        stop_ack = await emu.slash_command("/threadwright", "stop", user=ALICE, channel=CHANNEL)
        unknown = await emu.slash_command("/nope", "x", user=ALICE, channel=CHANNEL)
        assert emu.store.history(CHANNEL) == []
        await emu.slash_command(
            "/threadwright", "add a --verbose flag", user=ALICE, channel=CHANNEL
        )
        [root] = await emu.wait_for(lambda: emu.store.history(CHANNEL))
        await bot.wait_finished(root.ts)
    assert "`/refactor" in help_ack["text"] and "*Commands*" in help_ack["text"]
    assert "Active sessions: 0" in status_ack["text"]
    assert "reply `stop`" in stop_ack["text"]
    assert "Unknown command `/nope`" in unknown["text"]
    assert user_messages(scripted_ollama.chat_requests[0])[-1] == "add a --verbose flag"


async def test_strangers_slash_command_is_refused_privately(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    async with slack_workspace() as emu, slack_bot(emu, scripted_ollama, tmp_path):
        ack = await emu.slash_command("/refactor", "src/a.py", user=MALLORY, channel=CHANNEL)
    assert "allow-list" in ack["text"]
    assert emu.store.history(CHANNEL) == []
    assert scripted_ollama.chat_requests == []


def test_manifest_lists_every_directive_as_a_slash_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    commands = tmp_path / ".agent" / "commands"
    (commands / "git").mkdir(parents=True)
    (commands / "deploy.md").write_text(
        "---\ndescription: Ship it\nargument-hint: <env>\n---\nDeploy to $ARGUMENTS\n"
    )
    (commands / "git" / "commit.md").write_text("Write a commit message\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("THREADWRIGHT_CONFIG", raising=False)
    assert cli_main(["slack-manifest", "--json"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    slash = {c["command"]: c for c in manifest["features"]["slash_commands"]}
    assert {"/threadwright", "/deploy", "/git-commit", "/refactor"} <= set(slash)
    assert slash["/deploy"]["description"] == "Ship it"
    assert slash["/deploy"]["usage_hint"] == "<env>"
    assert manifest["settings"]["socket_mode_enabled"] is True
    assert "reaction_added" in manifest["settings"]["event_subscriptions"]["bot_events"]
    assert {"app_mentions:read", "chat:write", "commands", "reactions:write"} <= set(
        manifest["oauth_config"]["scopes"]["bot"]
    )

    url = "https://bot.example.com/slack/events"
    assert cli_main(["slack-manifest", "--request-url", url]) == 0
    import yaml

    http = yaml.safe_load(capsys.readouterr().out)
    assert http["settings"]["socket_mode_enabled"] is False
    assert http["settings"]["event_subscriptions"]["request_url"] == url
    assert all(c["url"] == url for c in http["features"]["slash_commands"])
