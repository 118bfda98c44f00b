"""Restarts lose nothing: SIGTERM mid-session, restart, resume; kill -9 of a console session.

The platform-neutral journeys run the real host (``Host.run``) with the
RecordingAdapter registered as an adapter plugin; the Slack and Matrix
journeys belong with their adapters.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot import hookimpl
from bot.events import AgentEventKind, ThreadKey
from bot.host import Host
from bot.plugins import make_plugin_manager
from bot.restarts import (
    NOT_RUN_AFTER_RESTART,
    RESTARTING_RESUME,
    RESTARTING_WAIT,
    RESUMING,
    WAITING,
)
from bot.store.base import open_store
from bot.testing import Reply, ScriptedOllama, tool_call
from bot.testing.harness import RecordedTurn, RecordingAdapter, make_test_config

call = tool_call  # the shared helper, under the short name these tests use


class AdapterPlugin:
    """Registers a prepared RecordingAdapter as the ``test`` adapter of ``Host.run``."""

    __name__ = "tests.restart_adapter"

    def __init__(self, adapter: RecordingAdapter) -> None:
        self.adapter = adapter

    @hookimpl
    def register_adapters(self, register: Callable[..., None], config: Any) -> None:
        register("test", lambda host: self.adapter)


def make_host(config: Any, adapter: RecordingAdapter) -> Host:
    plugins = make_plugin_manager(load_entrypoints=False, extra_plugins=(AdapterPlugin(adapter),))
    return Host(config, plugins=plugins)


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - polling state another task changes
            await asyncio.sleep(0.01)


async def finished_turn(adapter: RecordingAdapter, count: int = 1) -> RecordedTurn:
    await until(lambda: len(adapter.turns) >= count)
    return await adapter.wait_turn()


def user_texts(request: dict[str, Any]) -> list[str]:
    return [m["content"] for m in request["messages"] if m["role"] == "user"]


def tool_texts(request: dict[str, Any]) -> list[str]:
    return [m["content"] for m in request["messages"] if m["role"] == "tool"]


async def stored(config: Any, session_id: str) -> tuple[Any, list[dict[str, Any]], list[Any]]:
    store = await open_store(config.store_path())
    try:
        record = await store.get_session(session_id)
        return (
            record,
            await store.load_messages(session_id),
            await store.pending_steering(session_id),
        )
    finally:
        await store.close()


async def test_sigterm_mid_session_then_restart_resumes_with_steering(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    config = make_test_config(workspace, scripted_ollama.url, sessions={"shutdown_grace": 10})
    thread = ThreadKey("test", "room", "restart")
    scripted_ollama.script(
        Reply(tool_calls=[call("bash", command="echo step-one")]),
        Reply(tool_calls=[call("bash", command="echo step-two")], delay=0.8),
    )
    first = RecordingAdapter()
    async with make_host(config, first) as host:
        serving = asyncio.create_task(host.run(["test"]))
        await until(lambda: signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL)
        await first.say("refactor it", thread=thread, event_id="ev-task", message_id="m-task")
        await scripted_ollama.wait_for_requests(2)
        await first.say("use plan B", thread=thread, mention=False)
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(0.2)  # shutting down, step two still in flight
        await first.say("and keep the tests green", thread=thread, mention=False)
        assert await serving == 0
    stopped = first.turns[-1]
    assert stopped.events[-1].data["reason"] == "interrupted"
    assert (thread, RESTARTING_RESUME) in first.notices
    record, messages, pending = await stored(config, stopped.session_id)
    assert record.status == "interrupted"
    assert [m["content"] for m in messages if m["role"] == "user"] == ["refactor it"]
    assert sum("step-two" in m["content"] for m in messages if m["role"] == "tool") == 1
    assert [p.text for p in pending] == ["use plan B", "and keep the tests green"]
    assert len(scripted_ollama.chat_requests) == 2

    scripted_ollama.script(Reply(content="Plan B is done."))
    second = RecordingAdapter()
    async with make_host(config, second) as host:
        serving = asyncio.create_task(host.run(["test"]))
        resumed = await finished_turn(second)
        # Slack redelivering the original mention after the restart starts nothing.
        await second.say("refactor it", thread=thread, event_id="ev-task", message_id="m-task")
        host.request_stop()
        assert await serving == 0
    assert second.notices[0] == (thread, RESUMING)
    assert resumed.session_id == stopped.session_id and resumed.trigger is None
    assert resumed.events[-1].data["reason"] == "completed"
    assert resumed.text == "Plan B is done."
    assert [e.text for e in resumed.of(AgentEventKind.STEERING)] == [
        "use plan B",
        "and keep the tests green",
    ]
    assert len(second.turns) == 1 and len(scripted_ollama.chat_requests) == 3
    request = scripted_ollama.chat_requests[2]
    assert user_texts(request) == [
        "refactor it",
        "[steering from alice] use plan B",
        "[steering from alice] and keep the tests green",
    ]
    assert any("step-one" in t for t in tool_texts(request))
    assert any("step-two" in t for t in tool_texts(request))
    record, _, pending = await stored(config, stopped.session_id)
    assert record.status == "idle" and pending == []


async def test_grace_expires_mid_tool_and_the_session_waits_for_a_reply(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    config = make_test_config(
        workspace,
        scripted_ollama.url,
        sessions={"resume_on_start": False, "shutdown_grace": 0.3},
        tools={"bash": {"timeout": 60, "allowed_commands": ["echo", "sleep"]}},
    )
    thread = ThreadKey("test", "room", "slow-tool")
    scripted_ollama.script(
        Reply(tool_calls=[call("bash", command="echo first")]),
        Reply(tool_calls=[call("bash", command="sleep 30"), call("bash", command="echo later")]),
    )
    first = RecordingAdapter()
    async with make_host(config, first) as host:
        serving = asyncio.create_task(host.run(["test"]))
        await until(lambda: first.sessions is not None)
        await first.say("run the slow thing", thread=thread)
        await scripted_ollama.wait_for_requests(2)
        await asyncio.sleep(0.2)  # the sleep is running
        started = asyncio.get_running_loop().time()
        host.request_stop()
        assert await serving == 0
        assert asyncio.get_running_loop().time() - started < 5
    stopped = first.turns[-1]
    assert stopped.events[-1].data["reason"] == "interrupted", stopped.events[-3:]
    assert (thread, RESTARTING_WAIT) in first.notices
    record, messages, _ = await stored(config, stopped.session_id)
    assert record.status == "interrupted"
    # The call in flight was lost and the one after it never ran; the first step is kept.
    assert messages[-1]["role"] == "assistant" and len(messages[-1]["tool_calls"]) == 2

    second = RecordingAdapter()
    async with make_host(config, second) as host:
        serving = asyncio.create_task(host.run(["test"]))
        await until(lambda: (thread, WAITING) in second.notices)
        record, _, _ = await stored(config, stopped.session_id)
        assert record.status == "idle"
        assert len(scripted_ollama.chat_requests) == 2 and second.turns == []
        scripted_ollama.script(Reply(content="Continuing without the slow thing."))
        await second.say("skip the slow part", thread=thread, mention=False)
        turn = await finished_turn(second)
        host.request_stop()
        assert await serving == 0
    assert turn.events[-1].data["reason"] == "completed"
    request = scripted_ollama.chat_requests[2]
    assert user_texts(request)[-1] == "skip the slow part"
    tools = tool_texts(request)
    assert any("first" in t for t in tools)
    assert tools[-2:] == [NOT_RUN_AFTER_RESTART, NOT_RUN_AFTER_RESTART]


CONSOLE_CONFIG = """
routing:
  local_model: "qwen3:4b"
  connect_timeout: 2
