"""Routing end to end: the scripted server logs which model each request asked for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.agent import TurnOptions
from bot.complexity import Signals, parse_wish, score
from bot.events import AgentEventKind
from bot.store.base import open_store
from bot.testing import Reply, ScriptedOllama, tool_call
from bot.testing.harness import make_test_config, running_host

LOCAL = "qwen3:4b"
CLOUD = "qwen3-coder:480b-cloud"
FALLBACK = "qwen3:8b"


call = tool_call  # the shared helper, under the short name these tests use


def models(server: ScriptedOllama) -> list[str]:
    return [r["model"] for r in server.chat_requests]


def routed_config(workspace: Path, url: str, **routing: Any) -> Any:
    return make_test_config(
        workspace,
        url,
        routing={"local_model": LOCAL, "cloud_model": CLOUD, "fallback_model": FALLBACK} | routing,
    )


def make_workspace(tmp_path: Path) -> Path:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "a.txt").write_text("alpha\n")
    return workspace


# -- the score --------------------------------------------------------------


def test_score_weights() -> None:
    simple, _ = score(Signals(files_touched=1, distinct_tools=1, request_chars=40))
    assert simple == 0.0
    high, reasons = score(Signals(declared="high"))
    assert high >= 0.75 and any("declares high" in r for r in reasons)
    # One mechanical signal alone stays under the default threshold …
    assert score(Signals(files_touched=30))[0] == 0.25
    assert score(Signals(malformed_in_row=5))[0] == 0.3
    # … but a failing multi-file refactor across modules crosses it.
    hard = Signals(
        files_touched=6, tool_failures_in_row=3, keywords=["refactor across", "architecture"]
    )
    assert score(hard)[0] >= 0.75
    assert score(Signals(declared="low", files_touched=3))[0] == 0.0


def test_explicit_wishes() -> None:
    assert parse_wish("fix the bug --cloud") == "cloud"
    assert parse_wish("please use the big model for this") == "cloud"
    assert parse_wish("/model local") == "local"
    assert parse_wish("--cloud, no wait: --local") == "local"
    assert parse_wish("a cloudy day, locally grown") is None


# -- end to end -------------------------------------------------------------


async def test_simple_task_stays_local(scripted_ollama: ScriptedOllama, tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path)
    scripted_ollama.script(
        Reply(tool_calls=[call("read_file", path="a.txt")]), Reply(content="It says alpha.")
    )
    config = routed_config(workspace, scripted_ollama.url)
    async with running_host(config) as (host, adapter):
        await adapter.say("what does a.txt say?")
        turn = await adapter.wait_turn()
        decisions = await host.runtime.store.list_route_decisions(turn.session_id)
    assert models(scripted_ollama) == [LOCAL, LOCAL]
    assert turn.events[-1].data["stats"]["routes"] == {"local": 2}
    assert [d["step"] for d in decisions] == [1, 2]
    first = decisions[0]
    assert first["model"] == LOCAL and first["route"] == "local" and not first["cloud"]
    assert first["score"] < 0.75 and first["signals"]["request_chars"] == len(
        "what does a.txt say?"
    )
    assert first["latency_ms"] > 0 and first["prompt_tokens"] > 0
    assert decisions[1]["signals"]["files_touched"] == 1


async def test_declared_high_complexity_goes_big(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    workspace = make_workspace(tmp_path)
    scripted_ollama.script(Reply(content="Here is the design."))
    config = routed_config(workspace, scripted_ollama.url)
    async with running_host(config) as (host, adapter):
        thread = adapter.thread("design")
        session = await host.sessions.create_session(thread, "alice", "design the cache")
        host.sessions.start(
            session, adapter, "design the cache", "alice", TurnOptions(complexity="high")
        )
        turn = await adapter.wait_turn()
    assert models(scripted_ollama) == [CLOUD]
    step = turn.of(AgentEventKind.STEP)[0]
    assert step.data["route"] == "cloud" and step.data["score"] >= 0.75
    assert turn.events[-1].data["stats"]["routes"] == {"cloud": 1}


async def test_failures_escalate_then_return_to_local(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    workspace = make_workspace(tmp_path)
    scripted_ollama.script(
        Reply(tool_calls=[call("teleport", where="mars")]),
        Reply(tool_calls=[call("read_file", path=42)]),
        Reply(tool_calls=[call("read_file", path="a.txt")]),  # the big model gets it right
        Reply(content="alpha, as expected"),
    )
    config = routed_config(workspace, scripted_ollama.url)
    async with running_host(config) as (_host, adapter):
        await adapter.say("read a.txt")
        turn = await adapter.wait_turn()
    assert models(scripted_ollama) == [LOCAL, LOCAL, CLOUD, LOCAL]
    steps = turn.of(AgentEventKind.STEP)
    assert steps[2].data["route"] == "escalated"
    assert "2 malformed tool calls in a row" in steps[2].data["reasons"][0]
    assert steps[3].data["route"] == "local"
    assert turn.events[-1].data["stats"]["routes"] == {"local": 3, "cloud": 1}


async def test_failed_tools_in_a_row_escalate(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    workspace = make_workspace(tmp_path)
    missing = Reply(tool_calls=[call("read_file", path="missing.txt")])
    scripted_ollama.script(missing, missing, missing, Reply(content="it does not exist"))
    config = routed_config(workspace, scripted_ollama.url)
    async with running_host(config) as (_host, adapter):
        await adapter.say("read missing.txt")
        await adapter.wait_turn()
    assert models(scripted_ollama) == [LOCAL, LOCAL, LOCAL, CLOUD]


async def test_local_only_room_never_reaches_the_cloud(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    workspace = make_workspace(tmp_path)
    scripted_ollama.script(
        Reply(tool_calls=[call("read_file", path="a.txt")]), Reply(content="done")
    )
    config = routed_config(workspace, scripted_ollama.url, local_only_rooms=["secret-*"])
    async with running_host(config) as (_host, adapter):
        thread = adapter.thread("t", room="secret-ops")
        await adapter.say("use the big model: redesign the architecture --cloud", thread=thread)
        turn = await adapter.wait_turn()
    assert models(scripted_ollama) == [LOCAL, LOCAL]
    notices = [e.text for e in turn.of(AgentEventKind.NOTICE)]
    assert len(notices) == 1, notices  # said once, not at every step
    assert CLOUD in notices[0] and "local-only" in notices[0] and "secret-*" in notices[0]


async def test_local_only_command_stays_local_whatever_the_score(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    workspace = make_workspace(tmp_path)
    scripted_ollama.script(Reply(content="ok"))
    config = routed_config(workspace, scripted_ollama.url)
    async with running_host(config) as (host, adapter):
        session = await host.sessions.create_session(adapter.thread("p"), "alice", "x")
        options = TurnOptions(complexity="high", local_only=True)
        host.sessions.start(session, adapter, "private review", "alice", options)
        turn = await adapter.wait_turn()
    assert models(scripted_ollama) == [LOCAL]
    assert "the command is local-only" in turn.of(AgentEventKind.NOTICE)[0].text


async def test_cloud_401_falls_back_with_one_notice(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    workspace = make_workspace(tmp_path)
    scripted_ollama.script_for(CLOUD, Reply(status=401))
    scripted_ollama.script_for(
        FALLBACK,
        Reply(tool_calls=[call("read_file", path="a.txt")]),
        Reply(content="alpha (from the fallback)"),
    )
    config = routed_config(workspace, scripted_ollama.url)
    async with running_host(config) as (host, adapter):
        await adapter.say("read a.txt --cloud")
        turn = await adapter.wait_turn()
        decisions = await host.runtime.store.list_route_decisions(turn.session_id)
    # The refused cloud model is tried once; the rest of the session uses the fallback.
    assert models(scripted_ollama) == [CLOUD, FALLBACK, FALLBACK]
    notices = [e.text for e in turn.of(AgentEventKind.NOTICE)]
    assert len(notices) == 1
    assert FALLBACK in notices[0] and "https://ollama.com/connect" in notices[0]
    assert turn.events[-1].data["reason"] == "completed"
    assert turn.events[-1].data["stats"]["routes"] == {"fallback": 2}
    assert "alpha (from the fallback)" in turn.text
    assert [(d["model"], d["route"]) for d in decisions] == [
        (CLOUD, "wish"),
        (FALLBACK, "fallback"),
        (FALLBACK, "fallback"),
    ]
    assert decisions[0]["reasons"][0] == "failed: ModelAuthError"


async def test_cloud_overload_falls_back(scripted_ollama: ScriptedOllama, tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path)
    scripted_ollama.script_for(CLOUD, Reply(status=503))
    scripted_ollama.script_for(FALLBACK, Reply(content="handled"))
    config = routed_config(workspace, scripted_ollama.url)
    async with running_host(config) as (_host, adapter):
        await adapter.say("--cloud hello")
        turn = await adapter.wait_turn()
    assert models(scripted_ollama) == [CLOUD, FALLBACK]
    assert turn.events[-1].data["reason"] == "completed"


async def test_local_failure_is_not_hidden_by_a_fallback(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    workspace = make_workspace(tmp_path)
    scripted_ollama.script(Reply(status=503))
    config = routed_config(workspace, scripted_ollama.url)
    async with running_host(config) as (_host, adapter):
        await adapter.say("hello")
        turn = await adapter.wait_turn()
    assert models(scripted_ollama) == [LOCAL]
    assert turn.events[-1].data["reason"] == "error"


async def test_model_reply_and_status_show_routing(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    workspace = make_workspace(tmp_path)
    scripted_ollama.script(Reply(content="first"), Reply(content="second"))
    config = routed_config(workspace, scripted_ollama.url)
    async with running_host(config) as (_host, adapter):
        thread = adapter.thread("m")
        await adapter.say("hello", thread=thread)
        await adapter.wait_turn()
        await adapter.say("/model cloud", thread=thread, mention=False)
        await adapter.say("and now?", thread=thread, mention=False)
        await adapter.wait_turn()
        await adapter.say("/status", thread=thread, mention=False)
    assert models(scripted_ollama) == [LOCAL, CLOUD]
    texts = [text for _, text in adapter.notices]
    assert any(CLOUD in t and "Next steps" in t for t in texts)
    status = texts[-1]
    assert "Routing: 1 cloud · 1 local" in status
    assert f"step 1 → {CLOUD} (wish" in status


async def test_cloud_budget_reached_continues_locally(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    workspace = make_workspace(tmp_path)
    scripted_ollama.script(
        Reply(tool_calls=[call("read_file", path="a.txt")], prompt_eval_count=1000),
        Reply(content="finished locally"),
    )
    config = routed_config(
        workspace,
        scripted_ollama.url,
        models={CLOUD: {"price_per_mtok_in": 2.0, "price_per_mtok_out": 8.0}},
    )
    config.budget.session_cloud_usd = 0.001
    async with running_host(config) as (host, adapter):
        await adapter.say("--cloud read a.txt")
        turn = await adapter.wait_turn()
        decisions = await host.runtime.store.list_route_decisions(turn.session_id)
    assert models(scripted_ollama) == [CLOUD, LOCAL]
    notices = [e.text for e in turn.of(AgentEventKind.NOTICE)]
    assert len(notices) == 1 and "cloud budget is used up" in notices[0]
    assert decisions[0]["cost_usd"] >= 0.002
    assert decisions[1]["cost_usd"] == 0.0
    stats = turn.events[-1].data["stats"]
    assert stats["cost_usd"] == round(decisions[0]["cost_usd"], 6)


async def test_decisions_survive_in_the_store(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    workspace = make_workspace(tmp_path)
    scripted_ollama.script(Reply(content="ok"))
    config = routed_config(workspace, scripted_ollama.url)
    async with running_host(config) as (_host, adapter):
        await adapter.say("hi")
        turn = await adapter.wait_turn()
    store = await open_store(config.store_path())
    try:
        decisions = await store.list_route_decisions(turn.session_id)
        usage = await store.route_usage(session_id=turn.session_id)
    finally:
        await store.close()
    assert len(decisions) == 1 and decisions[0]["model"] == LOCAL
    assert usage[LOCAL]["calls"] == 1 and usage[LOCAL]["prompt_tokens"] > 0
