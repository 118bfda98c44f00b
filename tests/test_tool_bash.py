"""The bash tool and the process runner: real processes, real process groups."""

from __future__ import annotations

import asyncio
import logging
import os
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from bot.config import Config, load_config
from bot.tools.base import Tool, ToolContext
from bot.tools.environment import build_tool_env
from bot.tools.process import ResourceLimits, run_process
from plugins.tools import bash as bash_plugin

SECRET = "xoxb-fake-secret-0123456789"


def make_config(tmp_path: Path, env: dict[str, str] | None = None, **tools: Any) -> Config:
    """These tests check the process runner itself (pids, groups): no sandbox unless asked;
    tests/test_sandbox.py covers bwrap."""
    file = tmp_path / "agent_config.yaml"
    file.write_text("{}\n")
    tools.setdefault("bash", {})
    tools["bash"] = {"sandbox": "none", **tools["bash"]}
    return load_config(file, env=env or {}, overrides={"tools": tools})


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    return path.resolve()


def make_ctx(tmp_path: Path, workspace: Path, config: Config, **extras: Any) -> ToolContext:
    env = build_tool_env(config, workspace, home=tmp_path / "home")
    return ToolContext(workspace=workspace, config=config, env=env, extras=extras)


BASH = Tool.from_function(bash_plugin.bash)


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie (an unreaped zombie has already died)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    return fields[0] != "Z"


async def wait_all_dead(pids: list[int], within: float = 2.0) -> list[int]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        living = [pid for pid in pids if alive(pid)]
        if not living:
            return []
        await asyncio.sleep(0.02)
    return [pid for pid in pids if alive(pid)]


async def test_stdout_stderr_and_exit_code_kept_apart(tmp_path: Path, workspace: Path) -> None:
    ctx = make_ctx(tmp_path, workspace, make_config(tmp_path))
    result = await BASH(ctx, {"command": "echo out; echo err >&2; exit 3"})
    assert result.ok is False
    assert result.stdout == "out\n"
    assert result.stderr == "err\n"
    assert result.exit_code == 3
    assert result.error == "exited with code 3"
    text = result.for_model()
    assert text.startswith("ERROR: exited with code 3")
    assert text.index("err") < text.index("out")
    assert result.metadata["command"] == "echo out; echo err >&2; exit 3"
    assert result.metadata["duration_ms"] >= 0


async def test_success_runs_in_the_workspace(tmp_path: Path, workspace: Path) -> None:
    ctx = make_ctx(tmp_path, workspace, make_config(tmp_path))
    result = await BASH(ctx, {"command": "pwd; cat"})  # cat must see EOF, not hang on stdin
    assert result.ok is True
    assert result.exit_code == 0
    assert result.stdout.strip() == str(workspace)


async def test_timeout_kills_the_whole_group(tmp_path: Path, workspace: Path) -> None:
    ctx = make_ctx(tmp_path, workspace, make_config(tmp_path))
    started = time.monotonic()
    result = await BASH(ctx, {"command": "echo $$; sleep 100 & echo $!; sleep 100", "timeout": 0.5})
    assert time.monotonic() - started < 3
    assert result.ok is False
    assert result.error == "timed out after 0.5 s (process group killed)"
    leader, background = (int(line) for line in result.stdout.split())
    assert await wait_all_dead([leader, background]) == []
    with pytest.raises(ProcessLookupError):
        _signal_group_unless_only_zombies(leader)


def _signal_group_unless_only_zombies(pgid: int) -> None:
    os.killpg(pgid, 0)  # raises ProcessLookupError once the group is empty
    members = [p for p in os.listdir("/proc") if p.isdigit() and _pgrp(int(p)) == pgid]
    if not any(alive(int(p)) for p in members):
        raise ProcessLookupError  # only zombies awaiting a reaper are left


def _pgrp(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[2])
    except (FileNotFoundError, IndexError, ValueError):
        return None


async def test_background_job_does_not_outlive_the_command(tmp_path: Path, workspace: Path) -> None:
    ctx = make_ctx(tmp_path, workspace, make_config(tmp_path))
    result = await BASH(ctx, {"command": "sleep 100 >/dev/null 2>&1 & echo $!"})
    assert result.ok is True
    assert await wait_all_dead([int(result.stdout)]) == []


