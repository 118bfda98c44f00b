"""Approvals in a Slack thread: the question with buttons, and who may answer it.

A tiny test plugin makes the policy ask before every ``bash`` call (the real
shell policy lives elsewhere); the answers come as reactions or button clicks
through the emulator, exactly as Slack would deliver them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot import hookimpl
from bot.testing import Reply, ScriptedOllama
from tests.emulators.slack_store import SlackMessage
from tests.slack_support import (
    ALICE,
    BOB,
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
        assert "echo approved-run" in question.text and "React" in question.text
        buttons = [e["value"] for b in question.blocks or [] for e in b.get("elements", [])]
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