"""


def console_env(model_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OLLAMA", "THREADWRIGHT"))}
    env["OLLAMA_HOST"] = model_url
    return env


async def test_kill_9_mid_step_loses_no_user_message(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    ws = tmp_path / "project"
    ws.mkdir()
    (ws / "agent_config.yaml").write_text(CONSOLE_CONFIG)
    db = ws / ".threadwright" / "threadwright.db"
    scripted_ollama.script(Reply(content="never finishes", hang=True))
    env = console_env(scripted_ollama.url)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "chat",
        cwd=ws,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdin is not None
    try:
        proc.stdin.write(b"add a --verbose flag\n")
        await proc.stdin.drain()
        await scripted_ollama.wait_for_requests(1, timeout=15)
        proc.stdin.write(b"use argparse, not click\n")
        await proc.stdin.drain()
        store = await open_store(db)
        try:
            session_id = ""

            async def steering_stored() -> bool:
                nonlocal session_id
                records = await store.list_sessions(status="running")
                if records:
                    session_id = records[0].id
                    return bool(await store.pending_steering(session_id))
                return False

            async with asyncio.timeout(10):
                while not await steering_stored():  # noqa: ASYNC110 - another process writes
                    await asyncio.sleep(0.02)
        finally:
            await store.close()
        proc.kill()  # SIGKILL: no handler, no flush, no goodbye
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == -signal.SIGKILL

    store = await open_store(db)
    try:
        record = await store.get_session(session_id)
        messages = await store.load_messages(session_id)
        pending = await store.pending_steering(session_id)
    finally:
        await store.close()
    assert record is not None and record.status == "running"
    assert [m["content"] for m in messages if m["role"] == "user"] == ["add a --verbose flag"]
    assert [p.text for p in pending] == ["use argparse, not click"]

    scripted_ollama.script(Reply(content="Added it with argparse."))
    resumed = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "chat",
        "--resume",
        session_id[:8],
        cwd=ws,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(resumed.communicate(), 30)
    assert resumed.returncode == 0, err.decode()
    assert RESUMING in out.decode() and "Added it with argparse." in out.decode()
    request = scripted_ollama.chat_requests[-1]
    assert user_texts(request) == [
        "add a --verbose flag",
        f"[steering from {_console_user()}] use argparse, not click",
    ]
    store = await open_store(db)
    try:
        record = await store.get_session(session_id)
        assert record is not None and record.status == "idle"
        assert await store.pending_steering(session_id) == []
    finally:
        await store.close()


def _console_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:
        return "local"


async def test_resumed_turn_keeps_its_limits_and_sub_agents_are_not_resumed(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    import time

    from bot.agent import TurnOptions
    from bot.restarts import pause_for_restart, resume_after_restart
    from bot.store.base import SessionRecord
    from bot.testing.harness import running_host

    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "notes.txt").write_text("read me\n")
    config = make_test_config(workspace, scripted_ollama.url)
    thread = ThreadKey("test", "room", "limited")
    scripted_ollama.script(Reply(tool_calls=[call("read_file", path="notes.txt")], delay=0.4))
    async with running_host(config) as (host, adapter):
        session = await host.sessions.create_session(thread, "alice", "review the notes")
        options = TurnOptions(allowed_tools={"read_file"}, command="review")
        host.sessions.start(session, adapter, "review the notes", "alice", options)
        await scripted_ollama.wait_for_requests(1)
        now = time.time()
        sub = SessionRecord(
            "sub0agent000",
            f"{thread}/sub:reviewer",
            "alice",
            "look",
            "running",
            now,
            now,
            meta={"parent": session.id, "subagent": "reviewer"},
        )
        await host.runtime.store.create_session(sub)
        interrupted = await pause_for_restart(host.sessions, grace=5)
    assert [s.id for s in interrupted] == [session.id]

    scripted_ollama.script(Reply(content="The notes say: read me."))
    async with running_host(config, adapter=RecordingAdapter()) as (host, second):
        resumed = await resume_after_restart(host.sessions)
        assert [s.id for s in resumed] == [session.id]
        turn = await second.wait_turn()
        sub_after = await host.runtime.store.get_session("sub0agent000")
    assert turn.events[-1].data["reason"] == "completed"
    assert second.notices == [(thread, RESUMING)]  # nothing posted for the sub-agent
    tools = {t["function"]["name"] for t in scripted_ollama.chat_requests[1]["tools"]}
    assert tools == {"read_file"}
    assert any("read me" in t for t in tool_texts(scripted_ollama.chat_requests[1]))
    assert sub_after is not None and sub_after.status == "cancelled"
