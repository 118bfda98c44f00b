"""Benchmark: the browser view's SSE stream, from the agent to the socket.

A host with the web adapter and the scripted model runs in this process; the
browsers are raw HTTP/1.0 readers in a separate process (so their work does
not share the server's event loop). Figures:

- first token → frame received by a reader: from the TOKEN event's creation
  (its ``ts``, taken when the agent emits it) to the moment the bytes arrive
  in the reader process: an upper bound of "written to the socket", since the
  loopback hop and the reader's wake-up are included (median and p90 over
  ``--runs`` sessions; target ≤ 5 ms median);
- events per second one session pushes to 10 connected readers, end to end,
  and how much the session's duration changes against no readers at all
  ("without delaying the agent's steps"); every reader must get every event;
- the raw push rate of the hub alone: events published as fast as possible
  to 10 readers, until all of them have every frame;
- memory per connected (idle) reader: Python heap (tracemalloc) and RSS.

Run: ``.venv/bin/python bench/web_sse.py [--runs 30] [--tokens 20000] [--clients 10]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.events import AgentEvent, AgentEventKind  # noqa: E402
from bot.testing import Reply, ScriptedOllama  # noqa: E402
from bot.testing.harness import make_test_config, running_host  # noqa: E402
from plugins.web.adapter import WebAdapter  # noqa: E402

# The reader process: N raw HTTP/1.0 SSE readers of one session.
# mode "first": print the latency of the first token frame; mode "count": read
# until the done frame (or a "done" marker of the synthetic run) and print
# frames seen; mode "hold": connect, read the backlog, then idle until stdin closes.
READER = r"""
import asyncio, json, sys, time
mode, port, sid, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])

async def open_stream(last=None):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    resume = f"Last-Event-ID: {last}\r\n" if last else ""
    w.write(f"GET /api/sessions/{sid}/events HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n"
            f"{resume}\r\n".encode())
    await w.drain()
    await r.readuntil(b"\r\n\r\n")
    return r, w

async def first():
    r, w = await open_stream()
    print("ready", flush=True)
    buf = b""
    while True:
        data = await r.read(65536)
        now = time.time()
        if not data:
            return None
        buf += data
        at = buf.find(b"event: token\ndata: ")
        if at >= 0:
            end = buf.index(b"\n", at + 19)
            w.close()
            return (now - json.loads(buf[at + 19:end])["ts"]) * 1000

async def count(stream):
    # Like EventSource: when the server cuts a reader that fell behind, resume
    # from the last id seen. Every frame must arrive exactly once.
    frames, reconnects, last, done = 0, 0, None, False
    while not done:
        r, w = stream if stream is not None else await open_stream(last)
        stream = None
        buf = b""
        while not done:
            data = await r.read(262144)
            if not data:
                reconnects += 1
                break
            buf += data
            *complete, buf = buf.split(b"\n\n")
            for frame in complete:
                if frame.startswith(b"id: "):
                    frames += 1
                    last = frame[4:frame.index(b"\n")].decode()
                    done = done or b"\nevent: done\n" in frame
        w.close()
    return [frames, reconnects]

async def hold():
    streams = [await open_stream() for _ in range(n)]
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for _, w in streams:
        w.close()

async def main():
    if mode == "first":
        print(json.dumps(await first()), flush=True)
    elif mode == "count":
        streams = [await open_stream() for _ in range(n)]
        print("ready", flush=True)
        results = await asyncio.gather(*(count(stream) for stream in streams))
        print(json.dumps(results), flush=True)
    else:
        await hold()

