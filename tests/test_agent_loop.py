"""The agent loop end to end: scripted model over loopback, real tools, real store."""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path
from typing import Any

from bot.events import AgentEventKind
from bot.testing import Reply, ScriptedOllama, tool_call
from bot.testing.harness import make_test_config, running_host

call = tool_call  # the shared helper, under the short name these tests use


def messages_of(request: dict[str, Any], role: str) -> list[dict[str, Any]]:
    return [m for m in request["messages"] if m["role"] == role]


async def test_multi_step_task_feeds_tool_results_back(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    scripted_ollama.script(
        Reply(content="Let me look.", tool_calls=[call("bash", command="echo hello-from-bash")]),
        Reply(tool_calls=[call("write_file", path="out.txt", content="written\n")]),
        Reply(content="Done: wrote out.txt."),
    )
    config = make_test_config(workspace, scripted_ollama.url)
    async with running_host(config) as (_host, adapter):
        await adapter.say("write out.txt")
        turn = await adapter.wait_turn()
    assert (workspace / "out.txt").read_text() == "written\n"
    requests = scripted_ollama.chat_requests
    assert len(requests) == 3
    # The bash result reached the model as a tool message, in the next request.
    tool_msgs = messages_of(requests[1], "tool")
    assert tool_msgs and "hello-from-bash" in tool_msgs[-1]["content"]
    assert tool_msgs[-1]["tool_name"] == "bash"
    # Every request carries the same num_ctx and the tool schemas.
    assert {r["options"]["num_ctx"] for r in requests} == {config.context.num_ctx}
    # ... and the output cap, so a server that honours it stops a runaway itself.
    assert {r["options"]["num_predict"] for r in requests} == {config.limits.max_step_tokens}
    assert {t["function"]["name"] for t in requests[0]["tools"]} >= {"bash", "read_file"}
    kinds = turn.kinds()
    assert kinds.count(AgentEventKind.TOOL_CALL) == 2
    assert kinds.count(AgentEventKind.TOOL_RESULT) == 2
    assert kinds[-1] is AgentEventKind.DONE
    done = turn.events[-1]
    assert done.data["reason"] == "completed"
    assert done.data["stats"]["steps"] == 3
    assert "Done: wrote out.txt." in turn.text


async def test_steering_lands_in_next_request(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    scripted_ollama.script(
        Reply(tool_calls=[call("bash", command="echo step1")], delay=0.6),
        Reply(content="ok, using argparse"),
    )
    config = make_test_config(workspace, scripted_ollama.url)
    async with running_host(config) as (_host, adapter):
        thread = adapter.thread("steer")
        await adapter.say("add a flag", thread=thread)
        await scripted_ollama.wait_for_requests(1)
        steer = await adapter.say(
            "use argparse, not click", user="alice", thread=thread, mention=False
        )
        second = await adapter.say("and add a test", user="bob", thread=thread, mention=True)
        ignored = await adapter.say("side chat", user="carol", thread=thread, mention=False)
        turn = await adapter.wait_turn()
    second_request = scripted_ollama.chat_requests[1]
    users = [m["content"] for m in messages_of(second_request, "user")]
    assert users[-2:] == [
        "[steering from alice] use argparse, not click",
        "[steering from bob] and add a test",
    ]
    assert not any("side chat" in u for u in users)
    # The steering follows the tool result: it was applied at the boundary.
    roles = [m["role"] for m in second_request["messages"]]
    assert roles.index("tool") < len(roles) - 2
    applied = turn.of(AgentEventKind.STEERING)
    assert [e.text for e in applied] == ["use argparse, not click", "and add a test"]
    meanings = [(mid, meaning) for _, mid, meaning in adapter.reactions]
    assert (steer.message_id, "queued") in meanings
    assert (steer.message_id, "applied") in meanings
    assert (second.message_id, "applied") in meanings
    assert all(mid != ignored.message_id for mid, _ in meanings)


async def test_steering_during_final_answer_is_not_lost(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    scripted_ollama.script(
        Reply(content="Here is the answer.", chunk_size=2, chunk_delay=0.05),
        Reply(content="Revised answer."),
    )
    config = make_test_config(workspace, scripted_ollama.url)
    async with running_host(config) as (_host, adapter):
        thread = adapter.thread("late")
        await adapter.say("explain", thread=thread)
        await scripted_ollama.wait_for_requests(1)
        await adapter.say("shorter please", thread=thread, mention=False)
        turn = await adapter.wait_turn()
    assert len(scripted_ollama.chat_requests) == 2
    assert "[steering from alice] shorter please" in str(scripted_ollama.chat_requests[1])
    assert turn.events[-1].text == "Revised answer."


def _processes_with(marker: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            found.append(int(pid))
    return found


async def test_stop_kills_running_tool_process_group(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    # Unique per run: concurrent test runs on one machine share the process table.
    marker = f"100.{random.randrange(10**9):09d}"
    scripted_ollama.script(
        Reply(tool_calls=[call("bash", command=f"sleep {marker} & sleep {marker}; echo never")])
    )
    config = make_test_config(
        workspace,
        scripted_ollama.url,
        tools={"bash": {"timeout": 300, "allowed_commands": ["sleep"]}},
    )
    async with running_host(config) as (_host, adapter):
        thread = adapter.thread("stop")
        await adapter.say("sleep", thread=thread)
        async with asyncio.timeout(5):
            while len(_processes_with(marker)) < 2:  # noqa: ASYNC110 - polling /proc
                await asyncio.sleep(0.02)
        started = time.monotonic()
        await adapter.say("stop", thread=thread, mention=False)
        turn = await adapter.wait_turn()
        elapsed = time.monotonic() - started
    assert elapsed < 1.0
    assert turn.events[-1].data["reason"] == "cancelled"
    assert _processes_with(marker) == []
    session = turn.session_id
    record = await _record(config, session)
    assert record["status"] == "cancelled"


async def _record(config: Any, session_id: str) -> dict[str, Any]:
    from bot.store.base import open_store

    store = await open_store(config.store_path())
    try:
        rec = await store.get_session(session_id)
        assert rec is not None
        return {"status": rec.status, "stats": rec.stats}
    finally:
        await store.close()


async def test_stop_aborts_a_slow_model_stream(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    scripted_ollama.script(Reply(content="thinking very slowly", hang=True))
    config = make_test_config(workspace, scripted_ollama.url)
    async with running_host(config) as (_host, adapter):
        thread = adapter.thread("slow")
        await adapter.say("go", thread=thread)
        await scripted_ollama.wait_for_requests(1)
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await adapter.say("x", thread=thread, kind=_reaction(), reaction="x", mention=False)
        turn = await adapter.wait_turn()
        assert time.monotonic() - started < 1.0
    assert turn.events[-1].data["reason"] == "cancelled"
    assert any(e.kind is AgentEventKind.NOTICE and "Stopped by" in e.text for e in turn.events)


def _reaction() -> Any:
    from bot.events import ChatEventKind

    return ChatEventKind.REACTION


async def test_iteration_cap_says_so(scripted_ollama: ScriptedOllama, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    again = Reply(tool_calls=[call("bash", command="echo again")])
    scripted_ollama.respond_with(lambda body: again)
    config = make_test_config(workspace, scripted_ollama.url, routing={"max_loop_iterations": 3})
    async with running_host(config) as (_host, adapter):
        await adapter.say("loop forever")
        turn = await adapter.wait_turn()
    assert len(scripted_ollama.chat_requests) == 3
    assert turn.events[-1].data["reason"] == "max_iterations"
    notices = [e.text for e in turn.of(AgentEventKind.NOTICE)]
    assert any("max_loop_iterations = 3" in n for n in notices)


async def test_failed_unknown_and_malformed_tools_reach_the_model(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    scripted_ollama.script(
        Reply(tool_calls=[call("bash", command="echo oops >&2; exit 3")]),
        Reply(tool_calls=[call("teleport", where="mars")]),
        Reply(tool_calls=[call("read_file", path=42)]),
        Reply(content="giving up"),
    )
    config = make_test_config(workspace, scripted_ollama.url)
    async with running_host(config) as (_host, adapter):
        await adapter.say("try things")
        turn = await adapter.wait_turn()
    reqs = scripted_ollama.chat_requests
    failed = messages_of(reqs[1], "tool")[-1]["content"]
    assert failed.startswith("ERROR:") and "exit code 3" in failed
    assert failed.index("oops") < len(failed)
    unknown = messages_of(reqs[2], "tool")[-1]["content"]
    assert "unknown tool 'teleport'" in unknown and "bash" in unknown
    malformed = messages_of(reqs[3], "tool")[-1]["content"]
    assert "invalid arguments for read_file" in malformed
    errors = turn.of(AgentEventKind.ERROR)
    assert len(errors) == 3 and all(e.data.get("recoverable") for e in errors)
    assert turn.events[-1].data["reason"] == "completed"


async def test_tool_call_written_as_text_is_run(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    scripted_ollama.script(
        Reply(
            content='<tool_call>{"name": "bash", "arguments": {"command": "echo tagged"}}'
            "</tool_call>"
        ),
        Reply(content='{"name": "bash", "arguments": {"command": "echo bare"}}'),
        Reply(content='Here is JSON: {"name": "nothing"}'),
    )
    config = make_test_config(workspace, scripted_ollama.url)
    async with running_host(config) as (_host, adapter):
        await adapter.say("go")
        turn = await adapter.wait_turn()
    reqs = scripted_ollama.chat_requests
    assert len(reqs) == 3
    assert "tagged" in messages_of(reqs[1], "tool")[-1]["content"]
    assert "bare" in messages_of(reqs[2], "tool")[-1]["content"]
    assert turn.events[-1].text == 'Here is JSON: {"name": "nothing"}'


async def test_think_traces_stay_out_of_history(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    scripted_ollama.script(
        Reply(tool_calls=[call("think", thought="secret plan: refactor utils first")]),
        Reply(content="done"),
    )
    config = make_test_config(workspace, scripted_ollama.url)
    async with running_host(config) as (_host, adapter):
        await adapter.say("plan")
        turn = await adapter.wait_turn()
    assert "secret plan" not in str(scripted_ollama.chat_requests[1]["messages"])
    record = await _scratchpad(config, turn.session_id)
    assert any("secret plan" in s for s in record)


async def _scratchpad(config: Any, session_id: str) -> list[str]:
    from bot.store.base import open_store

    store = await open_store(config.store_path())
    try:
        rec = await store.get_session(session_id)
        assert rec is not None
        return rec.scratchpad
    finally:
        await store.close()


async def test_model_errors_end_the_turn_clearly(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    scripted_ollama.script(Reply(status=404, error="model 'qwen3:4b' not found"))
    config = make_test_config(workspace, scripted_ollama.url)
    async with running_host(config) as (_host, adapter):
        await adapter.say("hi")
        turn = await adapter.wait_turn()
        # The bot keeps serving: the next mention in another thread works.
        scripted_ollama.script(Reply(content="fine now"))
        await adapter.say("hi again", thread=adapter.thread("t2"))
        second = await adapter.wait_turn()
    assert turn.events[-1].data["reason"] == "error"
    assert "ollama pull qwen3:4b" in turn.of(AgentEventKind.ERROR)[0].text
    assert second.events[-1].data["reason"] == "completed"


async def test_follow_up_continues_the_session_with_history(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    scripted_ollama.script(Reply(content="first answer"), Reply(content="second answer"))
    config = make_test_config(workspace, scripted_ollama.url)
    async with running_host(config) as (_host, adapter):
        thread = adapter.thread("follow")
        await adapter.say("question one", thread=thread)
        first = await adapter.wait_turn()
        await adapter.say("question two", thread=thread, mention=False)
        second = await adapter.wait_turn()
    assert first.session_id == second.session_id
    contents = [m["content"] for m in scripted_ollama.chat_requests[1]["messages"]]
    assert contents[1:] == ["question one", "first answer", "question two"]


async def test_duplicate_deliveries_make_one_session(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    scripted_ollama.script(Reply(content="once", delay=0.2))
    config = make_test_config(workspace, scripted_ollama.url)
    async with running_host(config) as (_host, adapter):
        thread = adapter.thread("dup")
        await adapter.say("task", thread=thread, event_id="E1", message_id="111.1")
        await adapter.say("task", thread=thread, event_id="E1", message_id="111.1")
        await adapter.say("task", thread=thread, event_id="E2", message_id="111.1")
        await adapter.wait_turn()
        await asyncio.sleep(0.1)
    assert len(scripted_ollama.chat_requests) == 1
    assert len(adapter.turns) == 1


async def test_user_not_allowed_gets_one_refusal_and_no_model_call(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    config = make_test_config(workspace, scripted_ollama.url)
    async with running_host(config) as (_host, adapter):
        await adapter.say("rm everything", user="mallory")
        await adapter.say("please", user="mallory", thread=adapter.thread("t9"))
    assert scripted_ollama.chat_requests == []
    refusals = [text for _, text in adapter.notices if "allow-list" in text]
    assert len(refusals) == 1
