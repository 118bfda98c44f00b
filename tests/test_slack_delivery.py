"""What reaches the host from Slack, exactly once: duplicates, strangers, bots, reconnects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.testing import Reply, ScriptedOllama
from tests.emulators.slack_payloads import message_event
from tests.emulators.slack_store import SlackMessage
from tests.slack_support import (
    ALICE,
    CHANNEL,
    MALLORY,
    call,
    settled,
    slack_bot,
    slack_workspace,
    stored_sessions,
    user_messages,
)


async def test_retries_and_double_delivery_make_one_session(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    scripted_ollama.script(Reply(content="done once"))
    async with slack_workspace() as emu, slack_bot(emu, scripted_ollama, tmp_path) as bot:
        emu.ack_timeout = 0.0  # every envelope is redelivered at once, before Bolt acks it
        root = await bot.mention("do it once")

        def retried(kind: str) -> bool:
            return any(
                e.envelope["retry_attempt"] >= 1 and e.envelope["payload"]["event"]["type"] == kind
                for e in emu.envelopes
            )

        await emu.wait_for(lambda: retried("app_mention") and retried("message"))
        emu.ack_timeout = 3.0
        await bot.wait_finished(root)
        # A late retry of an event that was handled long ago changes nothing either.
        mention = next(
            e.envelope["payload"]
            for e in emu.envelopes
            if e.envelope["payload"]["event"]["type"] == "app_mention"
        )
        emu.hub.deliver("events_api", mention, accepts_response_payload=False)
        await settled(bot)

    mention_deliveries = [
        e for e in emu.envelopes if e.envelope["payload"]["event"].get("ts") == root
    ]
    assert len(mention_deliveries) >= 4  # app_mention + message, each retried
    assert len(scripted_ollama.chat_requests) == 1
    assert len(bot.replies(root)) == 1
    assert len(await stored_sessions(tmp_path)) == 1
    assert emu.reactions(CHANNEL, root) == {"eyes": ["UBOT"]}


async def test_stranger_gets_one_polite_refusal_and_no_model_call(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    async with slack_workspace() as emu, slack_bot(emu, scripted_ollama, tmp_path) as bot:
        first = await bot.mention("rm -rf everything", user=MALLORY)
        [refusal] = await emu.wait_for(lambda: bot.replies(first))
        second = await bot.mention("pretty please", user=MALLORY)
        await settled(bot)
        # Unmentioned chatter from a stranger is not even answered.
        await bot.say("hello?", first, user=MALLORY)
        await settled(bot)
    assert "allow-list" in refusal.text and refusal.thread_ts == first
    assert bot.replies(second) == []
    assert len(bot.replies(first)) == 1
    assert scripted_ollama.chat_requests == []
    assert await stored_sessions(tmp_path) == []


async def test_bot_messages_and_edits_never_start_sessions(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    scripted_ollama.script(Reply(content="only the human"))
    async with slack_workspace() as emu, slack_bot(emu, scripted_ollama, tmp_path) as bot:
        client = bot.adapter.client
        own = await client.chat_postMessage(channel=CHANNEL, text="<@UBOT> talk to yourself")
        await client.chat_postMessage(
            channel=CHANNEL, thread_ts=own["ts"], text="<@UBOT> and again", username="helper"
        )
        other_bot = SlackMessage(
            channel=CHANNEL,
            ts=emu.store.next_ts(),
            text="<@UBOT> I am another bot",
            bot_id="BOTHER",
            subtype="bot_message",
            username="ci-bot",
        )
        emu.store.add_message(other_bot)
        emu.deliver_event(message_event(emu.store, other_bot))
        ts = await emu.user_posts(CHANNEL, ALICE, "nothing for the bot")
        await emu.user_edits(CHANNEL, ALICE, ts, "<@UBOT> now it is for the bot")
        await settled(bot)
        assert scripted_ollama.chat_requests == []
        # The positive control: a person's mention does start one.
        root = await bot.mention("hello")
        await bot.wait_finished(root)
    assert len(scripted_ollama.chat_requests) == 1
    assert user_messages(scripted_ollama.chat_requests[0])[-1] == "hello"


async def test_socket_mode_disconnect_mid_session_is_survived(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    scripted_ollama.script(
        Reply(
            content="step one is long " * 8,
            tool_calls=[call("bash", command="echo one")],
            chunk_size=4,
            chunk_delay=0.03,
        ),
        Reply(content="finished after the reconnect"),
    )
    async with slack_workspace() as emu, slack_bot(emu, scripted_ollama, tmp_path) as bot:
        root = await bot.mention("a long task")
        await emu.wait_for(lambda: bot.replies(root))
        assert bot.adapter.connected
        await emu.disconnect_all(reason="refresh_requested")
        await emu.wait_for(lambda: emu.connection_count == 2 and emu.open_connections == 1)
        steer = await bot.say("also print two", root, user=ALICE)
        text = await bot.wait_finished(root)
        assert bot.adapter.connected
    assert not bot.adapter.connected
    assert "finished after the reconnect" in text
    assert "step one is long " * 8 in " ".join(text.split("\n"))
    second = scripted_ollama.chat_requests[1]
    assert user_messages(second)[-1] == "[steering from alice] also print two"
    assert set(bot.reactions(steer)) == {"inbox_tray", "white_check_mark"}
    new_connection = max(e.connection_id for e in emu.envelopes)
    assert new_connection == 2


async def test_unused_event_types_are_acked(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    async with slack_workspace() as emu, slack_bot(emu, scripted_ollama, tmp_path) as bot:
        event: dict[str, Any] = {
            "type": "member_joined_channel",
            "user": "U7",
            "channel": CHANNEL,
            "event_ts": emu.store.next_ts(),
        }
        emu.deliver_event(event)
        removed: dict[str, Any] = {
            "type": "reaction_removed",
            "user": ALICE,
            "reaction": "x",
            "item": {"type": "message", "channel": CHANNEL, "ts": "1.000001"},
            "event_ts": emu.store.next_ts(),
        }
        emu.deliver_event(removed)
        await emu.wait_for(lambda: len(emu.acks) == 2)
        await settled(bot)
    assert {a.event_id for a in emu.acks} == {
        e.envelope["payload"]["event_id"] for e in emu.envelopes
    }
    assert all(e.envelope["retry_attempt"] == 0 for e in emu.envelopes)