asyncio.run(main())
"""


async def spawn_reader(mode: str, port: int, session_id: str, n: int = 1) -> Any:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        READER,
        mode,
        str(port),
        session_id,
        str(n),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def start_session(view: Any, task: str) -> str:
    sessions = view.sessions
    thread = view.new_thread()
    await sessions.handle(view.message(thread, task))
    session = await sessions.get_session(thread)
    assert session is not None
    return str(session.id)


def token_ts(data: bytes) -> float | None:
    at = data.find(b"event: token\ndata: ")
    if at < 0:
        return None
    end = data.index(b"\n", at + 19)
    return float(json.loads(data[at + 19 : end])["ts"])


async def first_token(
    view: Any, port: int, server: ScriptedOllama, runs: int
) -> tuple[list[float], list[float]]:
    """(event → written to the socket, event → received by the reader), in ms."""
    written: list[float] = []
    received: list[float] = []

    def on_write(data: bytes) -> None:
        now = time.time()
        ts = token_ts(data)
        if ts is not None and len(written) < len(received) + 1:
            written.append((now - ts) * 1000)

    view.server.write_observer = on_write
    for i in range(runs):
        # The reader must be connected before the token exists: the model
        # answers only once the reader says it is ready.
        ready = asyncio.Event()

        async def answer(body: dict[str, Any], ready: asyncio.Event = ready, i: int = i) -> Reply:
            await ready.wait()
            return Reply(content=f"first token of run {i}")

        server.respond_with(answer)
        session_id = await start_session(view, f"run {i}")
        reader = await spawn_reader("first", port, session_id)
        assert reader.stdout is not None
        await reader.stdout.readline()
        ready.set()
        out, _ = await reader.communicate()
        value = json.loads(out)
        if value is not None:
            received.append(float(value))
        session = await view.sessions.load_session(session_id)
        await session.wait()
    server.respond_with(None)
    view.server.write_observer = None
    return written, received


async def fan_out(
    view: Any,
    port: int,
    server: ScriptedOllama,
    tokens: int,
    clients: int,
    repeats: int,
    chunk_delay: float = 0.0,
) -> dict[str, float]:
    """One token-heavy session alone and with ``clients`` readers, alternated;
    the model starts only once the readers are connected. Also the CPU time
    this process spent (agent, scripted model and web server together)."""
    content = "tok " * tokens
    durations: dict[str, list[float]] = {"alone": [], "watched": []}
    cpu: dict[str, list[float]] = {"alone": [], "watched": []}
    results: dict[str, float] = {"min_frames_per_reader": float("inf"), "reconnects": 0}
    for _ in range(repeats):
        for label, readers in (("alone", 0), ("watched", clients)):
            go = asyncio.Event()

            async def answer(body: dict[str, Any], go: asyncio.Event = go) -> Reply:
                await go.wait()
                return Reply(content=content, chunk_size=4, chunk_delay=chunk_delay)

            server.respond_with(answer)
            session_id = await start_session(view, label)
            process = None
            if readers:
                process = await spawn_reader("count", port, session_id, readers)
                assert process.stdout is not None
                await process.stdout.readline()
            cpu_before = time.process_time()
            go.set()
            session = await view.sessions.load_session(session_id)
            outcome = await session.wait()
            cpu[label].append(time.process_time() - cpu_before)
            durations[label].append(outcome.stats.duration_s)
            results["events"] = view.hub.get(session_id).next_n - 1
            if process is not None:
                out, _ = await process.communicate()
                counts = json.loads(out)
                results["min_frames_per_reader"] = min(
                    results["min_frames_per_reader"], *(c[0] for c in counts)
                )
                results["reconnects"] += sum(c[1] for c in counts)
    server.respond_with(None)
    results["alone_s"] = statistics.median(durations["alone"])
    results["watched_s"] = statistics.median(durations["watched"])
    results["alone_cpu_s"] = statistics.median(cpu["alone"])
    results["watched_cpu_s"] = statistics.median(cpu["watched"])
    return results


async def raw_push(view: Any, port: int, clients: int, events: int) -> tuple[float, int]:
    """Publish TOKEN events for a synthetic session as fast as the loop allows."""
    session_id = "benchpush0001"
    entry = view.hub.log_for(session_id)
    entry.meta.update({"id": session_id, "platform": "web", "running": True})
    process = await spawn_reader("count", port, session_id, clients)
    assert process.stdout is not None
    await process.stdout.readline()
    started = time.perf_counter()
    for i in range(events):
        event = AgentEvent(AgentEventKind.TOKEN, session_id, "tok ", seq=i)
        entry.append("token", event.to_dict())
        if i % 64 == 0:
            await asyncio.sleep(0)  # let the writers run, as the agent's awaits do
    entry.append("done", {"kind": "done"})
    out, _ = await process.communicate()
    elapsed = time.perf_counter() - started
    counts = json.loads(out)
    assert all(c[0] == events + 1 for c in counts), counts
    return events / elapsed, sum(c[1] for c in counts)


async def memory_per_client(
    view: Any, port: int, session_id: str, clients: int
) -> tuple[float, float]:
    tracemalloc.start()
    await asyncio.sleep(0.1)
    heap_before = tracemalloc.get_traced_memory()[0]
    rss_before = rss_kib()
    process = await spawn_reader("hold", port, session_id, clients)
    assert process.stdout is not None
    await process.stdout.readline()
    while view.hub.client_count() < clients:  # noqa: ASYNC110 - polling another process
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    heap_after = tracemalloc.get_traced_memory()[0]
    rss_after = rss_kib()
    tracemalloc.stop()
    process.stdin.close()
    await process.wait()
    return (heap_after - heap_before) / clients, (rss_after - rss_before) * 1024 / clients


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--tokens", type=int, default=20000)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--idle-clients", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workspace = Path(tmp) / "ws"
        workspace.mkdir()
        async with ScriptedOllama() as server:
            config = make_test_config(
                workspace, server.url, web={"port": 0}, streaming={"buffer_size": 4096}
            )
            async with running_host(config) as (host, _recorder):
                view = host.create_adapter("web")
                assert isinstance(view, WebAdapter)
                await view.start(host.sessions)
                assert view.server is not None
                try:
                    port = view.server.port
                    written, latencies = await first_token(view, port, server, args.runs)
                    fan = await fan_out(view, port, server, args.tokens, args.clients, args.repeats)
                    paced = await fan_out(
                        view, port, server, args.tokens // 4, args.clients, args.repeats, 0.002
                    )
                    push, push_reconnects = await raw_push(view, port, args.clients, args.tokens)
                    server.script(Reply(content="x"))
                    done_id = await start_session(view, "idle target")
                    heap, rss = await memory_per_client(view, port, done_id, args.idle_clients)
                finally:
                    await host.sessions.drain(5)
                    await view.stop()

    print(
        f"first token → frame written to the socket ({len(written)} runs): "
        f"median {statistics.median(written):.2f} ms, p90 {percentile(written, 0.9):.2f} ms "
        "(target ≤ 5 ms median)"
    )
    print(
        f"first token → frame at the reader ({len(latencies)} runs): "
        f"median {statistics.median(latencies):.2f} ms, p90 {percentile(latencies, 0.9):.2f} ms "
        "(target ≤ 5 ms median)"
    )
    for name, run in (("as fast as the model streams", fan), ("paced model", paced)):
        events = run["events"]
        alone, watched = run["alone_s"], run["watched_s"]
        extra_cpu_us = (run["watched_cpu_s"] - run["alone_cpu_s"]) / events / args.clients * 1e6
        print(
            f"{name}, {int(events)} events (median of {args.repeats}): "
            f"alone {alone:.3f} s ({events / alone:,.0f} ev/s), with {args.clients} readers "
            f"{watched:.3f} s ({events / watched:,.0f} ev/s), "
            f"slowdown {100 * (watched / alone - 1):+.1f}%; "
            f"server CPU {extra_cpu_us:.1f} µs per event per reader; "
            f"each reader got ≥ {int(run['min_frames_per_reader'])} frames "
            f"({int(run['reconnects'])} resumes)"
        )
    print(
        f"hub push rate to {args.clients} readers (all frames delivered): {push:,.0f} events/s "
        f"({push_reconnects} resumes after falling behind)"
    )
    print(
        f"memory per idle connected reader ({args.idle_clients} readers): "
        f"{heap / 1024:.1f} KiB Python heap, {rss / 1024:.1f} KiB RSS"
    )


if __name__ == "__main__":
    asyncio.run(main())
