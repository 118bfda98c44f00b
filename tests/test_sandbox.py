"""The bwrap sandbox around `bash`: read-only system, private /tmp, no network, hidden home."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import Config, load_config
from bot.policy.sandbox import bwrap_path
from bot.tools.base import Tool, ToolContext
from bot.tools.environment import build_tool_env
from plugins.tools.bash import bash
from tests.test_agent_loop import _processes_with

BASH = Tool.from_function(bash)


def exists_on_host(path: str) -> bool:
    return os.path.exists(path)


def make_ctx(tmp_path: Path, **bash_config: Any) -> ToolContext:
    file = tmp_path / "agent_config.yaml"
    file.write_text("{}\n")
    config: Config = load_config(
        file,
        env={},
        overrides={
            "tools": {"bash": {"sandbox": "bwrap", **bash_config}},
            "store": {"path": str(tmp_path / "state" / "tw.db")},
        },
    )
    workspace = tmp_path / "ws"
    workspace.mkdir(exist_ok=True)
    workspace = workspace.resolve()
    return ToolContext(workspace=workspace, config=config, env=build_tool_env(config, workspace))


def test_bwrap_is_usable_here() -> None:
    # .ci/run installs bubblewrap; without it the sandbox tests below would prove nothing.
    assert bwrap_path() is not None, "install bubblewrap (apt-get install bubblewrap)"


async def test_system_is_read_only_and_workspace_writable(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    result = await BASH(ctx, {"command": "touch /etc/tw-sandbox-probe; echo ok > here.txt"})
    assert "Read-only file system" in result.stderr
    assert not exists_on_host("/etc/tw-sandbox-probe")
    assert (ctx.workspace / "here.txt").read_text() == "ok\n"


async def test_tmp_is_private(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    probe = f"/tmp/tw-sandbox-{time.time_ns()}"
    result = await BASH(ctx, {"command": f"echo inside > {probe} && cat {probe}"})
    assert result.ok and result.stdout == "inside\n"
    assert not exists_on_host(probe)


async def test_no_network_unless_configured(tmp_path: Path) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    command = f"exec 3<>/dev/tcp/127.0.0.1/{port} && head -1 <&3"
    try:
        closed = await BASH(make_ctx(tmp_path), {"command": command})
        assert not closed.ok and "hello" not in closed.stdout
        opened = await BASH(make_ctx(tmp_path, network=True), {"command": command})
        assert opened.ok and opened.stdout == "hello\n"
    finally:
        server.close()
        await server.wait_closed()


async def test_bot_home_and_store_are_hidden(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "bot-home"
    home.mkdir()
    (home / ".netrc").write_text("machine x password hunter2\n")
    monkeypatch.setenv("HOME", str(home))
    ctx = make_ctx(tmp_path)
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    (state / "tw.db").write_text("transcripts")
    result = await BASH(ctx, {"command": f"cat {home}/.netrc; cat {state}/tw.db; ls -A {home}"})
    assert "hunter2" not in result.stdout and "transcripts" not in result.stdout
    assert result.stdout.strip() == ""


async def test_stop_kills_everything_inside(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, timeout=300)
    # Unique per run: concurrent test runs on one machine share the process table.
    marker = f"88.{random.randrange(10**9):09d}"
    task = asyncio.create_task(
        BASH(ctx, {"command": f"sleep {marker} & sleep {marker}; echo never"})
    )
    async with asyncio.timeout(10):
        while len(_processes_with(f"sleep {marker}")) < 2:  # noqa: ASYNC110 - polling /proc
            await asyncio.sleep(0.02)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 1.0
    async with asyncio.timeout(3):
        while _processes_with(f"sleep {marker}"):  # noqa: ASYNC110 - polling /proc
            await asyncio.sleep(0.02)


async def test_the_store_inside_the_workspace_stays_hidden(tmp_path: Path) -> None:
    # The console works in place with its store under the workspace: the workspace
    # bind must not bring the store back.
    file = tmp_path / "agent_config.yaml"
    file.write_text("{}\n")
    workspace = (tmp_path / "ws").resolve()
    (workspace / ".threadwright").mkdir(parents=True)
    (workspace / ".threadwright" / "tw.db").write_text("transcripts")
    config = load_config(
        file,
        env={},
        overrides={
            "tools": {"bash": {"sandbox": "bwrap"}},
            "workspace": {"root": str(workspace)},
            "store": {"path": str(workspace / ".threadwright" / "tw.db")},
        },
    )
    ctx = ToolContext(workspace=workspace, config=config, env=build_tool_env(config, workspace))
    result = await BASH(ctx, {"command": "cat .threadwright/tw.db; echo x > .threadwright/y"})
    assert "transcripts" not in result.stdout
    assert not (workspace / ".threadwright" / "y").exists()


async def test_a_path_entry_in_the_hidden_home_exposes_only_its_toolchain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "bot-home"
    project = home / "project"
    venv_bin = project / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    tool = venv_bin / "hello-tool"
    tool.write_text("#!/bin/sh\necho hello from the venv\n")
    tool.chmod(0o755)
    (project / ".env").write_text("API_TOKEN=hunter2\n")
    monkeypatch.setenv("HOME", str(home))
    ctx = make_ctx(tmp_path)
    ctx.env = {**ctx.env, "PATH": f"{venv_bin}:{ctx.env['PATH']}"}
    result = await BASH(ctx, {"command": f"hello-tool; cat {project}/.env; ls -A {project}"})
    assert "hello from the venv" in result.stdout
    assert "hunter2" not in result.stdout
    assert result.stdout.split() == ["hello", "from", "the", "venv", ".venv"]


async def test_no_capabilities_inside(tmp_path: Path) -> None:
    result = await BASH(make_ctx(tmp_path), {"command": "grep CapEff /proc/self/status"})
    assert result.ok and result.stdout.split() == ["CapEff:", "0000000000000000"]


async def test_a_fork_bomb_stops_at_the_process_limit(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, max_processes=32, timeout=20)
    # 200 sleepers would be 200 processes; the limit stops forking well before.
    marker = f"77.{random.randrange(10**9):09d}"
    command = f"for i in $(seq 200); do sleep {marker} & done; echo tried"
    task = asyncio.create_task(BASH(ctx, {"command": command}))
    most = 0
    while not task.done():
        most = max(most, len(_processes_with(f"sleep {marker}")))
        await asyncio.sleep(0.05)
    result = task.result()
    assert "Resource temporarily unavailable" in result.stderr
    assert 0 < most <= 32, most
    assert not _processes_with(f"sleep {marker}")  # and nothing outlives the command


async def test_tmp_memory_and_file_size_are_limited(tmp_path: Path) -> None:
    small_tmp = make_ctx(tmp_path, tmp_size_mb=1)
    tmp = await BASH(small_tmp, {"command": "head -c 3000000 /dev/zero > /tmp/big"})
    assert "No space left on device" in tmp.stderr
    ctx = make_ctx(tmp_path, max_file_size_mb=1, max_memory_mb=256)
    big = await BASH(ctx, {"command": "head -c 3000000 /dev/zero > big.bin"})
    assert not big.ok
    assert (ctx.workspace / "big.bin").stat().st_size <= 1024 * 1024
    memory = await BASH(ctx, {"command": "python3 -c 'x = bytearray(512 * 1024 * 1024)'"})
    assert "MemoryError" in memory.stderr


@pytest.fixture
def outside_tmp() -> Iterator[Path]:
    """A directory outside /tmp, which the sandbox hides wholesale anyway."""
    path = Path(tempfile.mkdtemp(prefix="tw-sandbox-", dir="/var/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def test_the_deployments_secrets_and_matrix_keys_are_hidden(
    tmp_path: Path, outside_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    etc = outside_tmp / "etc-threadwright"
    etc.mkdir()
    (etc / "env").write_text("SLACK_BOT_TOKEN=hunter2-slack\n")
    monkeypatch.setattr("bot.policy.sandbox_view.ETC_DIR", etc)
    ctx = make_ctx(tmp_path)
    keys = outside_tmp / "matrix-store"
    keys.mkdir()
    (keys / "device.db").write_text("hunter2-olm")
    ctx.config.matrix.store_path = str(keys)
    result = await BASH(ctx, {"command": f"cat {etc}/env {keys}/device.db; ls -A {etc} {keys}"})
    assert "hunter2" not in result.stdout and "env" not in result.stdout.split()
