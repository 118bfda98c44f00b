"""Matrix journeys end to end: a real Synapse, the bot on matrix-nio, a scripted model.

Each test registers fresh users (the bot included) on the session's Synapse,
starts a real host with the ``matrix`` adapter, and plays a person with a nio
client. Absence ("this did not start a session") is proven with a barrier: a
later event the bot must answer, after which the model's request log is final.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from bot.testing import Reply, ScriptedOllama
from plugins.matrix.transport import MAX_MESSAGE_CHARS
from tests.matrix_bot import (
    bot_config,
    final_reply,
    is_answer,
    matrix_bot,
    reactions_on,
    room_with_bot,
)
from tests.matrix_harness.fixtures import HumanFactory, MatrixUserFactory
from tests.matrix_harness.human import EventDict, HumanClient, relation
from tests.matrix_harness.synapse import SynapseServer


def bash(command: str) -> dict[str, Any]:
    return {"name": "bash", "arguments": {"command": command}}


def user_messages(request: dict[str, Any]) -> list[str]:
    return [m["content"] for m in request["messages"] if m["role"] == "user"]


def workspace_in(tmp_path: Path) -> Path:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    return workspace


async def test_invites_from_allowed_users_are_accepted_and_others_declined(
    synapse: SynapseServer,
    matrix_user: MatrixUserFactory,
    human: HumanFactory,
    scripted_ollama: ScriptedOllama,
    tmp_path: Path,
) -> None:
    bot_user = await matrix_user("threadwright")
    config = bot_config(
        synapse, bot_user, workspace_in(tmp_path), scripted_ollama.url, tmp_path / "mx"
    )
    alice = await human("alice")
    mallory = await human("mallory")
    async with matrix_bot(config) as bot:
        allowed_room = await alice.create_room(name="ok", invite=[bot.user_id])
        refused_room = await mallory.create_room(name="no", invite=[bot.user_id])
        await alice.wait_for_join(allowed_room, bot.user_id, timeout=15)
        declined = await mallory.wait_for(
            lambda e: (
                e.get("room_id") == refused_room
                and e.get("type") == "m.room.member"
                and e.get("state_key") == bot.user_id
                and e["content"].get("membership") == "leave"
            ),
            timeout=15,
        )
    assert declined["sender"] == bot.user_id
    assert not any(
        e.get("room_id") == refused_room
        and e.get("state_key") == bot.user_id
        and e["content"].get("membership") == "join"
        for e in mallory.events
    )


async def test_mention_gets_a_threaded_streamed_reply_with_tools_footer_and_typing(
    synapse: SynapseServer,
    matrix_user: MatrixUserFactory,
    human: HumanFactory,
    scripted_ollama: ScriptedOllama,
    tmp_path: Path,
) -> None:
    scripted_ollama.script(
        Reply(content="Let me check.", tool_calls=[bash("echo hello-matrix")], delay=0.3),
        Reply(
            content="All **done**: the tests pass.\n\n<b>raw</b>", chunk_size=3, chunk_delay=0.03
        ),
    )
    bot_user = await matrix_user("threadwright")
    config = bot_config(
        synapse, bot_user, workspace_in(tmp_path), scripted_ollama.url, tmp_path / "mx"
    )
    alice = await human("alice")
    async with matrix_bot(config) as bot:
        room_id = await room_with_bot(alice, bot)
        mention = await alice.send_text(room_id, "please run the tests", mentions=[bot.user_id])
        assert bot.user_id in await alice.wait_for_typing(bot.user_id, timeout=10)
        reply_id, text = await final_reply(alice, bot, room_id, mention)
        await alice.wait_for(
            lambda e: e.get("type") == "m.reaction" and relation(e).get("event_id") == mention
        )
        # The typing notice is switched off once the answer is complete (wait_for
        # re-checks on every typing notice too; the predicate looks at those).
        await alice.wait_for(lambda _: bot.user_id not in alice.typing_seen[-1], timeout=10)
    reply = next(e for e in alice.events if e["event_id"] == reply_id)
    assert relation(reply) == {
        "rel_type": "m.thread",
        "event_id": mention,
        "is_falling_back": True,
        "m.in_reply_to": {"event_id": mention},
    }
    assert reply["content"]["format"] == "org.matrix.custom.html"
    assert reply["content"]["m.mentions"] == {}
    assert text.startswith("Let me check.\n✅ `bash: echo hello-matrix` → exit 0 (hello-matrix)")
    assert "All **done**: the tests pass." in text
    assert "2 steps" in text.splitlines()[-1]
    edits = [
        e
        for e in alice.events
        if relation(e).get("rel_type") == "m.replace" and relation(e).get("event_id") == reply_id
    ]
    assert edits, "the reply grew by edits"
    final = edits[-1]["content"]
    assert final["body"] == f"* {text}"
    html = final["m.new_content"]["formatted_body"]
    assert "<strong>done</strong>" in html and "<code>bash: echo hello-matrix</code>" in html
    assert "&lt;b&gt;raw&lt;/b&gt;" in html and "<b>" not in html
    assert reactions_on(alice, bot.user_id, mention) == ["👀"]
    assert len(scripted_ollama.chat_requests) == 2


async def test_requester_steers_a_bystander_does_not_and_a_later_reply_follows_up(
    synapse: SynapseServer,
    matrix_user: MatrixUserFactory,
    human: HumanFactory,
    scripted_ollama: ScriptedOllama,
    tmp_path: Path,
) -> None:
    first_step_may_end = asyncio.Event()
    answers = iter(
        [
            Reply(tool_calls=[bash("echo step1")]),
            Reply(content="ok, using argparse"),
            Reply(content="docs updated"),
        ]
    )

    async def model(_body: dict[str, Any]) -> Reply:
        reply = next(answers)
        if reply.tool_calls:
            await first_step_may_end.wait()
        return reply

    scripted_ollama.respond_with(model)
    bot_user = await matrix_user("threadwright")
    config = bot_config(
        synapse, bot_user, workspace_in(tmp_path), scripted_ollama.url, tmp_path / "mx"
    )
    alice = await human("alice")
    bob = await human("bob")
    async with matrix_bot(config) as bot:
        room_id = await room_with_bot(alice, bot, invite=(bob.user_id,))
        await bob.join(room_id)
        mention = await alice.send_text(room_id, "add a --verbose flag", mentions=[bot.user_id])
        await scripted_ollama.wait_for_requests(1, timeout=10)
        await bob.wait_for(lambda e: e["event_id"] == mention)
        side = await bob.send_text(room_id, "side chat about lunch", thread_root=mention)
        await alice.wait_for(lambda e: e["event_id"] == side)
        steer = await alice.send_text(room_id, "use argparse, not click", thread_root=mention)
        # Acknowledged at once (queued) while the step is still running.
        await alice.wait_for(
            lambda e: (
                e.get("type") == "m.reaction"
                and relation(e).get("event_id") == steer
                and relation(e).get("key") == "📥"
            ),
            timeout=10,
        )
        first_step_may_end.set()
        first_id, text = await final_reply(alice, bot, room_id, mention)
        await alice.wait_for(
            lambda e: (
                e.get("type") == "m.reaction"
                and relation(e).get("event_id") == steer
                and relation(e).get("key") == "✅"
            ),
            timeout=10,
        )
        follow_up = await alice.send_text(room_id, "now update the docs", thread_root=mention)
        _, second_text = await final_reply(alice, bot, room_id, mention, skip={first_id})
    second_request = scripted_ollama.chat_requests[1]
    steering = [u for u in user_messages(second_request) if u.startswith("[steering from")]
    assert len(steering) == 1 and steering[0].endswith("use argparse, not click")
    assert alice.user.localpart in steering[0]
    assert not any("lunch" in u for u in user_messages(second_request))
    assert "↪" in text and "use argparse, not click" in text
    assert reactions_on(alice, bot.user_id, side) == []
    # The follow-up is a new turn of the same session, with its history.
    third = scripted_ollama.chat_requests[2]
    assert user_messages(third)[0] == "add a --verbose flag"
    assert user_messages(third)[-1] == "now update the docs"
    assert any(m.get("content") == "ok, using argparse" for m in third["messages"])
    assert "docs updated" in second_text
    assert reactions_on(alice, bot.user_id, follow_up) == ["👀"]


async def _stop_journey(
    synapse: SynapseServer,
    matrix_user: MatrixUserFactory,
    human: HumanFactory,
    scripted_ollama: ScriptedOllama,
    tmp_path: Path,
    how: str,
) -> str:
    scripted_ollama.script(Reply(content="working on it slowly", chunk_size=8, hang=True))
    bot_user = await matrix_user("threadwright")
    config = bot_config(
        synapse, bot_user, workspace_in(tmp_path), scripted_ollama.url, tmp_path / "mx"
    )
    alice = await human("alice")
    async with matrix_bot(config) as bot:
        room_id = await room_with_bot(alice, bot)
        mention = await alice.send_text(room_id, "do something long", mentions=[bot.user_id])
        reply = await alice.wait_for(is_answer(bot, room_id, mention), timeout=10)
        started = time.monotonic()
        if how == "text":
            await alice.send_text(room_id, "stop", thread_root=mention)
        else:
            await alice.react(room_id, reply["event_id"], "❌")
        _, text = await final_reply(alice, bot, room_id, mention)
        elapsed = time.monotonic() - started
    assert elapsed < 5, f"stopping took {elapsed:.1f}s"
    assert len(scripted_ollama.chat_requests) == 1
    return text


async def test_stop_typed_in_the_thread_stops_promptly(
    synapse: SynapseServer,
    matrix_user: MatrixUserFactory,
    human: HumanFactory,
    scripted_ollama: ScriptedOllama,
    tmp_path: Path,
) -> None:
    text = await _stop_journey(synapse, matrix_user, human, scripted_ollama, tmp_path, "text")
    assert text.startswith("working ") and "Stopped by alice-" in text


async def test_x_reaction_on_the_reply_stops_promptly(
    synapse: SynapseServer,
    matrix_user: MatrixUserFactory,
    human: HumanFactory,
    scripted_ollama: ScriptedOllama,
    tmp_path: Path,
) -> None:
    text = await _stop_journey(synapse, matrix_user, human, scripted_ollama, tmp_path, "reaction")
    assert "Stopped by alice-" in text


async def test_commands_typed_as_text_and_addressed_in_a_thread(
    synapse: SynapseServer,
    matrix_user: MatrixUserFactory,
    human: HumanFactory,
    scripted_ollama: ScriptedOllama,
    tmp_path: Path,
) -> None:
    workspace = workspace_in(tmp_path)
    commands = workspace / ".agent" / "commands"
    commands.mkdir(parents=True)
    (commands / "refactor.md").write_text(
        "---\ndescription: test refactor\n---\nREFACTOR-DIRECTIVE target=$ARGUMENTS\n"
    )
    scripted_ollama.script(
        Reply(content="refactored utils"), Reply(content="refactored a"), Reply(content="lib")
    )
    bot_user = await matrix_user("threadwright")
    config = bot_config(synapse, bot_user, workspace, scripted_ollama.url, tmp_path / "mx")
    alice = await human("alice")
    bob = await human("bob")
    async with matrix_bot(config) as bot:
        room_id = await room_with_bot(alice, bot, invite=(bob.user_id,))
        await bob.join(room_id)
        bang = await alice.send_text(room_id, "!refactor src/utils.py")
        await final_reply(alice, bot, room_id, bang)
        slash = await alice.send_text(room_id, "/refactor a.py")
        await final_reply(alice, bot, room_id, slash)
        root = await alice.send_text(room_id, "lib.py is getting messy")
        await bob.wait_for(lambda e: e["event_id"] == root)
        addressed = await bob.send_text(
            room_id,
            f"{bot_user.localpart}: /refactor lib.py",
            mentions=[bot.user_id],
            thread_root=root,
        )
        _, text = await final_reply(bob, bot, room_id, root)
    firsts = [user_messages(r)[-1] for r in scripted_ollama.chat_requests]
    assert firsts == [
        "REFACTOR-DIRECTIVE target=src/utils.py",
        "REFACTOR-DIRECTIVE target=a.py",
        "REFACTOR-DIRECTIVE target=lib.py",
    ]
    assert text.startswith("lib")
    assert reactions_on(bob, bot.user_id, addressed) == ["👀"]


async def test_a_user_not_allowed_gets_a_refusal_and_no_session(
    synapse: SynapseServer,
    matrix_user: MatrixUserFactory,
    human: HumanFactory,
    scripted_ollama: ScriptedOllama,
    tmp_path: Path,
) -> None:
    bot_user = await matrix_user("threadwright")
    config = bot_config(
        synapse, bot_user, workspace_in(tmp_path), scripted_ollama.url, tmp_path / "mx"
    )
    alice = await human("alice")
    mallory = await human("mallory")
    async with matrix_bot(config) as bot:
        room_id = await room_with_bot(alice, bot, invite=(mallory.user_id,))
        await mallory.join(room_id)
        mention = await mallory.send_text(room_id, "delete the repo", mentions=[bot.user_id])
        refusal = await mallory.wait_for(
            lambda e: (
                e.get("sender") == bot.user_id
                and relation(e).get("event_id") == mention
                and relation(e).get("rel_type") == "m.thread"
            ),
            timeout=10,
        )
        await mallory.send_text(room_id, "!refactor everything")
        await mallory.send_text(room_id, "please", thread_root=mention)
        # Barrier: alice's mention is answered only after mallory's were handled.
        scripted_ollama.script(Reply(content="hello alice"))
        barrier = await alice.send_text(room_id, "say hello", mentions=[bot.user_id])
        await final_reply(alice, bot, room_id, barrier)
    assert refusal["content"]["msgtype"] == "m.notice"
    assert "allow-list" in refusal["content"]["body"]
    assert len(scripted_ollama.chat_requests) == 1
    assert user_messages(scripted_ollama.chat_requests[0]) == ["say hello"]


async def test_history_edits_and_redactions_are_not_tasks(
    synapse: SynapseServer,
    matrix_user: MatrixUserFactory,
    human: HumanFactory,
    scripted_ollama: ScriptedOllama,
    tmp_path: Path,
) -> None:
    scripted_ollama.script(Reply(content="fresh answer"), Reply(content="barrier answer"))
    bot_user = await matrix_user("threadwright")
    config = bot_config(
        synapse, bot_user, workspace_in(tmp_path), scripted_ollama.url, tmp_path / "mx"
    )
    alice = await human("alice")
    async with matrix_bot(config) as bot:
        room_id = await alice.create_room(name="old")
        old = await alice.send_text(room_id, "old task from before", mentions=[bot.user_id])
        await alice.invite(room_id, bot.user_id)
        await alice.wait_for_join(room_id, bot.user_id, timeout=15)
        await _edit_mentioning(alice, room_id, old, "edited old task", bot.user_id)
        fresh = await alice.send_text(room_id, "fresh task", mentions=[bot.user_id])
        await final_reply(alice, bot, room_id, fresh)
        await _edit_mentioning(alice, room_id, fresh, "fresh task, edited", bot.user_id)
        await alice.redact(room_id, fresh)
        barrier = await alice.send_text(
            room_id, f"{bot_user.localpart}, barrier", intentional_mentions=False
        )
        await final_reply(alice, bot, room_id, barrier)
    assert [user_messages(r)[-1] for r in scripted_ollama.chat_requests] == [
        "fresh task",
        "barrier",
    ]


async def _edit_mentioning(
    person: HumanClient, room_id: str, event_id: str, text: str, bot_id: str
) -> str:
    """An edit as Element sends it when the new text mentions the bot."""
    mentions = {"user_ids": [bot_id]}
    new_content = {"msgtype": "m.text", "body": text, "m.mentions": mentions}
    return await person.send_event(
        room_id,
        "m.room.message",
        {
            "msgtype": "m.text",
            "body": f"* {text}",
            "m.new_content": new_content,
            "m.mentions": mentions,
            "m.relates_to": {"rel_type": "m.replace", "event_id": event_id},
        },
    )


async def test_a_long_answer_continues_in_further_thread_messages(
    synapse: SynapseServer,
    matrix_user: MatrixUserFactory,
    human: HumanFactory,
    scripted_ollama: ScriptedOllama,
    tmp_path: Path,
) -> None:
    paragraphs = [f"Paragraph {i}: " + "lorem ipsum " * 40 for i in range(60)]
    scripted_ollama.script(Reply(content="\n\n".join(paragraphs), chunk_size=4000))
    bot_user = await matrix_user("threadwright")
    config = bot_config(
        synapse, bot_user, workspace_in(tmp_path), scripted_ollama.url, tmp_path / "mx"
    )
    alice = await human("alice")
    async with matrix_bot(config) as bot:
        room_id = await room_with_bot(alice, bot)
        mention = await alice.send_text(room_id, "write a lot", mentions=[bot.user_id])
        answer = is_answer(bot, room_id, mention)

        def shows_footer(event: EventDict) -> bool:
            if event.get("sender") != bot.user_id:
                return False
            body = event["content"].get("m.new_content", event["content"]).get("body", "")
            return isinstance(body, str) and "— _" in body

        await alice.wait_for(shows_footer, timeout=20)
        replies = [e for e in await alice.thread_events(room_id, mention) if answer(e)]
        parts = [await alice.latest_text(room_id, e["event_id"]) for e in replies]
    assert len(parts) >= 2
    assert all(len(p) <= MAX_MESSAGE_CHARS for p in parts)
    joined = "".join(parts)
    assert all(p.strip() in joined for p in paragraphs)
    assert "— _" in parts[-1] and "▍" not in joined
