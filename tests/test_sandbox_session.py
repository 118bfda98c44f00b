"""The sandbox as a session sees it, through the real loop: only its own worktree is
visible, and where bubblewrap cannot run, nothing runs unseen."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.events import AgentEventKind
from bot.policy.sandbox import bwrap_path, bwrap_support
from bot.testing import Reply, ScriptedOllama, tool_call
from bot.testing.harness import RecordingAdapter, ScriptedApprover, running_host
from tests.test_host_git_safety import tool_outputs
from tests.test_workspaces import config_for, done_of, make_repo

needs_bwrap = pytest.mark.skipif(bwrap_path() is None, reason="bubblewrap cannot run here")


@needs_bwrap
async def test_a_session_sees_only_its_own_worktree(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path)
    (repo / ".env").write_text("DATABASE_PASSWORD=hunter2\n")
    config = config_for(repo, scripted_ollama.url)
    config.tools.bash.sandbox = "bwrap"
    scripted_ollama.script(
        Reply(tool_calls=[tool_call("write_file", path="mine.txt", content="a\n")]),
        Reply(content="first done"),
    )
    async with running_host(config) as (host, adapter):
        await adapter.say("first thread", thread=adapter.thread("a"))
        await host.sessions.drain(20)
        first = await host.sessions.get_session(adapter.thread("a"))
        assert first is not None
        other = first.workspace
        probe = (
            f"ls {other} 2>&1; cat {repo}/.env 2>&1; ls -A {repo} 2>&1; "
            "git log --oneline -1; echo planted > mine-too.txt; cat mine-too.txt"
        )
        scripted_ollama.script(
            Reply(tool_calls=[tool_call("bash", command=probe)]), Reply(content="second done")
        )
        await adapter.say("second thread", thread=adapter.thread("b"))
        await host.sessions.drain(20)
    assert done_of(adapter.turns[1]).data["reason"] == "completed"
    output = tool_outputs(scripted_ollama)[-1]
    assert "mine.txt" not in output  # the other thread's worktree is not there
    lines = output.splitlines()
    assert "hunter2" not in output and ".env" not in lines  # nor the main checkout,
    assert ".git" in lines  # but for the git data the worktree's git reads
    assert "initial" in output  # git works in the session's own worktree
    assert "planted" in output  # which is writable


@pytest.fixture
def broken_bwrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A host where bwrap exists but cannot build a sandbox (as under Docker's defaults)."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    fake = bin_dir / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    bwrap_support.cache_clear()
    yield
    bwrap_support.cache_clear()


@pytest.mark.usefixtures("broken_bwrap")
@pytest.mark.parametrize("mode", ["ask", "allowlist"])
async def test_auto_without_a_working_sandbox_fails_closed(
    scripted_ollama: ScriptedOllama, tmp_path: Path, mode: str
) -> None:
    assert bwrap_path() is None
    repo = make_repo(tmp_path)
    config = config_for(repo, scripted_ollama.url, isolation="none")
    config.tools.bash.sandbox = "auto"
    config.access.permission_mode = mode
    scripted_ollama.script(
        Reply(tool_calls=[tool_call("bash", command="echo ran > ran.txt")]),
        Reply(content="done"),
    )
    approver = ScriptedApprover()
    async with running_host(config, adapter=RecordingAdapter(approver=approver)) as (
        host,
        adapter,
    ):
        await adapter.say("write a file", thread=adapter.thread("nosandbox"))
        await host.sessions.drain(20)
    turn = adapter.turns[0]
    assert not (repo / "ran.txt").exists()  # the test approver denies; nothing ran
    notices = [e.text for e in turn.of(AgentEventKind.NOTICE)]
    assert any("without a sandbox" in n and "No permissions" in n for n in notices), notices
    result = tool_outputs(scripted_ollama)[-1]
    assert "no sandbox on this host" in result
    if mode == "ask":
        assert approver.requests, "an approver was asked"
    else:
        assert not approver.requests and "allowlist" in result
