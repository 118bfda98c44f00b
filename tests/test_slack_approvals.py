"""Approvals in a Slack thread: the question with buttons, and who may answer it.

A tiny test plugin makes the policy ask before every ``bash`` call (the real
shell policy lives elsewhere); the answers come as reactions or button clicks
through the emulator, exactly as Slack would deliver them. What the question
shows is read the way Slack renders it (:func:`rendered`): mrkdwn texts are
parsed for links and mentions, rich text elements are literal unless they are
link, user or broadcast elements.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from bot import hookimpl
from bot.testing import Reply, ScriptedOllama
from plugins.slack.threads import thread_key
from tests.emulators.slack_store import SlackMessage
from tests.slack_support import (
    ALICE,
    BOB,
    CAROL,
    CHANNEL,
    SlackBot,
    call,
    slack_bot,
    slack_workspace,
)


class AskBeforeBash:
    """A policy plugin: every shell command needs an approval."""

    @hookimpl
    def before_tool_call(self, call: Any, session: Any) -> Any:
        if call.name == "bash":
            return ("ask", "this test asks before every shell command")
        return None


def tool_results(request: dict[str, Any]) -> list[str]:
    return [str(m["content"]) for m in request["messages"] if m["role"] == "tool"]


def is_question(message: SlackMessage) -> bool:
    return any(b.get("type") == "actions" for b in message.blocks or [])


async def question_in(bot: SlackBot, root: str) -> SlackMessage:
    found = await bot.emu.wait_for(lambda: [m for m in bot.replies(root) if is_question(m)])
    return found[-1]


def mrkdwn_texts(message: SlackMessage) -> list[str]:
    """Every text of the message Slack parses as mrkdwn (the fallback text included)."""
    texts = [message.text]
    for block in message.blocks or []:
        if block.get("type") == "section":
            texts.append(block["text"]["text"])
        if block.get("type") == "context":
            texts.extend(e["text"] for e in block["elements"] if e.get("type") == "mrkdwn")
    return texts


def rich_elements(message: SlackMessage) -> list[dict[str, Any]]:
    return [
        element
        for block in message.blocks or []
        if block.get("type") == "rich_text"
        for part in block["elements"]
        for element in part["elements"]
    ]


def rendered(message: SlackMessage) -> tuple[str, list[str]]:
    """(what a person reads in the question's blocks, the links and mentions Slack makes)."""
    shown: list[str] = []
    active: list[str] = []
    for element in rich_elements(message):
        if element["type"] == "text":
            shown.append(element["text"])
        else:  # link, user, usergroup, broadcast, channel, emoji: Slack makes these live
            active.append(str(element))
    for text in mrkdwn_texts(message):
        # In mrkdwn every <…> is a link, mention or command, and bare URLs get linked.
        active += re.findall(r"<[^>]*>", text) + re.findall(r"https?://\S+", text)
        shown.append(text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))
    return "\n".join(shown), active


def outcome_of(message: SlackMessage) -> str:
    return " ".join(
        e["text"] for b in message.blocks or [] if b["type"] == "context" for e in b["elements"]
    )


async def test_approve_with_a_reaction(scripted_ollama: ScriptedOllama, tmp_path: Path) -> None:
    scripted_ollama.script(
        Reply(tool_calls=[call("bash", command="echo approved-run")]),
        Reply(content="It ran."),
    )
    async with (
        slack_workspace() as emu,
        slack_bot(emu, scripted_ollama, tmp_path, extra_plugins=(AskBeforeBash(),)) as bot,
    ):
        root = await bot.mention("run echo")
        question = await question_in(bot, root)
        shown, _ = rendered(question)
        assert "echo approved-run" in shown and "React" in question.text
        buttons = [
            e["value"]
            for b in question.blocks or []
            if b["type"] == "actions"
            for e in b["elements"]
        ]
        assert buttons == ["approve_once", "approve_thread", "deny"]
        await emu.user_reacts(CHANNEL, ALICE, question.ts, "white_check_mark")
        text = await bot.wait_finished(root)
    assert "approved-run" in tool_results(scripted_ollama.chat_requests[1])[-1]
    assert "It ran." in text
    updated = emu.message(CHANNEL, question.ts)
    assert updated is not None and not is_question(updated)
    assert outcome_of(updated) == f"✅ Allowed once by <@{ALICE}>."


