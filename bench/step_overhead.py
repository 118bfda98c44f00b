"""Benchmark: per-step harness overhead of `threadwright chat`, against a null agent.

A 40-step loop: every step the scripted model (answering instantly over
loopback, TCP_NODELAY) asks for `bash: echo step`; then it answers. Figures:

- overhead per step: from the last byte of one model answer to the arrival of
  the next model request (the tool run included), median and p90;
- the same for a null agent (raw HTTP keep-alive + subprocess), the floor;
- process start to the first model request;
- peak RSS of the `threadwright chat` process;
- the per-step figure again with commands in the bubblewrap sandbox.

Commands run unsandboxed for the main figures, like the null agent's.

Run: ``.venv/bin/python bench/step_overhead.py [--steps 40] [--runs 3]``.
Targets (issue 2): overhead ≤ 3 ms median, start → first request ≤ 0.6 s,
peak RSS ≤ 80 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.testing import Reply, ScriptedOllama  # noqa: E402

NULL_AGENT = r"""
import http.client, json, subprocess, sys
host, port, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
conn = http.client.HTTPConnection(host, port)
messages = [{"role": "user", "content": "go"}]
while True:
    conn.request("POST", "/api/chat", json.dumps({"model": "qwen3:4b", "messages": messages,
                 "stream": True}), {"Content-Type": "application/json"})
    response = conn.getresponse()
    calls = []
    for line in response.read().splitlines():
        chunk = json.loads(line)
        calls += chunk["message"].get("tool_calls", [])
    if not calls:
        break
    for call in calls:
        out = subprocess.run(["/bin/bash", "-c", call["function"]["arguments"]["command"]],
                             capture_output=True, text=True)
        messages.append({"role": "tool", "content": out.stdout, "tool_name": "bash"})
"""


def script(server: ScriptedOllama, steps: int) -> None:
    count = {"n": 0}

    def reply(body: dict[str, Any]) -> Reply:
        count["n"] += 1
        if count["n"] <= steps:
            return Reply(tool_calls=[{"name": "bash", "arguments": {"command": "echo step"}}])
        return Reply(content="done")

    server.respond_with(reply)


def gaps(server: ScriptedOllama, skip_first: bool = True) -> list[float]:
    arrivals = [r.time for r in server.requests if r.path == "/api/chat"]
    finished = server.responses_finished
    return [(arrivals[i + 1] - finished[i]) * 1000 for i in range(len(finished) - 1)]


async def run_harness(steps: int, workdir: Path, sandbox: str = "none") -> dict[str, float]:
    async with ScriptedOllama() as server:
        script(server, steps)
        (workdir / "agent_config.yaml").write_text(
            f"routing:\n  local_model: qwen3:4b\n  max_loop_iterations: {steps + 5}\n"
            f"tools:\n  bash:\n    sandbox: {sandbox}\n    allowed_commands: [echo]\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("OLLAMA")}
        env["OLLAMA_HOST"] = server.url
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "chat",
            "run the loop",
            cwd=workdir,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"threadwright chat failed: {err.decode()[-2000:]}")
        first = next(r.time for r in server.requests if r.path == "/api/chat")
        values = gaps(server)
        return {
            "start_to_first_request_s": first - started,
            "median_ms": statistics.median(values),
            "p90_ms": statistics.quantiles(values, n=10)[-1],
            "steps": len(values) + 1,
        }


async def run_null(steps: int) -> dict[str, float]:
    async with ScriptedOllama() as server:
        script(server, steps)
        host, port = server.url.removeprefix("http://").split(":")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", NULL_AGENT, host, port, str(steps)
        )
        await proc.wait()
        values = gaps(server)
        return {"median_ms": statistics.median(values), "steps": len(values) + 1}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    harness: list[dict[str, float]] = []
    floor: list[dict[str, float]] = []
    peak_rss_mb = 0.0
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            harness.append(await run_harness(args.steps, Path(tmp)))
        # ru_maxrss of waited-for children (KiB on Linux): the chat process so far.
        peak_rss_mb = max(
            peak_rss_mb, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        )
    for _ in range(args.runs):
        floor.append(await run_null(args.steps))
    med = statistics.median(h["median_ms"] for h in harness)
    p90 = statistics.median(h["p90_ms"] for h in harness)
    start = statistics.median(h["start_to_first_request_s"] for h in harness)
    null_med = statistics.median(f["median_ms"] for f in floor)
    print(f"steps per run:                 {int(harness[0]['steps'])} ({args.runs} runs, medians)")
    print(f"harness overhead per step:     median {med:.2f} ms, p90 {p90:.2f} ms (target ≤ 3 ms)")
    print(f"null agent (floor) per step:   median {null_med:.2f} ms")
    print(f"harness / floor:               {med / null_med:.2f}x")
    print(f"process start → first request: {start:.3f} s (target ≤ 0.6 s)")
    print(f"peak RSS of threadwright chat: {peak_rss_mb:.1f} MB (target ≤ 80 MB)")
    # The harness figures above run commands unsandboxed, like the null agent;
    # the bubblewrap sandbox (the default where bwrap exists) costs this much more.
    with tempfile.TemporaryDirectory() as tmp:
        boxed = await run_harness(args.steps, Path(tmp), sandbox="bwrap")
    print(f"with the bwrap sandbox:        median {boxed['median_ms']:.2f} ms per step")


if __name__ == "__main__":
    asyncio.run(main())
