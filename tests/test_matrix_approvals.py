"""Approvals in a Matrix thread: the bot asks, an approver answers with a reaction.

A throwaway plugin makes every ``bash`` call need approval. The question is a
thread reply offering ✅ / 🔁 / ❌; only reactions of ``access.approvers``
count (the requester and other allowed users are ignored), and no answer
before ``access.approval_timeout`` means deny. The model is told the outcome.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from bot import hookimpl
from bot.testing import Reply, ScriptedOllama
from tests.matrix_bot import bot_config, final_reply, matrix_bot, reactions_on, room_with_bot
from tests.matrix_harness.fixtures import HumanFactory, MatrixUserFactory
from tests.matrix_harness.human import EventDict, HumanClient
from tests.matrix_harness.synapse import SynapseServer

MARKER = "approved-run-7f3a"


class AskBeforeBash:
    @hookimpl
    def before_tool_call(self, call: Any, session: Any) -> Any:
        return ("ask", "the tests want a person to decide") if call.name == "bash" else None


def tool_messages(request: dict[str, Any]) -> list[str]:
    return [m["content"] for m in request["messages"] if m["role"] == "tool"]


def is_question(bot_id: str, room_id: str) -> Any:
    def check(event: EventDict) -> bool:
        return (
            event.get("room_id") == room_id
            and event.get("sender") == bot_id
            and event.get("content", {}).get("body", "").startswith("🔐")
        )

    return check


async def _approval_journey(
    synapse: SynapseServer,
    matrix_user: MatrixUserFactory,
    human: HumanFactory,
    scripted_ollama: ScriptedOllama,
    tmp_path: Path,
    answers: list[tuple[str, str]],
    command: str = f"echo {MARKER}",
    questions: list[EventDict] | None = None,
    **config_overrides: Any,
) -> tuple[str, list[str], list[str]]:
    """Run one approval; ``answers`` are (who, emoji) reactions on the question, in order.

    Returns the final reply text, the tool messages of the second model request
    and the bot's own reactions on the question; the question event is appended
    to ``questions`` when given.
    """
    workspace = tmp_path / "ws"
    workspace.mkdir()
    scripted_ollama.script(
        Reply(tool_calls=[{"name": "bash", "arguments": {"command": command}}]),
        Reply(content="finished"),
    )
    bot_user = await matrix_user("threadwright")
    config = bot_config(
        synapse, bot_user, workspace, scripted_ollama.url, tmp_path / "mx", **config_overrides
    )
    people: dict[str, HumanClient] = {
        "alice": await human("alice"),
        "bob": await human("bob"),
        "carol": await human("carol"),
    }
    alice = people["alice"]
    async with matrix_bot(config, extra_plugins=(AskBeforeBash(),)) as bot:
        room_id = await room_with_bot(
            alice, bot, invite=(people["bob"].user_id, people["carol"].user_id)
        )
        for name in ("bob", "carol"):
            await people[name].join(room_id)
        mention = await alice.send_text(room_id, "clean the build", mentions=[bot.user_id])
        question = await alice.wait_for(is_question(bot.user_id, room_id), timeout=15)
        if questions is not None:
            questions.append(question)
        for who, emoji in answers:
            await people[who].wait_for(lambda e: e["event_id"] == question["event_id"])
            await people[who].react(room_id, question["event_id"], emoji)
        _, text = await final_reply(alice, bot, room_id, mention, within=30)
        offered = reactions_on(alice, bot.user_id, question["event_id"])
    assert "clean the build" in str(scripted_ollama.chat_requests[0])
    return text, tool_messages(scripted_ollama.chat_requests[1]), offered


async def test_an_approver_reaction_lets_the_command_run(
    synapse: SynapseServer,
    matrix_user: MatrixUserFactory,
    human: HumanFactory,
    scripted_ollama: ScriptedOllama,
    tmp_path: Path,
) -> None:
    text, tools, offered = await _approval_journey(
        synapse, matrix_user, human, scripted_ollama, tmp_path, [("carol", "✅")]
    )
    assert offered == ["✅", "🔁", "❌"]
    assert len(tools) == 1 and MARKER in tools[0]
    assert f"✅ `bash: echo {MARKER}` → exit 0" in text


async def test_bystanders_cannot_approve_and_an_approver_denies(
    synapse: SynapseServer,
    matrix_user: MatrixUserFactory,
    human: HumanFactory,
    scripted_ollama: ScriptedOllama,
    tmp_path: Path,
) -> None:
    # bob is allowed but no approver; alice asked but requesters may not approve.
    text, tools, _ = await _approval_journey(
        synapse,
        matrix_user,
        human,
        scripted_ollama,
        tmp_path,
        [("bob", "✅"), ("alice", "✅"), ("carol", "❌")],
    )
    assert len(tools) == 1
    assert "not run: denied by @carol-" in tools[0]
    assert MARKER not in tools[0].replace(f"echo {MARKER}", "")
    assert f"❌ `bash: echo {MARKER}`" in text


async def test_no_answer_before_the_timeout_means_deny(
    synapse: SynapseServer,
    matrix_user: MatrixUserFactory,
    human: HumanFactory,
    scripted_ollama: ScriptedOllama,
    tmp_path: Path,
) -> None:
    text, tools, _ = await _approval_journey(
        synapse,
        matrix_user,
        human,
        scripted_ollama,
        tmp_path,
        [("bob", "✅")],
        access={"approval_timeout": 1.5},
    )
    assert len(tools) == 1 and "no approval within 1 s (timed out)" in tools[0]
    assert "finished" in text


async def test_a_command_cannot_link_or_hide_in_the_question(
    synapse: SynapseServer,
    matrix_user: MatrixUserFactory,
    human: HumanFactory,
    scripted_ollama: ScriptedOllama,
    tmp_path: Path,
) -> None:
    # Close the code span, then link and pill; reverse the rest and clear the line.
    dressed = (
        "echo x` [click](https://evil.example) [@carol](https://matrix.to/#/@carol:hs) `y "
        "</code></pre><b>safe</b> \u202eelif.txt\x1b[2K"
    )
    questions: list[EventDict] = []
    await _approval_journey(
        synapse,
        matrix_user,
        human,
        scripted_ollama,
        tmp_path,
        [("carol", "❌")],
        command=dressed,
        questions=questions,
    )
    content = questions[0]["content"]
    html = content["formatted_body"]
    assert "<a" not in html and "<b>" not in html and content["m.mentions"] == {}
    shown = dressed.replace("\u202e", "<U+202E>").replace("\x1b", "\\x1b")
    assert f"<pre><code>{escape(shown)}</code></pre>" in html
    assert shown in content["body"] and "\u202e" not in content["body"]