async def test_allow_for_thread_with_a_button(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    scripted_ollama.script(
        Reply(tool_calls=[call("bash", command="echo again")]),
        Reply(tool_calls=[call("bash", command="echo again")]),
        Reply(content="Twice."),
    )
    async with (
        slack_workspace() as emu,
        slack_bot(emu, scripted_ollama, tmp_path, extra_plugins=(AskBeforeBash(),)) as bot,
    ):
        root = await bot.mention("run echo twice")
        question = await question_in(bot, root)
        ack = await emu.click_button(
            ALICE, CHANNEL, question.ts, "threadwright_approve_thread", "approve_thread"
        )
        await bot.wait_finished(root)
    assert ack == {}
    assert [m for m in bot.replies(root) if m.blocks] == [emu.message(CHANNEL, question.ts)]
    assert "again" in tool_results(scripted_ollama.chat_requests[2])[-1]
    updated = emu.message(CHANNEL, question.ts)
    assert updated is not None and "rest of this thread" in outcome_of(updated)


async def test_deny_with_a_reaction_and_with_a_button(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    scripted_ollama.script(
        Reply(tool_calls=[call("bash", command="echo first")]),
        Reply(tool_calls=[call("bash", command="echo second")]),
        Reply(content="Both were denied."),
    )
    async with (
        slack_workspace() as emu,
        slack_bot(emu, scripted_ollama, tmp_path, extra_plugins=(AskBeforeBash(),)) as bot,
    ):
        root = await bot.mention("try twice")
        first = await question_in(bot, root)
        await emu.user_reacts(CHANNEL, ALICE, first.ts, "x")
        second = await bot.emu.wait_for(
            lambda: [m for m in bot.replies(root) if is_question(m) and m.ts != first.ts]
        )
        await emu.click_button(ALICE, CHANNEL, second[0].ts, "threadwright_deny", "deny")
        text = await bot.wait_finished(root)
    denied = [tool_results(r)[-1] for r in scripted_ollama.chat_requests[1:3]]
    assert all("not run" in d and "denied by" in d for d in denied)
    assert "Both were denied." in text and "Stopped" not in text
    assert outcome_of(emu.message(CHANNEL, first.ts)) == f"❌ Denied by <@{ALICE}>."  # type: ignore[arg-type]


async def test_no_answer_before_the_timeout_denies(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    scripted_ollama.script(
        Reply(tool_calls=[call("bash", command="echo never")]),
        Reply(content="Nobody answered."),
    )
    async with (
        slack_workspace() as emu,
        slack_bot(
            emu,
            scripted_ollama,
            tmp_path,
            extra_plugins=(AskBeforeBash(),),
            access={"approval_timeout": 0.5},
        ) as bot,
    ):
        root = await bot.mention("run it")
        question = await question_in(bot, root)
        text = await bot.wait_finished(root)
        # A late click finds nothing to answer: the buttons go away.
        await emu.click_button(
            ALICE, CHANNEL, question.ts, "threadwright_approve_once", "approve_once"
        )
        await emu.wait_for(lambda: not is_question(emu.message(CHANNEL, question.ts)))  # type: ignore[arg-type]
    assert "timed out" in tool_results(scripted_ollama.chat_requests[1])[-1]
    assert "Nobody answered." in text
    assert "No longer waiting" in outcome_of(emu.message(CHANNEL, question.ts))  # type: ignore[arg-type]


async def test_answers_from_non_approvers_are_ignored(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    scripted_ollama.script(
        Reply(tool_calls=[call("bash", command="echo guarded")]),
        Reply(content="Guarded."),
    )
    async with (
        slack_workspace() as emu,
        slack_bot(emu, scripted_ollama, tmp_path, extra_plugins=(AskBeforeBash(),)) as bot,
    ):
        root = await bot.mention("run it")
        question = await question_in(bot, root)
        await emu.click_button(
            BOB, CHANNEL, question.ts, "threadwright_approve_once", "approve_once"
        )
        await emu.user_reacts(CHANNEL, BOB, question.ts, "white_check_mark")
        await emu.wait_for(lambda: emu.ephemerals)
        assert bot.running() and len(scripted_ollama.chat_requests) == 1
        assert is_question(emu.message(CHANNEL, question.ts))  # type: ignore[arg-type]
        await emu.click_button(
            ALICE, CHANNEL, question.ts, "threadwright_approve_once", "approve_once"
        )
        await bot.wait_finished(root)
    [note] = emu.ephemerals
    assert note.user == BOB and "approver" in note.text
    assert "guarded" in tool_results(scripted_ollama.chat_requests[1])[-1]
    assert outcome_of(emu.message(CHANNEL, question.ts)) == f"✅ Allowed once by <@{ALICE}>."  # type: ignore[arg-type]


# A command written to dress the question up: close the code span, then link,
# ping and format; hide its end behind a right-to-left override and a terminal escape.
DRESSED = (
    "echo `done` [click here](https://evil.example) <http://evil.example|docs> "
    "<!here> <@U1> *urgent* \u202eelif.txt\x1b[2K"
)


async def test_a_command_cannot_link_ping_or_hide_in_the_question(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    scripted_ollama.script(
        Reply(tool_calls=[call("bash", command=DRESSED)]), Reply(content="Denied.")
    )
    async with (
        slack_workspace() as emu,
        slack_bot(emu, scripted_ollama, tmp_path, extra_plugins=(AskBeforeBash(),)) as bot,
    ):
        root = await bot.mention("run it")
        question = await question_in(bot, root)
        shown, active = rendered(question)
        literal = [e["text"] for e in rich_elements(question) if e["type"] == "text"]
        await emu.user_reacts(CHANNEL, ALICE, question.ts, "x")
        await bot.wait_finished(root)
    assert active == []  # no link, no mention, no @here anywhere in the question
    # The command is shown literally, whole, with the invisible characters spelled out.
    assert DRESSED.replace("\u202e", "<U+202E>").replace("\x1b", "\\x1b") in literal
    assert "\u202e" not in shown and "\x1b" not in shown
    assert "2 invisible or control characters" in shown


async def test_a_long_command_shows_its_end_and_the_whole_text_as_a_file(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    padded = "echo " + "x" * 4000 + "; rm -f precious.txt"
    scripted_ollama.script(Reply(tool_calls=[call("bash", command=padded)]), Reply(content="ok"))
    async with (
        slack_workspace() as emu,
        slack_bot(emu, scripted_ollama, tmp_path, extra_plugins=(AskBeforeBash(),)) as bot,
    ):
        root = await bot.mention("run it")
        question = await question_in(bot, root)
        shown, _ = rendered(question)
        await emu.user_reacts(CHANNEL, ALICE, question.ts, "x")
        await bot.wait_finished(root)
    assert "; rm -f precious.txt" in shown and "4,025 characters long" in shown
    [snippet] = [f for f in emu.files.values() if f.thread_ts == root]
    assert snippet.content == padded.encode()


async def test_allow_for_thread_does_not_cover_a_longer_command(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    first = "echo " + "a" * 450
    scripted_ollama.script(
        Reply(tool_calls=[call("bash", command=first)]),
        Reply(tool_calls=[call("bash", command=first + "; rm -f precious.txt")]),
        Reply(content="done"),
    )
    async with (
        slack_workspace() as emu,
        slack_bot(emu, scripted_ollama, tmp_path, extra_plugins=(AskBeforeBash(),)) as bot,
    ):
        (bot.workspace / "precious.txt").write_text("keep\n")
        root = await bot.mention("run both")
        question = await question_in(bot, root)
        scope = rendered(question)[0]
        await emu.click_button(
            ALICE, CHANNEL, question.ts, "threadwright_approve_thread", "approve_thread"
        )
        second = await bot.emu.wait_for(
            lambda: [m for m in bot.replies(root) if is_question(m) and m.ts != question.ts]
        )
        await emu.user_reacts(CHANNEL, ALICE, second[0].ts, "x")
        await bot.wait_finished(root)
    assert (bot.workspace / "precious.txt").exists()
    assert "denied by" in tool_results(scripted_ollama.chat_requests[2])[-1]
    assert "exactly this command" in scope  # the question said what 🔁 covers


async def test_only_the_requester_or_an_approver_switches_the_model(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    scripted_ollama.script(Reply(content="Started."))
    async with (
        slack_workspace() as emu,
        slack_bot(emu, scripted_ollama, tmp_path) as bot,
    ):
        root = await bot.mention("look at the code", user=BOB)
        await bot.wait_finished(root)
        session = await bot.host.sessions.get_session(thread_key(emu.team_id, CHANNEL, root))
        assert session is not None
        await bot.mention("/model cloud", user=CAROL, thread_ts=root)
        refusal = await emu.wait_for(lambda: [m for m in bot.replies(root) if "Only" in m.text])
        assert session.routing.wish is None
        await bot.mention("/model cloud", user=BOB, thread_ts=root)
        await emu.wait_for(lambda: session.routing.wish == "cloud")
    assert BOB in refusal[0].text and "approver" in refusal[0].text
