"""Markdown directives in real runs: commands, allowed-tools, hot reload, skills, sub-agents."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from bot.events import AgentEventKind, ChatEventKind
from bot.testing import Reply, ScriptedOllama, tool_call
from bot.testing.harness import make_test_config, running_host

REFACTOR = """---
name: /refactor
description: Restructure code without changing behavior
argument-hint: <path>
complexity: medium
allowed-tools: Read, Grep
---
# Refactor Directive
Refactor $1 carefully. All arguments: $ARGUMENTS
"""


call = tool_call  # the shared helper, under the short name these tests use


def make_workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    (ws / ".agent" / "commands").mkdir(parents=True)
    (ws / ".agent" / "commands" / "refactor.md").write_text(REFACTOR)
    (ws / "src").mkdir()
    (ws / "src" / "utils.py").write_text("def f():\n    return 1\n")
    return ws


def first_user(request: dict[str, Any]) -> str:
    return next(m["content"] for m in request["messages"] if m["role"] == "user")


def tool_names(request: dict[str, Any]) -> set[str]:
    return {t["function"]["name"] for t in request.get("tools", [])}


async def test_console_command_expands_and_limits_tools(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    ws = make_workspace(tmp_path)
    (ws / "agent_config.yaml").write_text("routing:\n  local_model: qwen3:4b\n")
    scripted_ollama.script(Reply(content="Refactored."))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OLLAMA")}
    env["OLLAMA_HOST"] = scripted_ollama.url
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "chat",
        "/refactor src/utils.py --keep-api",
        cwd=ws,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    request = scripted_ollama.chat_requests[0]
    text = first_user(request)
    assert "# Refactor Directive" in text
    assert "Refactor src/utils.py carefully. All arguments: src/utils.py --keep-api" in text
    assert tool_names(request) == {"read_file", "grep"}


async def test_chat_command_paths(scripted_ollama: ScriptedOllama, tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    scripted_ollama.respond_with(lambda body: Reply(content="ok"))
    config = make_test_config(ws, scripted_ollama.url)
    async with running_host(config) as (_host, adapter):
        # A slash command delivered by the platform (Slack's /refactor).
        await adapter.say(
            "src/a.py", kind=ChatEventKind.COMMAND, command="refactor", thread=adapter.thread("c1")
        )
        await adapter.wait_turn()
        # `!refactor` typed as a message (Matrix), and `@bot /refactor` in a thread.
        await adapter.say("!refactor src/b.py", thread=adapter.thread("c2"))
        await adapter.wait_turn()
        await adapter.say("/refactor src/c.py", thread=adapter.thread("c3"), mention=True)
        await adapter.wait_turn()
        # An unknown "command" is just text.
        await adapter.say("/nonsense here", thread=adapter.thread("c4"))
        await adapter.wait_turn()
    firsts = [first_user(r) for r in scripted_ollama.chat_requests]
    assert "Refactor src/a.py carefully" in firsts[0]
    assert "Refactor src/b.py carefully" in firsts[1]
    assert "Refactor src/c.py carefully" in firsts[2]
    assert firsts[3] == "/nonsense here"
    assert all(tool_names(r) == {"read_file", "grep"} for r in scripted_ollama.chat_requests[:3])
    assert "bash" in tool_names(scripted_ollama.chat_requests[3])


async def test_help_lists_commands_and_hot_reload(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    ws = make_workspace(tmp_path)
    scripted_ollama.respond_with(lambda body: Reply(content="ok"))
    config = make_test_config(ws, scripted_ollama.url)
    path = ws / ".agent" / "commands" / "refactor.md"
    async with running_host(config) as (_host, adapter):
        await adapter.say("/help", thread=adapter.thread("h1"))
        help_text = adapter.notices[-1][1]
        assert "/refactor" in help_text and "<path>" in help_text
        assert "Restructure code without changing behavior" in help_text

        path.write_text(REFACTOR.replace("Refactor $1 carefully", "Rework $1 boldly"))
        await adapter.say("/refactor x.py", thread=adapter.thread("h2"))
        await adapter.wait_turn()
        assert "Rework x.py boldly" in first_user(scripted_ollama.chat_requests[-1])

        path.write_text("---\ndescription: [broken\n---\nbody\n")
        await adapter.say("/refactor y.py", thread=adapter.thread("h3"))
        await adapter.wait_turn()
        # The broken edit is reported; the last good version keeps working.
        assert "Rework y.py boldly" in first_user(scripted_ollama.chat_requests[-1])
        await adapter.say("/help", thread=adapter.thread("h4"))
        assert "refactor.md" in adapter.notices[-1][1]

        (ws / ".agent" / "commands" / "ship.md").write_text("Ship $ARGUMENTS now.\n")
        await adapter.say("/ship it", thread=adapter.thread("h5"))
        await adapter.wait_turn()
        assert first_user(scripted_ollama.chat_requests[-1]).strip() == "Ship it now."


async def test_skill_body_enters_context_only_when_loaded(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    ws = make_workspace(tmp_path)
    skill = ws / ".agent" / "skills" / "deploying"
    skill.mkdir(parents=True)
    (skill / "SKILL.md").write_text(
        "---\nname: deploying\ndescription: How this project deploys\n---\n"
        "SECRET-HANDSHAKE: run make deploy-canary first.\n"
    )
    scripted_ollama.script(
        Reply(content="Let me check the skill.", tool_calls=[call("load_skill", name="deploying")]),
        Reply(content="I will run make deploy-canary first."),
    )
    config = make_test_config(ws, scripted_ollama.url)
    async with running_host(config) as (_host, adapter):
        await adapter.say("deploy it")
        await adapter.wait_turn()
    first, second = scripted_ollama.chat_requests
    system = first["messages"][0]["content"]
    assert "deploying: How this project deploys" in system
    assert "SECRET-HANDSHAKE" not in str(first["messages"])
    assert "SECRET-HANDSHAKE" in second["messages"][-1]["content"]


async def test_subagent_runs_its_own_loop_and_returns_a_summary(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    ws = make_workspace(tmp_path)
    agents = ws / ".agent" / "agents"
    agents.mkdir(parents=True)
    (agents / "checker.md").write_text(
        "---\nname: checker\ndescription: Checks files\ntools: Read\n---\n"
        "You are CHECKER. Read the file and report.\n"
    )
    scripted_ollama.script(
        Reply(tool_calls=[call("delegate", agent="checker", task="check src/utils.py")]),
        Reply(tool_calls=[call("read_file", path="src/utils.py")]),  # the child's step 1
        Reply(content="utils.py defines f() returning 1."),  # the child's answer
        Reply(content="The checker says f() returns 1."),  # the parent's answer
    )
    config = make_test_config(ws, scripted_ollama.url)
    async with running_host(config) as (host, adapter):
        await adapter.say("check utils")
        turn = await adapter.wait_turn()
        children = [r for r in await host.runtime.store.list_sessions() if r.meta.get("subagent")]
        assert len(children) == 1 and children[0].meta["parent"] == turn.session_id
        child_transcript = await host.runtime.store.load_messages(children[0].id)
    parent_first, child_first, child_second, parent_second = scripted_ollama.chat_requests
    assert "Sub-agents" in parent_first["messages"][0]["content"]
    assert child_first["messages"][0]["content"].startswith("You are CHECKER.")
    assert tool_names(child_first) == {"read_file"}
    assert "def f()" in child_second["messages"][-1]["content"]
    assert parent_second["messages"][-1]["content"] == "utils.py defines f() returning 1."
    assert [m["role"] for m in child_transcript][:2] == ["user", "assistant"]
    # The child's tool call streamed into the parent's reply.
    assert any(
        e.kind is AgentEventKind.TOOL_CALL and e.data.get("subagent") == "checker"
        for e in turn.events
    )
