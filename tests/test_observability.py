"""Health, metrics and structured logs, read over HTTP from a host that ran real sessions."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot import hookimpl, observability
from bot.observability.server import server_for
from bot.testing import Reply, ScriptedOllama, tool_call
from bot.testing.harness import RecordingAdapter, make_test_config, running_host
from plugins.observability import METER_PLUGIN_NAME

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


call = tool_call  # the shared helper, under the short name these tests use


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def fetch(http: aiohttp.ClientSession, url: str) -> tuple[int, str, str]:
    async with http.get(url) as response:
        return response.status, response.headers.get("Content-Type", ""), await response.text()


def observable_config(workspace: Path, model_url: str, **overrides: Any) -> Any:
    return make_test_config(
        workspace,
        model_url,
        observability={"enabled": True, "port": 0, "loop_lag_interval": 0.02},
        **overrides,
    )


async def test_metrics_and_health_after_a_session(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    scripted_ollama.script(
        Reply(tool_calls=[call("bash", command="echo metered")]),
        Reply(tool_calls=[call("teleport", where="mars")], delay=0.4),
        Reply(tool_calls=[call("bash", command="curl -s http://example.invalid/x")]),
        Reply(content="All done.", chunk_delay=0.01),
    )
    config = observable_config(workspace, scripted_ollama.url)
    async with (
        running_host(config) as (host, adapter),
        aiohttp.ClientSession() as http,
    ):
        server = server_for(host)
        assert server is not None and server.url.startswith("http://127.0.0.1:")
        _, _, text = await fetch(http, f"{server.url}/metrics")
        before = parse(text)
        thread = adapter.thread("metrics")
        await adapter.say("do it", thread=thread)
        await scripted_ollama.wait_for_requests(2)
        await adapter.say("and be quick", thread=thread, mention=False)
        turn = await adapter.wait_turn()
        assert turn.events[-1].data["reason"] == "completed", turn.events[-1]
        observability.chat_edit("test")
        observability.chat_edit("test")
        observability.chat_rate_limited("test", retry_after=1.5)
        observability.chat_post("test")
        await asyncio.sleep(0.1)  # a few loop-lag samples
        status, content_type, text = await fetch(http, f"{server.url}/metrics")
        after = parse(text)

        health_status, _, health_text = await fetch(http, f"{server.url}/healthz")

    assert status == 200 and content_type.startswith("text/plain")

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("threadwright_steps_total", route="local") == 4
    assert delta("threadwright_turns_total", reason="completed") == 1
    assert delta("threadwright_tool_calls_total", tool="bash", verdict="allowed") == 1
    assert delta("threadwright_tool_calls_total", tool="unknown", verdict="invalid") == 1
    assert delta("threadwright_tool_calls_total", tool="bash", verdict="denied") == 1
    assert delta("threadwright_steering_messages_total", platform="test") == 1
    assert delta("threadwright_model_step_seconds_count", model="qwen3:4b") == 4
    assert delta("threadwright_model_step_seconds_sum", model="qwen3:4b") > 0
    assert delta("threadwright_model_first_output_seconds_count", model="qwen3:4b") == 4
    assert delta("threadwright_model_tokens_total", model="qwen3:4b", kind="prompt") > 0
    assert delta("threadwright_model_tokens_total", model="qwen3:4b", kind="completion") > 0
    assert delta("threadwright_chat_edits_total", platform="test") == 2
    assert delta("threadwright_chat_rate_limited_total", platform="test") == 1
    assert delta("threadwright_chat_posts_total", platform="test") == 1
    assert delta("threadwright_event_loop_lag_seconds_count") >= 2
    assert value(after, "threadwright_adapter_connected", adapter="test") == 1
    assert value(after, "threadwright_accepting_work") == 1

    assert health_status == 200
    health = json.loads(health_text)
    assert health["status"] == "ok"
    checks = health["checks"]
    assert checks["adapters"]["data"]["adapters"] == {"test": True}
    assert checks["store"]["ok"] and str(config.store_path()) in checks["store"]["detail"]
    assert checks["model"]["ok"] and checks["model"]["data"]["present"] is True
    assert checks["model"]["data"]["endpoint"] == scripted_ollama.url


async def test_active_sessions_gauge_and_status_while_a_turn_runs(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    scripted_ollama.script(Reply(content="slow answer", delay=0.6))
    config = observable_config(workspace, scripted_ollama.url)
    async with (
        running_host(config) as (host, adapter),
        aiohttp.ClientSession() as http,
    ):
        server = server_for(host)
        assert server is not None
        await adapter.say("take your time", thread=adapter.thread("busy"))
        await scripted_ollama.wait_for_requests(1)
        _, _, text = await fetch(http, f"{server.url}/metrics")
        during = parse(text)
        _, _, status_text = await fetch(http, f"{server.url}/status")
        await adapter.wait_turn()
        _, _, text = await fetch(http, f"{server.url}/metrics")
        idle = parse(text)
        _, _, after_text = await fetch(http, f"{server.url}/status")
    assert value(during, "threadwright_active_sessions", platform="test") == 1
    assert value(idle, "threadwright_active_sessions", platform="test") == 0
    status = json.loads(status_text)
    assert status["accepting"] is True
    [session] = status["sessions"]
    assert session["thread"] == "test|room|busy" and session["task"] == "take your time"
    # The GPU as NVML sees it, what Ollama has loaded (/api/ps), today's steps per model.
    after = json.loads(after_text)
    assert after["gpu"]  # "no GPU readings …" here; memory figures where NVML finds one
    assert [m["name"] for m in after["models_loaded"]] == ["qwen3:4b"]
    assert after["routing_today"]["qwen3:4b"]["steps"] == 1


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FlakyAdapter(RecordingAdapter):
    def __init__(self) -> None:
        super().__init__()
        self.up = True

    @property
    def connected(self) -> bool:
        return self.up


async def test_healthz_says_what_is_wrong(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    down_url = f"http://127.0.0.1:{_closed_port()}"
    config = observable_config(workspace, down_url)
    adapter = FlakyAdapter()
    async with (
        running_host(config, adapter=adapter) as (host, _),
        aiohttp.ClientSession() as http,
    ):
        server = server_for(host)
        assert server is not None
        status, _, text = await fetch(http, f"{server.url}/healthz")
        assert status == 503
        report = json.loads(text)
        assert report["status"] == "fail"
        assert not report["checks"]["model"]["ok"]
        assert "ollama serve" in report["checks"]["model"]["detail"]
        assert report["checks"]["store"]["ok"] and report["checks"]["adapters"]["ok"]

        adapter.up = False
        status, _, text = await fetch(http, f"{server.url}/healthz")
        report = json.loads(text)
        assert status == 503
        assert report["checks"]["adapters"]["detail"] == "not connected: test"

        host.sessions.accepting = False
        status, _, text = await fetch(http, f"{server.url}/healthz")
        assert status == 503 and json.loads(text)["status"] == "stopping"


async def test_healthz_fails_when_the_model_is_not_pulled(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    scripted_ollama.models = ["llama3.2:3b"]
    config = observable_config(workspace, scripted_ollama.url)
    async with (
        running_host(config) as (host, _),
        aiohttp.ClientSession() as http,
    ):
        server = server_for(host)
        assert server is not None
        status, _, text = await fetch(http, f"{server.url}/healthz")
    model = json.loads(text)["checks"]["model"]
    assert status == 503
    assert model["data"]["present"] is False and "qwen3:4b is not pulled" in model["detail"]


async def test_endpoint_is_off_for_the_console_by_default(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    config = make_test_config(workspace, scripted_ollama.url)
    assert config.observability.enabled is None
    async with running_host(config) as (host, _):
        assert server_for(host) is None
        # No meter either: sessions of `threadwright chat` pay nothing per event.
        names = {i.plugin_name for i in host.runtime.plugins.pm.hook.session_event.get_hookimpls()}
        assert METER_PLUGIN_NAME not in names
    observed = make_test_config(
        workspace, scripted_ollama.url, observability={"enabled": True, "port": 0}
    )
    async with running_host(observed) as (host, _):
        pm = host.runtime.plugins.pm
        names = {i.plugin_name for i in pm.hook.session_event.get_hookimpls()}
        assert METER_PLUGIN_NAME in names
    assert pm.get_plugin(METER_PLUGIN_NAME) is None


class LogsFromInsideTheSession:
    """A plugin that logs from the session's task, as any module would."""

    __name__ = "tests.log_from_session"

    @hookimpl
    def session_event(self, session: Any, event: Any) -> None:
        if event.kind.value == "step":
            logging.getLogger("tests.session").warning(
                "step with token xoxb-1234567890-abcdefghij and secret %s", "hunter2-secret"
            )


