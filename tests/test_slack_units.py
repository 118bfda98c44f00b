"""The Slack adapter's pure parts: formatting, payload translation, slash resolution,
and the transport against the emulator's Web API."""

from __future__ import annotations

from pathlib import Path

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.directives import DirectiveLoader
from bot.events import ChatEventKind
from bot.streaming import ChunkTooLong, RateLimited
from plugins.slack.commands import resolve, slash_name
from plugins.slack.formatting import markdown_to_mrkdwn, slack_to_plain
from plugins.slack.inbound import BotIdentity, message_event, reaction_event, reaction_name
from plugins.slack.transport import MIN_MAX_CHARS, SLACK_TEXT_LIMIT, SlackTransport
from tests.slack_support import CHANNEL, slack_workspace

BOT = BotIdentity(user_id="UBOT", bot_id="BBOT", team_id="T1")
BODY = {"team_id": "T1", "event_id": "Ev1"}


# --- formatting ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("**bold** and *italic*", "*bold* and _italic_"),
        ("# Heading", "*Heading*"),
        ("[docs](https://x.io/a?b=1&c=2)", "<https://x.io/a?b=1&amp;c=2|docs>"),
        ("- one\n- two", "• one\n• two"),
        ("`a**b**` stays", "`a**b**` stays"),
        ("> quoted a<b", "> quoted a&lt;b"),
        ("edit __init__.py", "edit __init__.py"),
        (
            "<!here> <@U1> <!channel> <#C1>",
            "&lt;!here&gt; &lt;@U1&gt; &lt;!channel&gt; &lt;#C1&gt;",
        ),
        ("[x](!here) [y](@U1)", "&lt;!here|x&gt; &lt;@U1|y&gt;"),
        ("```python\nif a < b:\n    **x**\n```", "```\nif a &lt; b:\n    **x**\n```"),
        ("text\n```\nunclosed <@U1>", "text\n```\nunclosed &lt;@U1&gt;"),
    ],
)
def test_markdown_to_mrkdwn(markdown: str, mrkdwn: str) -> None:
    assert markdown_to_mrkdwn(markdown) == mrkdwn


def test_slack_text_to_plain() -> None:
    text = "<@UBOT> fix &lt;T&gt; &amp; see <https://a.io|a.io> <https://b.io|the docs> <#C9|dev>"
    assert (
        slack_to_plain(text, "UBOT") == "fix <T> & see https://a.io [the docs](https://b.io) #dev"
    )
    assert slack_to_plain("please <@UBOT|tw> run `ls`", "UBOT") == "please run `ls`"
    assert slack_to_plain("ask <@U2> and <!here>", "UBOT") == "ask <@U2> and @here"


# --- translation --------------------------------------------------------------


def test_message_events_are_translated_or_dropped() -> None:
    mention = {
        "type": "app_mention",
        "user": "U1",
        "text": "<@UBOT> go",
        "ts": "1.1",
        "channel": "C1",
    }
    event = message_event(BODY, mention, BOT)
    assert event is not None
    assert (event.thread.platform, event.thread.room, event.thread.thread) == (
        "slack",
        "T1/C1",
        "1.1",
    )
    assert (event.text, event.mentions_bot, event.message_id, event.event_id) == (
        "go",
        True,
        "1.1",
        "Ev1",
    )
    reply = {
        "type": "message",
        "user": "U1",
        "text": "more",
        "ts": "1.2",
        "thread_ts": "1.1",
        "channel": "C1",
    }
    steer = message_event(BODY, reply, BOT)
    assert steer is not None and steer.thread.thread == "1.1" and not steer.mentions_bot
    dm = {
        "type": "message",
        "user": "U1",
        "text": "hi",
        "ts": "2.1",
        "channel": "D1",
        "channel_type": "im",
    }
    assert message_event(BODY, dm, BOT).mentions_bot  # type: ignore[union-attr]
    shared = {**reply, "subtype": "file_share"}
    assert message_event(BODY, shared, BOT) is not None
    dropped = [
        {"type": "message", "user": "U1", "text": "chatter", "ts": "3.1", "channel": "C1"},
        {**mention, "bot_id": "BOTHER"},
        {**mention, "user": "UBOT"},
        {**mention, "subtype": "bot_message"},
        {**mention, "subtype": "message_changed"},
        {**mention, "subtype": "message_deleted"},
        {**mention, "subtype": "channel_join"},
    ]
    assert [message_event(BODY, e, BOT) for e in dropped] == [None] * len(dropped)


def test_reactions_are_named_and_threaded() -> None:
    assert reaction_name(":+1::skin-tone-3:") == "+1"
    raw = {
        "type": "reaction_added",
        "user": "U1",
        "reaction": "x",
        "item": {"type": "message", "channel": "C1", "ts": "5.5"},
    }
    event = reaction_event(BODY, raw, BOT, root_ts="5.0")
    assert event is not None and event.kind is ChatEventKind.REACTION
    assert (event.reaction, event.target_message_id, event.thread.thread) == ("x", "5.5", "5.0")
    assert reaction_event(BODY, {**raw, "user": "UBOT"}, BOT, root_ts="5.0") is None


def test_slash_commands_resolve(tmp_path: Path) -> None:
    commands = tmp_path / ".agent" / "commands" / "git"
    commands.mkdir(parents=True)
    (commands / "commit.md").write_text("Commit $ARGUMENTS\n")
    directives = DirectiveLoader(tmp_path).load()
    assert slash_name("git:commit") == "git-commit" and slash_name("help") is None
    assert resolve("/refactor", " a.py ", directives).text == "a.py"
    assert resolve("/git-commit", "x", directives).name == "git:commit"
    assert resolve("/threadwright", "Status", directives).kind == "control"
    assert resolve("/threadwright", "/refactor a.py", directives).name == "refactor"
    task = resolve("/threadwright", "/tmp is full", directives)
    assert (task.kind, task.text) == ("task", "/tmp is full")
    assert resolve("/stop", "", directives).kind == "control"
    assert resolve("/nope", "", directives).kind == "unknown"


# --- transport ----------------------------------------------------------------


async def test_transport_posts_edits_and_reports_rate_limits() -> None:
    async with slack_workspace() as emu:
        root = await emu.user_posts(CHANNEL, "U1", "task")
        posted: list[str] = []
        client = AsyncWebClient(token=emu.bot_token, base_url=emu.api_url)
        transport = SlackTransport(client, CHANNEL, root, on_posted=posted.append)
        ts = await transport.post("**hi** <!here>")
        await transport.edit(ts, "**hi** there")
        emu.rate_limit("chat.update", times=1, retry_after=7)
        with pytest.raises(RateLimited) as limited:
            await transport.edit(ts, "never shown")
        assert limited.value.retry_after == 7
        message = emu.message(CHANNEL, ts)
        assert message is not None and message.thread_ts == root
        assert [e.text for e in message.edits] == ["*hi* &lt;!here&gt;"]
        assert message.text == "*hi* there" and posted == [ts]

        with pytest.raises(ChunkTooLong):
            await transport.edit(ts, "<" * 3000)
        assert MIN_MAX_CHARS <= transport.max_chars < 3000
        while True:  # the streamer keeps splitting smaller until a chunk fits
            try:
                await transport.edit(ts, "<" * transport.max_chars)
                break
            except ChunkTooLong:
                continue
        assert len(emu.message(CHANNEL, ts).text) <= SLACK_TEXT_LIMIT  # type: ignore[union-attr]
