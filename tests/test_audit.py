"""The audit log: every tool call, allowed or refused, with who asked and the verdict."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from bot.testing import Reply, ScriptedOllama
from bot.testing.harness import make_test_config, running_host


async def test_every_call_is_audited_and_filterable(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    scripted_ollama.script(
        Reply(tool_calls=[{"name": "bash", "arguments": {"command": "ls | grep x; git status"}}]),
        Reply(tool_calls=[{"name": "bash", "arguments": {"command": "rm -rf build"}}]),
        Reply(tool_calls=[{"name": "read_file", "arguments": {"path": "../etc"}}]),
        Reply(content="done"),
    )
    config = make_test_config(ws, scripted_ollama.url)
    async with running_host(config) as (host, adapter):
        await adapter.say("do things", user="bob")
        turn = await adapter.wait_turn()
        entries = await host.runtime.store.list_audit()
    assert [e.tool for e in entries] == ["read_file", "bash", "bash"]
    read, denied, allowed = entries
    assert allowed.ran == "bash: ls | grep | git" and allowed.verdict == "allowed"
    assert allowed.requester == "bob" and allowed.session_id == turn.session_id
    assert denied.ran == "bash: rm" and denied.verdict.startswith("denied") and not denied.ok
    assert read.verdict == "allowed" and not read.ok  # ran, and failed: outside the workspace

    # The CLI lists and filters the same log.
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "--config",
        str(_config_file(tmp_path, config)),
        "audit",
        "--tool",
        "bash",
        "--verdict",
        "denied",
        "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    rows = [json.loads(line) for line in out.decode().splitlines()]
    assert [r["ran"] for r in rows] == ["bash: rm"]
    assert rows[0]["thread"].startswith("test|room|")


def _config_file(tmp_path: Path, config: object) -> Path:
    path = tmp_path / "audit-config.yaml"
    path.write_text(f"store:\n  path: {config.store.path}\n")  # type: ignore[attr-defined]
    return path