async def test_json_logs_carry_session_and_thread_and_redact_secrets(
    scripted_ollama: ScriptedOllama, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.logs import setup_logging

    workspace = tmp_path / "ws"
    workspace.mkdir()
    scripted_ollama.script(Reply(content="ok"))
    config = make_test_config(workspace, scripted_ollama.url, logging={"format": "json"})
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    setup_logging("INFO", config.logging.format, ["hunter2-secret"])
    try:
        async with running_host(config, extra_plugins=(LogsFromInsideTheSession(),)) as (
            _host,
            adapter,
        ):
            await adapter.say("log something", thread=adapter.thread("logged"))
            turn = await adapter.wait_turn()
        logging.getLogger("tests.outside").warning("outside any session")
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.strip()]
    inside = [line for line in lines if line["logger"] == "tests.session"]
    assert inside, lines
    assert inside[0]["session_id"] == turn.session_id
    assert inside[0]["thread"] == "test|room|logged"
    assert "hunter2-secret" not in inside[0]["message"] and "xoxb-" not in inside[0]["message"]
    assert inside[0]["message"].count("[REDACTED]") == 2
    [outside] = [line for line in lines if line["logger"] == "tests.outside"]
    assert "session_id" not in outside and "thread" not in outside


async def test_status_command_asks_the_bot_then_the_store(
    scripted_ollama: ScriptedOllama, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.observability.status import NOT_RUNNING, run_status
    from bot.store.base import SessionRecord, open_store

    workspace = tmp_path / "ws"
    workspace.mkdir()
    scripted_ollama.script(Reply(content="slow answer", delay=0.6))
    port = _closed_port()
    config = make_test_config(
        workspace, scripted_ollama.url, observability={"enabled": True, "port": port}
    )
    async with running_host(config) as (_host, adapter):
        await adapter.say("a long task", thread=adapter.thread("status"))
        await scripted_ollama.wait_for_requests(1)
        code = await run_status(config)
        running = capsys.readouterr().out
        await adapter.wait_turn()
    assert code == 0
    assert f"threadwright is running (accepting work) — http://127.0.0.1:{port}" in running
    assert "adapters: test connected" in running and "active sessions: 1" in running
    assert "gpu: " in running
    assert "test|room|status" in running and "'a long task'" in running

    store = await open_store(config.store_path())
    try:
        await store.create_session(
            SessionRecord(
                "left0behind1", "slack|T1/C1|171.0", "U1", "fix the build", "interrupted", 1.0, 2.0
            )
        )
    finally:
        await store.close()
    code = await run_status(config)
    stopped = capsys.readouterr().out
    assert code == NOT_RUNNING
    assert f"nothing answers at http://127.0.0.1:{port}/status" in stopped
    assert "1 session(s) stopped mid-task" in stopped
    assert "left0behind1" in stopped and "interrupted" in stopped and "slack|T1/C1|171.0" in stopped


async def test_threadwright_run_serves_health_and_stops_on_sigterm(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    """The real command: `threadwright run` with an adapter plugin, JSON logs, SIGTERM."""
    import os
    import signal
    import sys

    plugin_dir = tmp_path / "plugin"
    plugin_dir.mkdir()
    (plugin_dir / "tw_quiet_adapter.py").write_text(
        "from bot import hookimpl\n"
        "from bot.testing.harness import RecordingAdapter\n\n"
        "@hookimpl\n"
        "def register_adapters(register, config):\n"
        "    register('quiet', lambda host: RecordingAdapter('quiet'))\n"
    )
    dist = plugin_dir / "tw_quiet_adapter-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tw_quiet_adapter\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[threadwright]\ntw_quiet_adapter = tw_quiet_adapter\n")
    port = _closed_port()
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "agent_config.yaml").write_text(
        "adapters: [quiet]\n"
        "access: {allowed_users: [alice]}\n"
        "routing: {local_model: 'qwen3:4b'}\n"
        f"observability: {{port: {port}}}\n"
        "logging: {format: json}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OLLAMA", "THREADWRIGHT"))}
    env.update(OLLAMA_HOST=scripted_ollama.url, PYTHONPATH=str(plugin_dir))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        cwd=ws,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            async with asyncio.timeout(20):
                while True:
                    try:
                        status, _, text = await fetch(http, f"{url}/healthz")
                        break
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(0.05)
            metrics_status, _, metrics = await fetch(http, f"{url}/metrics")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert status == 200, text
    assert json.loads(text)["checks"]["adapters"]["data"]["adapters"] == {"quiet": True}
    assert metrics_status == 200
    assert value(parse(metrics), "threadwright_adapter_connected", adapter="quiet") == 1
    assert proc.returncode == 0, err.decode()
    logs = [json.loads(line) for line in err.decode().splitlines() if line.startswith("{")]
    assert any(f"health and metrics at {url}" in line["message"] for line in logs), logs