async def test_requested_timeout_is_capped_by_config(tmp_path: Path, workspace: Path) -> None:
    ctx = make_ctx(tmp_path, workspace, make_config(tmp_path, bash={"timeout": 1}))
    result = await BASH(ctx, {"command": "sleep 30", "timeout": 50})
    assert result.error == "timed out after 1 s (process group killed)"
    assert result.exit_code is None
    bad = await BASH(ctx, {"command": "true", "timeout": 0})
    assert bad.ok is False and "positive" in (bad.error or "")


async def test_cancellation_returns_fast_and_leaves_nothing(
    tmp_path: Path, workspace: Path
) -> None:
    ctx = make_ctx(tmp_path, workspace, make_config(tmp_path))
    pids_file = workspace / "pids"
    command = "echo $$ > pids; sh -c 'echo $$ >> pids; sleep 100 & echo $! >> pids; sleep 100'"
    task = asyncio.create_task(BASH(ctx, {"command": command}))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if pids_file.exists() and len(pids_file.read_text().split()) == 3:
            break
        await asyncio.sleep(0.02)
    pids = [int(p) for p in pids_file.read_text().split()]
    assert all(alive(pid) for pid in pids)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 1.0
    assert await wait_all_dead(pids, within=0.5) == []


async def test_run_process_cancel_of_plain_sleep(workspace: Path) -> None:
    task = asyncio.create_task(
        run_process(
            ["sleep", "100"], cwd=workspace, env={"PATH": os.environ["PATH"]},
            timeout=60, max_output_bytes=1024,
        )
    )  # fmt: skip
    await asyncio.sleep(0.3)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 1.0


async def test_huge_output_is_truncated_with_bounded_memory(
    tmp_path: Path, workspace: Path
) -> None:
    ctx = make_ctx(tmp_path, workspace, make_config(tmp_path, bash={"max_output_bytes": 4096}))
    tracemalloc.start()
    try:
        result = await BASH(ctx, {"command": "head -c 10000000 /dev/zero | tr '\\0' a"})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.ok is True
    assert result.truncated is True
    assert "\n[… 9,995,904 bytes truncated …]\n" in result.stdout
    head, tail = result.stdout.split("\n[… 9,995,904 bytes truncated …]\n")
    assert head == "a" * 2048 and tail == "a" * 2048
    assert peak < 3_000_000  # 10 MB went through; a few read buffers at most were held


