"""Slack journeys end to end: mention, steer, stop, follow up.

The real host with the real slack-bolt (Socket Mode) against the Slack
emulator, and the scripted Ollama server as the model.
"""

from __future__ import annotations

import time
from pathlib import Path

from bot.testing import Reply, ScriptedOllama
from tests.slack_support import (
    ALICE,
    BOB,
    CAROL,
    CHANNEL,
    CURSOR,
    FOOTER,
    call,
    slack_bot,
    slack_workspace,
    stored_sessions,
    user_messages,
)


async def test_mention_gets_reaction_and_streamed_threaded_reply(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    scripted_ollama.script(
        Reply(content="Let me look.", tool_calls=[call("bash", command="echo hi-from-bash")]),
        Reply(content="All **done**: it printed `hi`.", chunk_size=2, chunk_delay=0.05),
    )
    async with slack_workspace() as emu, slack_bot(emu, scripted_ollama, tmp_path) as bot:
        started = time.monotonic()
        root = await bot.mention("say hi and run `echo`")
        await emu.wait_for(lambda: bot.reactions(root).get("eyes"))
        reacted_after = time.monotonic() - started
        text = await bot.wait_finished(root)

    assert reacted_after < 1.0
    [reply] = bot.replies(root)
    assert reply.thread_ts == root
    assert "Let me look." in text
    assert "`bash: echo hi-from-bash` → exit 0 (hi-from-bash)" in text
    assert "All *done*: it printed `hi`." in text  # Markdown bold became mrkdwn
    assert FOOTER.search(text) and "2 steps" in text and CURSOR not in text
    # It grew by edits: the first post, then several updates of the same message.
    updates = [c for c in emu.calls_to("chat.update") if c.args["ts"] == reply.ts]
    assert len(updates) >= 2
    assert reply.edits[0].text != reply.text
    # Slack's "is working on it…" line was set under the thread (and cleared by the reply).
    [status] = emu.calls_to("assistant.threads.setStatus")
    assert status.args["thread_ts"] == root and status.args["status"]
    assert emu.thread_statuses == {}
    # The model got the task without the mention.
    first = scripted_ollama.chat_requests[0]
    assert user_messages(first)[-1] == "say hi and run `echo`"


async def test_steering_from_requester_lands_in_next_request(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    scripted_ollama.script(
        Reply(tool_calls=[call("bash", command="echo step1")], delay=0.8),
        Reply(content="ok, using argparse"),
    )
    async with slack_workspace() as emu, slack_bot(emu, scripted_ollama, tmp_path) as bot:
        root = await bot.mention("add a --verbose flag")
        await scripted_ollama.wait_for_requests(1)
        steer = await bot.say("use argparse, not click", root, user=ALICE)
        await emu.wait_for(lambda: "inbox_tray" in bot.reactions(steer))
        await bot.wait_finished(root)
        added = [
            c.args["name"] for c in emu.calls_to("reactions.add") if c.args["timestamp"] == steer
        ]

    second = scripted_ollama.chat_requests[1]
    assert user_messages(second)[-1] == "[steering from alice] use argparse, not click"
    assert added == ["inbox_tray", "white_check_mark"]  # queued, then applied
    assert "↪ _alice: use argparse, not click_" in bot.text(root)


async def test_only_mentions_steer_for_other_people(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    scripted_ollama.script(
        Reply(tool_calls=[call("bash", command="echo step1")], delay=0.8),
        Reply(content="done"),
    )
    async with slack_workspace() as emu, slack_bot(emu, scripted_ollama, tmp_path) as bot:
        root = await bot.mention("add a flag", user=ALICE)
        await scripted_ollama.wait_for_requests(1)
        chatter = await bot.say("I think click is nicer", root, user=BOB)
        steer = await bot.mention("and add a test", user=CAROL, thread_ts=root)
        await bot.wait_finished(root)

    users = user_messages(scripted_ollama.chat_requests[1])
    assert users[-1] == "[steering from carol] and add a test"
    assert not any("click is nicer" in u for u in users)
    assert bot.reactions(chatter) == {}
    assert set(bot.reactions(steer)) == {"inbox_tray", "white_check_mark"}
    assert len(scripted_ollama.chat_requests) == 2


async def test_stop_reply_stops_promptly_and_says_so(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    scripted_ollama.script(Reply(content="thinking very slowly", hang=True))
    async with slack_workspace() as emu, slack_bot(emu, scripted_ollama, tmp_path) as bot:
        root = await bot.mention("do something slow")
        await emu.wait_for(lambda: bot.replies(root))
        started = time.monotonic()
        await bot.say("stop", root, user=ALICE)
        text = await bot.wait_finished(root)
        elapsed = time.monotonic() - started
    assert elapsed < 2.0
    assert "Stopped by alice." in text
    assert len(scripted_ollama.chat_requests) == 1


async def test_x_reaction_on_the_reply_stops(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    scripted_ollama.script(Reply(content="thinking very slowly", hang=True))
    async with slack_workspace() as emu, slack_bot(emu, scripted_ollama, tmp_path) as bot:
        root = await bot.mention("do something slow")
        [reply] = await emu.wait_for(lambda: bot.replies(root))
        started = time.monotonic()
        await emu.user_reacts(CHANNEL, ALICE, reply.ts, "x")
        text = await bot.wait_finished(root)
        elapsed = time.monotonic() - started
    assert elapsed < 2.0
    assert "Stopped by alice." in text
    [session] = await stored_sessions(tmp_path)
    assert session.status == "cancelled"


async def test_stop_reaction_on_a_message_the_bot_never_indexed(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    scripted_ollama.script(Reply(content="thinking very slowly", hang=True))
    async with slack_workspace() as emu, slack_bot(emu, scripted_ollama, tmp_path) as bot:
        # Channel chatter is dropped unread, so the bot learns this root's thread only
        # when it asks Slack (conversations.replies) about the reaction on it.
        root = await emu.user_posts(CHANNEL, ALICE, "the build is red again")
        await bot.mention("find out why", thread_ts=root)
        await emu.wait_for(lambda: bot.replies(root))
        await emu.user_reacts(CHANNEL, ALICE, root, "x")
        text = await bot.wait_finished(root)
    assert "Stopped by alice." in text
    [lookup] = emu.calls_to("conversations.replies")
    assert lookup.args["ts"] == root


async def test_bystander_cannot_stop(scripted_ollama: ScriptedOllama, tmp_path: Path) -> None:
    scripted_ollama.script(Reply(content="thinking very slowly", hang=True))
    async with slack_workspace() as emu, slack_bot(emu, scripted_ollama, tmp_path) as bot:
        root = await bot.mention("explain")
        [reply] = await emu.wait_for(lambda: bot.replies(root))
        await emu.user_reacts(CHANNEL, BOB, reply.ts, "x")
        await bot.say("stop", root, user=BOB)
        await bot.settled()
        assert bot.running()
        await emu.user_reacts(CHANNEL, ALICE, reply.ts, "x")
        text = await bot.wait_finished(root)
    assert "Stopped by alice." in text


async def test_follow_up_after_the_end_continues_the_session(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    scripted_ollama.script(Reply(content="The answer is 42."), Reply(content="Because 6 x 7."))
    async with slack_workspace() as emu, slack_bot(emu, scripted_ollama, tmp_path) as bot:
        root = await bot.mention("what is the answer?")
        await bot.wait_finished(root)
        follow = await bot.say("and why?", root, user=ALICE)
        await emu.wait_for(lambda: bot.reactions(follow).get("eyes"))
        await bot.wait_finished(root, count=2)

    second = scripted_ollama.chat_requests[1]
    contents = [(m["role"], m["content"]) for m in second["messages"] if m["role"] != "system"]
    assert contents == [
        ("user", "what is the answer?"),
        ("assistant", "The answer is 42."),
        ("user", "and why?"),
    ]
    first_reply, second_reply = bot.replies(root)
    assert "The answer is 42." in first_reply.text and "Because 6 x 7." in second_reply.text
    [session] = await stored_sessions(tmp_path)
    assert session.thread_key == f"slack|T0001/{CHANNEL}|{root}"
