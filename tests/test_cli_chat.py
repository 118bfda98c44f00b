"""`threadwright chat` as a user runs it: a real subprocess against the scripted model."""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import sys
from pathlib import Path

from bot.testing import Reply, ScriptedOllama, tool_call

CONFIG = """
routing:
  local_model: "qwen3:4b"
  connect_timeout: 2
tools:
  bash:
    allowed_commands: [ls, cat, grep, python, pytest, git, env]
"""


call = tool_call  # the shared helper, under the short name these tests use


def workspace_with_config(tmp_path: Path) -> Path:
    ws = tmp_path / "project"
    ws.mkdir()
    (ws / "agent_config.yaml").write_text(CONFIG)
    (ws / "cli.py").write_text("import sys\nprint('hello')\n")
    return ws


def child_env(model_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OLLAMA", "THREADWRIGHT"))}
    env["OLLAMA_HOST"] = model_url
    env["SLACK_BOT_TOKEN"] = "xoxb-should-never-leak-123456"
    return env


async def run_chat(
    args: list[str], cwd: Path, env: dict[str, str], stdin: bytes | None = None, limit: float = 30
) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "chat",
        *args,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), limit)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_headless_multi_step_task_exits_zero(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    ws = workspace_with_config(tmp_path)
    scripted_ollama.script(
        Reply(content="Reading it.", tool_calls=[call("read_file", path="cli.py")]),
        Reply(
            tool_calls=[
                call(
                    "edit_file",
                    path="cli.py",
                    old_string="print('hello')",
                    new_string="print('hello', '--verbose' in sys.argv)",
                )
            ]
        ),
        Reply(
            tool_calls=[call("bash", command="python cli.py --verbose; env | grep -c xoxb || true")]
        ),
        Reply(content="Added the flag; it prints True."),
    )
    code, out, err = await run_chat(["add a --verbose flag"], ws, child_env(scripted_ollama.url))
    assert code == 0, err
    assert "Added the flag; it prints True." in out
    assert "bash: python cli.py --verbose" in out
    assert "print('hello', '--verbose' in sys.argv)" in (ws / "cli.py").read_text()
    bash_result = scripted_ollama.chat_requests[3]["messages"][-1]["content"]
    assert "hello True" in bash_result
    # The bot's Slack token never reached the tool's environment.
    assert "xoxb-should" not in bash_result and bash_result.rstrip().endswith("0")
    assert len(scripted_ollama.chat_requests) == 4


async def test_headless_json_events(scripted_ollama: ScriptedOllama, tmp_path: Path) -> None:
    ws = workspace_with_config(tmp_path)
    scripted_ollama.script(
        Reply(tool_calls=[call("glob", pattern="*.py")]), Reply(content="one file")
    )
    code, out, err = await run_chat(["--json", "list files"], ws, child_env(scripted_ollama.url))
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "step" and kinds[-1] == "done"
    assert "tool_call" in kinds and "tool_result" in kinds
    assert events[-1]["data"]["reason"] == "completed"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_headless_with_ollama_down_says_how_to_fix(tmp_path: Path) -> None:
    ws = workspace_with_config(tmp_path)
    url = f"http://127.0.0.1:{_closed_port()}"
    code, out, err = await run_chat(["do something"], ws, child_env(url))
    assert code != 0
    text = out + err
    assert url in text
    assert "ollama serve" in text and "OLLAMA_HOST" in text


async def test_headless_missing_model_says_pull(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    ws = workspace_with_config(tmp_path)
    scripted_ollama.script(Reply(status=404, error="model 'qwen3:4b' not found"))
    code, out, _ = await run_chat(["hi"], ws, child_env(scripted_ollama.url))
    assert code == 1
    assert "ollama pull qwen3:4b" in out


async def test_headless_denies_approvals_without_yes(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    ws = workspace_with_config(tmp_path)
    plugin_dir = tmp_path / "plugin"
    plugin_dir.mkdir()
    (plugin_dir / "tw_asker.py").write_text(
        "from bot import hookimpl\n\n"
        "@hookimpl\n"
        "def before_tool_call(call, session):\n"
        "    return ('ask', 'test policy asks') if call.name == 'bash' else None\n"
    )
    dist = plugin_dir / "tw_asker-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tw_asker\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[threadwright]\ntw_asker = tw_asker\n")
    env = child_env(scripted_ollama.url)
    env["PYTHONPATH"] = str(plugin_dir)
    scripted_ollama.script(
        Reply(tool_calls=[call("bash", command="touch made-it")]), Reply(content="ok")
    )
    code, _, err = await run_chat(["touch"], ws, env)
    assert code == 0, err
    assert not (ws / "made-it").exists()
    told = scripted_ollama.chat_requests[1]["messages"][-1]["content"]
    assert "headless" in told and "--yes" in told
    scripted_ollama.script(
        Reply(tool_calls=[call("bash", command="touch made-it")]), Reply(content="ok")
    )
    code, _, err = await run_chat(["--yes", "touch"], ws, env)
    assert code == 0, err
    assert (ws / "made-it").exists()


async def test_repl_steering_and_resume(scripted_ollama: ScriptedOllama, tmp_path: Path) -> None:
    ws = workspace_with_config(tmp_path)
    scripted_ollama.script(
        Reply(tool_calls=[call("bash", command="echo working")], delay=1.0),
        Reply(content="Using argparse as asked."),
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "chat",
        cwd=ws,
        env=child_env(scripted_ollama.url),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None
    proc.stdin.write(b"add a flag\n")
    await proc.stdin.drain()
    await scripted_ollama.wait_for_requests(1, timeout=15)
    proc.stdin.write(b"use argparse, not click\n")
    await proc.stdin.drain()
    await scripted_ollama.wait_for_requests(2, timeout=15)
    await asyncio.sleep(0.3)
    proc.stdin.close()
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    users = [
        m["content"] for m in scripted_ollama.chat_requests[1]["messages"] if m["role"] == "user"
    ]
    assert users[-1].endswith("use argparse, not click")
    assert "Using argparse as asked." in out.decode()

    # The session is stored; --resume continues it with its history.
    listing = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "sessions",
        "list",
        cwd=ws,
        env=child_env(scripted_ollama.url),
        stdout=asyncio.subprocess.PIPE,
    )
    listed, _ = await listing.communicate()
    session_id = listed.decode().split()[0]
    scripted_ollama.script(Reply(content="Continuing."))
    code, _, err2 = await run_chat(
        ["--resume", session_id[:6], "now add tests"], ws, child_env(scripted_ollama.url)
    )
    assert code == 0, err2
    resumed = [m.get("content") for m in scripted_ollama.chat_requests[2]["messages"]]
    assert "add a flag" in resumed and "Using argparse as asked." in resumed
    assert resumed[-1] == "now add tests"


async def test_ctrl_c_stops_the_step_and_kills_the_tool(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    import signal

    from tests.test_agent_loop import _processes_with

    ws = workspace_with_config(tmp_path)
    # Unique per run: concurrent test runs on one machine share the process table.
    marker = f"77.{random.randrange(10**9):09d}"
    (ws / "agent_config.yaml").write_text(CONFIG + "    timeout: 300\n")
    scripted_ollama.script(Reply(tool_calls=[call("bash", command=f"sleep {marker}")]))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "chat",
        "--yes",
        "wait a long time",
        cwd=ws,
        env=child_env(scripted_ollama.url),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(15):
        while not _processes_with(marker):  # noqa: ASYNC110 - polling /proc
            await asyncio.sleep(0.05)
    started = asyncio.get_running_loop().time()
    proc.send_signal(signal.SIGINT)
    out, _ = await asyncio.wait_for(proc.communicate(), 10)
    assert asyncio.get_running_loop().time() - started < 2.0
    assert proc.returncode == 1
    assert "Stopped by" in out.decode()
    assert _processes_with(marker) == []


def workspace_with_limits(tmp_path: Path, limits: str) -> Path:
    ws = workspace_with_config(tmp_path)
    (ws / "agent_config.yaml").write_text(CONFIG + "limits:\n" + limits)
    return ws


async def test_headless_runaway_is_cut_and_exits_nonzero(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    ws = workspace_with_limits(tmp_path, "  max_step_tokens: 40\n")
    # A server that ignores max tokens and would stream forever.
    scripted_ollama.script(Reply(runaway="again and ", chunk_size=5, ignore_max_tokens=True))
    code, out, err = await run_chat(["explain cli.py"], ws, child_env(scripted_ollama.url))
    assert code == 1, (out, err)
    assert "again and again and" in out
    assert "Stopped: the model's answer passed 40 tokens (limits.max_step_tokens)" in out
    footer = next(line for line in out.splitlines() if line.startswith("— "))
    assert "truncated" in footer and "⚠ answer cut by limits.max_step_tokens" in footer
    assert scripted_ollama.chat_requests[0]["options"]["num_predict"] == 40


async def test_headless_json_done_carries_the_truncation(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    ws = workspace_with_config(tmp_path)
    scripted_ollama.script(Reply(content="The answer is", done_reason="length", eval_count=4096))
    code, out, err = await run_chat(["--json", "explain"], ws, child_env(scripted_ollama.url))
    assert code == 1, (out, err)
    done = [json.loads(line) for line in out.splitlines() if line.strip()][-1]
    assert done["kind"] == "done" and done["text"] == "The answer is"
    assert done["data"]["reason"] == "truncated"
    assert done["data"]["stopped_by"] == "limits.max_step_tokens"
    assert "⚠ answer cut by limits.max_step_tokens" in done["data"]["footer"]