async def test_env_holds_no_secret(
    tmp_path: Path, workspace: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", SECRET)
    monkeypatch.setenv("INNOCENT_LOOKING", SECRET)
    monkeypatch.setenv("DATABASE_URL", f"postgres://bot:{SECRET}@db/app")
    monkeypatch.setenv("GREETING", "hello")
    monkeypatch.setenv("UNLISTED", "not passed")
    passthrough = '["SLACK_BOT_TOKEN", "INNOCENT_LOOKING", "DATABASE_URL", "GREETING"]'
    config = make_config(
        tmp_path,
        env={"SLACK_BOT_TOKEN": SECRET, "THREADWRIGHT__TOOLS__BASH__ENV_PASSTHROUGH": passthrough},
    )
    with caplog.at_level(logging.WARNING, logger="bot.tools.environment"):
        ctx = make_ctx(tmp_path, workspace, config)
    result = await BASH(ctx, {"command": "env"})
    assert result.ok is True
    assert SECRET not in result.stdout
    assert "GREETING=hello\n" in result.stdout
    assert "TERM=dumb\n" in result.stdout and "GIT_TERMINAL_PROMPT=0\n" in result.stdout
    assert "UNLISTED" not in result.stdout
    assert f"HOME={tmp_path / 'home'}\n" in result.stdout
    for name in ("SLACK_BOT_TOKEN", "INNOCENT_LOOKING", "DATABASE_URL"):
        assert name in caplog.text and name not in result.stdout
    assert SECRET not in caplog.text


def test_default_home_is_private_and_not_the_users(tmp_path: Path, workspace: Path) -> None:
    config = make_config(tmp_path)
    env = build_tool_env(config, workspace, base={"PATH": "/bin"})
    home = Path(env["HOME"])
    assert env["PATH"] == "/bin"
    assert home != Path.home() and home != workspace
    assert home.is_dir() and (home.stat().st_mode & 0o077) == 0
    assert build_tool_env(config, workspace, base={})["HOME"] == env["HOME"]


async def test_context_without_env_gets_a_scrubbed_one(
    tmp_path: Path, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLACK_APP_TOKEN", SECRET)
    ctx = ToolContext(workspace=workspace, config=make_config(tmp_path))
    result = await BASH(ctx, {"command": "echo $TERM; env"})
    assert result.stdout.startswith("dumb\n")
    assert SECRET not in result.stdout


async def test_killed_by_signal_is_reported(tmp_path: Path, workspace: Path) -> None:
    ctx = make_ctx(tmp_path, workspace, make_config(tmp_path))
    result = await BASH(ctx, {"command": "kill -9 $$"})
    assert result.ok is False
    assert result.error == "killed by signal SIGKILL"


async def test_sandbox_seam_wraps_the_argv(tmp_path: Path, workspace: Path) -> None:
    seen: list[list[str]] = []

    def wrap(argv: list[str]) -> list[str]:
        seen.append(argv)
        return ["/usr/bin/env", "WRAPPED=yes", *argv]

    ctx = make_ctx(tmp_path, workspace, make_config(tmp_path), wrap_argv=wrap)
    result = await BASH(ctx, {"command": "echo $WRAPPED"})
    assert result.stdout == "yes\n"
    (argv,) = seen
    assert argv[:2] == ["/bin/bash", "-c"] and argv[2].endswith("; echo $WRAPPED")


async def test_resource_limits_apply(tmp_path: Path, workspace: Path) -> None:
    limits = ResourceLimits(file_size_bytes=1024)
    ctx = make_ctx(tmp_path, workspace, make_config(tmp_path), resource_limits=limits)
    result = await BASH(ctx, {"command": "ulimit -c; head -c 4096 /dev/zero > big"})
    assert result.ok is False
    assert (workspace / "big").stat().st_size <= 1024
    default = make_ctx(tmp_path, workspace, make_config(tmp_path))
    cores = await BASH(default, {"command": "ulimit -c"})
    assert cores.stdout == "0\n"


async def test_invalid_arguments_become_a_failure(tmp_path: Path, workspace: Path) -> None:
    ctx = make_ctx(tmp_path, workspace, make_config(tmp_path))
    missing = await BASH(ctx, {})
    assert missing.ok is False and "invalid arguments for bash" in (missing.error or "")
    empty = await BASH(ctx, {"command": "  "})
    assert empty.ok is False and empty.error == "command is empty"


async def test_missing_program_without_launcher_is_a_tool_error(workspace: Path) -> None:
    from bot.tools.base import ToolError

    with pytest.raises(ToolError, match="cannot start"):
        await run_process(
            ["/nonexistent/program"], cwd=workspace, env={}, timeout=5,
            max_output_bytes=1024, limits=None,
        )  # fmt: skip


def test_register_tools_registers_bash(tmp_path: Path) -> None:
    registered: list[Any] = []
    bash_plugin.register_tools(registered.append, make_config(tmp_path))
    assert [fn.__name__ for fn in registered] == ["bash"]
    tool = Tool.from_function(registered[0])
    assert tool.parameters["required"] == ["command"]
    assert "timeout" in tool.parameters["properties"]
    assert tool.parameters["properties"]["command"]["description"]


async def test_resource_limits_apply_to_the_command(tmp_path: Path, workspace: Path) -> None:
    config = make_config(tmp_path)
    limits = ResourceLimits(file_size_bytes=4096, cpu_seconds=2)
    outcome = await run_process(
        ["/bin/bash", "-c", "ulimit -f; ulimit -t; head -c 10000 /dev/zero > big.bin"],
        cwd=workspace,
        env=build_tool_env(config, workspace),
        timeout=10,
        max_output_bytes=10_000,
        limits=limits,
    )
    # bash reports -f in 1024-byte blocks: 4096 bytes → 4.
    assert outcome.stdout.split() == ["4", "2"]
    assert outcome.exit_code != 0
    assert (workspace / "big.bin").stat().st_size == 4096
