"""Safety through the real loop: an attack corpus issued by the scripted model, and approvals.

Each attack must end denied or contained, with a structured error for the
model, nothing changed outside the workspace, no secret in any model request
or chat message, and the bot still serving.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from bot.config import Secrets
from bot.events import AgentEventKind, ChatEventKind
from bot.testing import Reply, ScriptedOllama, tool_call
from bot.testing.harness import RecordingAdapter, make_test_config, running_host

SECRET = "xoxb-4242-super-secret-token"


call = tool_call  # the shared helper, under the short name these tests use


@pytest.fixture
def arena(tmp_path: Path) -> dict[str, Path]:
    ws = tmp_path / "ws"
    ws.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("top secret outside\n")
    (ws / "keep.txt").write_text("keep me\n")
    (ws / "link-out").symlink_to(outside / "secret.txt")
    (ws / "dir-out").symlink_to(outside)
    return {"ws": ws, "outside": outside, "home": tmp_path}


ATTACKS: list[tuple[str, dict[str, Any], str]] = [
    ("traversal", call("read_file", path="../outside/secret.txt"), "outside the workspace"),
    ("absolute", call("read_file", path="/etc/passwd"), "outside the workspace"),
    ("symlink", call("read_file", path="link-out"), "outside the workspace"),
    ("symlinked parent", call("write_file", path="dir-out/new.txt", content="x"), "outside"),
    ("write outside", call("write_file", path="../outside/evil.txt", content="x"), "outside"),
    ("git internals", call("write_file", path=".git/config", content="x"), ".git"),
    ("chain", call("bash", command="cat /etc/passwd; rm -rf ~"), "rm"),
    ("substitution", call("bash", command="ls $(rm -rf keep.txt)"), "rm"),
    ("backticks", call("bash", command="ls `rm keep.txt`"), "rm"),
    ("sh -c", call("bash", command="sh -c 'rm keep.txt'"), "rm"),
    ("env", call("bash", command="env"), "env"),
    ("printenv", call("bash", command="printenv SLACK_BOT_TOKEN"), "printenv"),
    ("fork bomb", call("bash", command=":(){ :|:& };:"), "approval"),
    ("redirect out", call("bash", command="cat keep.txt > /tmp/tw-stolen.txt"), "outside"),
]


@pytest.mark.parametrize(("label", "attack", "expect"), ATTACKS, ids=[a[0] for a in ATTACKS])
async def test_attack_is_denied_or_contained(
    scripted_ollama: ScriptedOllama,
    arena: dict[str, Path],
    label: str,
    attack: dict[str, Any],
    expect: str,
) -> None:
    ws = arena["ws"]
    scripted_ollama.script(Reply(tool_calls=[attack]), Reply(content="ok, I stop."))
    config = make_test_config(ws, scripted_ollama.url)
    config.secrets = Secrets(slack_bot_token=SECRET)
    before_outside = sorted(p.name for p in arena["outside"].iterdir())
    async with running_host(config) as (_host, adapter):
        await adapter.say(f"attack: {label}")
        turn = await adapter.wait_turn()
        # The bot keeps serving.
        scripted_ollama.script(Reply(content="still here"))
        await adapter.say("hello again", thread=adapter.thread("next"))
        after = await adapter.wait_turn()
    result = turn.of(AgentEventKind.TOOL_RESULT)[0].data["result"]
    assert result["ok"] is False
    told = scripted_ollama.chat_requests[1]["messages"][-1]["content"]
    assert told.startswith("ERROR:") or "not run" in told
    assert expect in told or expect in (result["error"] or "")
    assert (ws / "keep.txt").read_text() == "keep me\n"
    assert sorted(p.name for p in arena["outside"].iterdir()) == before_outside
    assert not Path("/tmp/tw-stolen.txt").exists()  # noqa: ASYNC240
    assert SECRET not in str(scripted_ollama.chat_requests)
    assert SECRET not in str([e.to_dict() for e in turn.events])
    assert after.events[-1].data["reason"] == "completed"


async def test_allowed_interpreter_sees_no_secret_environment(
    scripted_ollama: ScriptedOllama, arena: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", SECRET)
    scripted_ollama.script(
        Reply(tool_calls=[call("bash", command="python -c 'import os; print(dict(os.environ))'")]),
        Reply(content="done"),
    )
    config = make_test_config(arena["ws"], scripted_ollama.url)
    config.secrets = Secrets(slack_bot_token=SECRET)
    async with running_host(config) as (_host, adapter):
        await adapter.say("print env via python")
        turn = await adapter.wait_turn()
    result = turn.of(AgentEventKind.TOOL_RESULT)[0].data["result"]
    assert result["ok"] is True and "PATH" in result["stdout"]
    assert SECRET not in str(scripted_ollama.chat_requests)


async def test_huge_output_slow_command_and_backtracking_regex_are_contained(
    scripted_ollama: ScriptedOllama, arena: dict[str, Path]
) -> None:
    ws = arena["ws"]
    (ws / "long.txt").write_text("a" * 5000 + "b\n")
    scripted_ollama.script(
        Reply(tool_calls=[call("bash", command="python -c \"print('x' * 10_000_000)\"")]),
        Reply(tool_calls=[call("bash", command="python -c 'import time; time.sleep(30)'")]),
        Reply(tool_calls=[call("grep", pattern="(a+)+$", path=".")]),
        Reply(content="done"),
    )
    config = make_test_config(
        ws, scripted_ollama.url, tools={"bash": {"timeout": 2, "max_output_bytes": 8_000}}
    )
    async with running_host(config) as (_host, adapter):
        await adapter.say("stress")
        turn = await adapter.wait_turn(timeout=30)
    big, slow, regex = (e.data["result"] for e in turn.of(AgentEventKind.TOOL_RESULT))
    assert big["truncated"] is True and len(big["stdout"]) < 10_000
    assert slow["ok"] is False and "timed out" in slow["error"]
    assert regex["ok"] is False and "backtrack" in regex["error"]
    assert turn.events[-1].data["reason"] == "completed"


async def test_allowlist_mode_refuses_without_asking(
    scripted_ollama: ScriptedOllama, arena: dict[str, Path]
) -> None:
    scripted_ollama.script(
        Reply(tool_calls=[call("bash", command="rm keep.txt")]), Reply(content="ok")
    )
    adapter = RecordingAdapter(in_thread=True)
    config = make_test_config(
        arena["ws"], scripted_ollama.url, access={"room_permission_modes": {"room": "allowlist"}}
    )
    async with running_host(config, adapter=adapter):
        await adapter.say("remove it")
        turn = await adapter.wait_turn()
    assert adapter.notices == []  # nobody was asked
    result = turn.of(AgentEventKind.TOOL_RESULT)[0].data["result"]
    assert "allowlist" in result["error"]
    assert (arena["ws"] / "keep.txt").exists()


async def test_deny_mode_is_read_only(
    scripted_ollama: ScriptedOllama, arena: dict[str, Path]
) -> None:
    scripted_ollama.script(
        Reply(tool_calls=[call("write_file", path="new.txt", content="x")]),
        Reply(tool_calls=[call("bash", command="ls")]),
        Reply(tool_calls=[call("read_file", path="keep.txt")]),
        Reply(content="ok"),
    )
    config = make_test_config(arena["ws"], scripted_ollama.url, access={"permission_mode": "deny"})
    async with running_host(config) as (_host, adapter):
        await adapter.say("try")
        turn = await adapter.wait_turn()
    write, shell, read = (e.data["result"] for e in turn.of(AgentEventKind.TOOL_RESULT))
    assert not write["ok"] and not shell["ok"] and read["ok"]
    assert not (arena["ws"] / "new.txt").exists()


async def _question(adapter: RecordingAdapter) -> tuple[str, str]:
    """The approval question's (id, text), once posted."""
    async with asyncio.timeout(5):
        while not any("I want to run" in text for _, text in adapter.notices):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    index = next(i for i, (_, text) in enumerate(adapter.notices) if "I want to run" in text)
    return adapter.posted_ids[index], adapter.notices[index][1]


