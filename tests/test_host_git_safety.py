"""The bot's own git runs outside the sandbox: nothing the agent writes may make it run code.

Each test plays an attack through the real loop: the scripted model writes git
configuration where the agent can (the tools' private HOME, a worktree's
``.git`` file, the repository's ``.git/config``), then makes the bot run git on
the host: the grep tool's file listing and the commit at the end of a turn.
A program the attack names would create a marker file on the host; it must not
appear, and the bot's commit must land on the thread's real branch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from bot.policy.sandbox import bwrap_path
from bot.testing import Reply, ScriptedOllama, tool_call
from bot.testing.harness import RecordedTurn, running_host
from bot.tools.environment import build_tool_env
from bot.workspaces.git import host_git_env
from tests.test_workspaces import config_for, done_of, footer_value, git, make_repo

ALLOWED = ["ls", "cat", "grep", "python", "pytest", "git", "echo"]

needs_bwrap = pytest.mark.skipif(bwrap_path() is None, reason="bubblewrap cannot run here")


def python(code: str) -> dict[str, Any]:
    """A bash tool call running ``code`` with the allow-listed interpreter."""
    return tool_call("bash", command=f"python -c {json.dumps(code)}")


def fsmonitor_config(marker: Path) -> str:
    """Git configuration that runs ``touch marker`` from every git that refreshes the index,
    and from a pager, an editor or a hook."""
    hooks = marker.parent / f"{marker.name}-hooks"
    return (
        "[core]\n"
        f'\tfsmonitor = "touch {marker}; false"\n'
        f'\tpager = "touch {marker}; cat"\n'
        f'\teditor = "touch {marker}; true"\n'
        f"\thooksPath = {hooks}\n"
    )


def plant_hooks(marker: Path) -> None:
    hooks = marker.parent / f"{marker.name}-hooks"
    hooks.mkdir(exist_ok=True)
    for name in ("pre-commit", "post-commit", "commit-msg", "pre-push", "post-checkout"):
        hook = hooks / name
        hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
        hook.chmod(0o755)


def steps(*calls: dict[str, Any]) -> list[Reply]:
    """One tool call per step, then a plain answer."""
    return [*(Reply(tool_calls=[c]) for c in calls), Reply(content="done")]


def tool_outputs(scripted: ScriptedOllama) -> list[str]:
    return [
        str(m.get("content", ""))
        for body in scripted.chat_requests
        for m in body.get("messages", [])
        if m.get("role") == "tool"
    ]


def only_turn(adapter: Any) -> RecordedTurn:
    assert len(adapter.turns) == 1
    return adapter.turns[0]


def test_host_git_never_reads_the_tools_home(tmp_path: Path) -> None:
    config = config_for(make_repo(tmp_path), "http://127.0.0.1:9")
    tools = build_tool_env(config, config.workspace_path())
    host = host_git_env(config)
    assert host["HOME"] != tools["HOME"]
    assert host["GIT_CONFIG_GLOBAL"] == os.devnull and host["GIT_CONFIG_NOSYSTEM"] == "1"
    # The host's git home is beside the store, which the sandbox hides.
    assert Path(host["HOME"]).parent == config.store_path().resolve().parent
    forced = {
        host[f"GIT_CONFIG_KEY_{i}"]: host[f"GIT_CONFIG_VALUE_{i}"]
        for i in range(int(host["GIT_CONFIG_COUNT"]))
    }
    assert forced["core.fsmonitor"] == "false" and forced["core.hooksPath"] == "/dev/null"


@needs_bwrap
async def test_a_gitconfig_in_the_tools_home_never_runs_on_the_host(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path)
    marker = tmp_path / "pwned-home"
    plant_hooks(marker)
    scripted_ollama.script(
        *steps(
            # Inside the sandbox: HOME is the tools' private home, writable there.
            python(
                "import os; open(os.path.expanduser('~/.gitconfig'), 'w').write("
                f"{fsmonitor_config(marker)!r})"
            ),
            tool_call("write_file", path="notes.txt", content="work\n"),
            tool_call("grep", pattern="hello"),
        )
    )
    config = config_for(repo, scripted_ollama.url)
    config.tools.bash.sandbox = "bwrap"
    config.tools.bash.allowed_commands = ALLOWED
    async with running_host(config) as (host, adapter):
        await adapter.say("take notes", thread=adapter.thread("home"))
        await host.sessions.drain(20)
        session = await host.sessions.get_session(adapter.thread("home"))
    assert session is not None
    turn = only_turn(adapter)
    assert done_of(turn).data["reason"] == "completed"
    # The attack itself worked inside the sandbox: the file is there for the host to find.
    home = Path(build_tool_env(config, session.workspace)["HOME"])
    assert "fsmonitor" in (home / ".gitconfig").read_text()
    assert any("README.md" in out for out in tool_outputs(scripted_ollama))
    assert not marker.exists(), "the tools' ~/.gitconfig ran a program as the bot"
    branch = footer_value(turn, "branch ")
    assert git(repo, "show", f"{branch}:notes.txt") == "work"


async def test_a_rewritten_worktree_dot_git_file_is_never_followed(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path)
    marker = tmp_path / "pwned-dotgit"
    plant_hooks(marker)
    planted_config = fsmonitor_config(marker)
    planted = tmp_path / "planted"
    scripted_ollama.script(
        *steps(
            # Unsandboxed, as with tools.bash.sandbox: none: plant a repository with
            # hostile config and point the worktree's .git file at it.
            python(
                f"import subprocess; subprocess.run(['git', 'init', '-q', {str(planted)!r}]); "
                f"open({str(planted / '.git' / 'config')!r}, 'a').write({planted_config!r}); "
                f"open('.git', 'w').write('gitdir: {planted / '.git'}\\n')"
            ),
            tool_call("write_file", path="notes.txt", content="work\n"),
            tool_call("grep", pattern="hello"),
        )
    )
    config = config_for(repo, scripted_ollama.url)
    config.tools.bash.sandbox = "none"
    config.tools.bash.allowed_commands = ALLOWED
    async with running_host(config) as (host, adapter):
        await adapter.say("take notes", thread=adapter.thread("dotgit"))
        await host.sessions.drain(20)
    turn = only_turn(adapter)
    assert done_of(turn).data["reason"] == "completed"
    assert not marker.exists(), "a planted .git file made the bot's git run a program"
    # The commit went to the thread's branch in the real repository, not to the plant.
    branch = footer_value(turn, "branch ")
    assert git(repo, "show", f"{branch}:notes.txt") == "work"


@pytest.mark.parametrize("sandbox", ["none", pytest.param("bwrap", marks=needs_bwrap)])
async def test_repository_config_the_agent_writes_runs_nothing_on_the_host(
    scripted_ollama: ScriptedOllama, tmp_path: Path, sandbox: str
) -> None:
    repo = make_repo(tmp_path)
    marker = tmp_path / "pwned-config"
    plant_hooks(marker)
    before = (repo / ".git" / "config").read_text()
    scripted_ollama.script(
        *steps(
            python(f"open('.git/config', 'a').write({fsmonitor_config(marker)!r})"),
            tool_call("write_file", path="notes.txt", content="work\n"),
            tool_call("grep", pattern="hello"),
        )
    )
    config = config_for(repo, scripted_ollama.url, isolation="none")
    config.tools.bash.sandbox = sandbox
    config.tools.bash.allowed_commands = ALLOWED
    async with running_host(config) as (host, adapter):
        await adapter.say("take notes", thread=adapter.thread("config"))
        await host.sessions.drain(20)
    turn = only_turn(adapter)
    assert done_of(turn).data["reason"] == "completed"
    outputs = tool_outputs(scripted_ollama)
    assert any("README.md" in out for out in outputs), outputs
    assert not marker.exists(), "the repository's config ran a program as the bot"
    if sandbox == "bwrap":
        # Inside the sandbox git's own data is read-only: the write itself failed.
        assert "Read-only file system" in outputs[0]
        assert (repo / ".git" / "config").read_text() == before