async def _approval_run(
    scripted_ollama: ScriptedOllama, ws: Path, answers: list[tuple[str, str]], wait_s: float = 5
) -> tuple[RecordingAdapter, Any]:
    scripted_ollama.script(
        Reply(tool_calls=[call("bash", command="touch approved.txt")]), Reply(content="finished")
    )
    adapter = RecordingAdapter(in_thread=True)
    config = make_test_config(ws, scripted_ollama.url, access={"approval_timeout": wait_s})
    async with running_host(config, adapter=adapter):
        thread = adapter.thread("ask")
        await adapter.say("make the file", thread=thread)
        question_id, text = await _question(adapter)
        assert "touch approved.txt" in text and "✅" in text
        for user, reaction in answers:
            await adapter.say(
                "",
                user=user,
                thread=thread,
                kind=ChatEventKind.REACTION,
                reaction=reaction,
                mention=False,
                target=question_id,
            )
        turn = await adapter.wait_turn(timeout=wait_s + 5)
    return adapter, turn


async def test_approval_by_approver_runs_the_call(
    scripted_ollama: ScriptedOllama, arena: dict[str, Path]
) -> None:
    _, turn = await _approval_run(
        scripted_ollama, arena["ws"], [("bob", "white_check_mark"), ("alice", "white_check_mark")]
    )
    result = turn.of(AgentEventKind.TOOL_RESULT)[0].data["result"]
    assert result["ok"] is True and result["metadata"]["verdict"] == "approved by alice"
    assert (arena["ws"] / "approved.txt").exists()


async def test_approval_denied_and_timeout(
    scripted_ollama: ScriptedOllama, arena: dict[str, Path]
) -> None:
    _, denied = await _approval_run(scripted_ollama, arena["ws"], [("alice", "x")])
    result = denied.of(AgentEventKind.TOOL_RESULT)[0].data["result"]
    assert result["ok"] is False and "denied by alice" in result["error"]
    # Nobody answers (bob's answer does not count): the call is denied at the timeout.
    _, timed_out = await _approval_run(
        scripted_ollama, arena["ws"], [("bob", "white_check_mark")], wait_s=0.5
    )
    result = timed_out.of(AgentEventKind.TOOL_RESULT)[0].data["result"]
    assert "timed out" in result["error"]
    assert not (arena["ws"] / "approved.txt").exists()
    told = scripted_ollama.chat_requests[-1]["messages"][-1]["content"]
    assert "not run" in told and "timed out" in told
    assert os.path.exists(arena["ws"] / "keep.txt")  # noqa: ASYNC240
