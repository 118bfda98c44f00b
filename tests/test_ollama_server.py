"""The scripted Ollama server, driven by the real ``ollama`` client and raw httpx."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest

from bot.testing import Reply, ScriptedOllama, pytest_plugin

# The repository is not pip-installed in every checkout, so the fixture is taken
# from the plugin module rather than from the pytest11 entry point.
scripted_ollama = pytest_plugin.scripted_ollama

REPO_ROOT = Path(__file__).resolve().parents[1]
CALL_ID = re.compile(r"^call_[a-z0-9]{8}$")
METRICS = (
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
)
USER = [{"role": "user", "content": "hello"}]


async def raw_lines(url: str, path: str, body: dict[str, Any]) -> tuple[httpx.Response, list[str]]:
    async with httpx.AsyncClient() as http, http.stream("POST", url + path, json=body) as response:
        text = (await response.aread()).decode()
    return response, text.split("\n")


async def test_info_endpoints(scripted_ollama: ScriptedOllama) -> None:
    async with httpx.AsyncClient(base_url=scripted_ollama.url) as http:
        root = await http.get("/")
        assert root.status_code == 200 and root.text == "Ollama is running"
        assert (await http.get("/api/version")).json() == {"version": "0.12.10"}
        tags = (await http.get("/api/tags")).json()["models"]
        assert [m["name"] for m in tags] == ["qwen3:4b"]
        assert tags[0]["details"]["family"] == "qwen3"
        models = (await http.get("/v1/models")).json()
        assert models["object"] == "list" and models["data"][0]["id"] == "qwen3:4b"


async def test_ndjson_framing(scripted_ollama: ScriptedOllama) -> None:
    call = {"name": "read_file", "arguments": {"path": "a.py"}}
    scripted_ollama.script(
        Reply(content="Hello there!", thinking="Let me see", tool_calls=[call], chunk_size=5)
    )
    response, lines = await raw_lines(
        scripted_ollama.url, "/api/chat", {"model": "m1", "messages": USER}
    )
    assert response.headers["content-type"] == "application/x-ndjson"
    assert lines[-1] == "", "the body ends with a newline"
    body = lines[:-1]
    assert all(line.strip() for line in body), "no blank lines"
    assert all(": " not in line and ", " not in line for line in body[:-1]), "compact JSON"
    chunks = [json.loads(line) for line in body]
    for chunk in chunks:
        assert chunk["model"] == "m1" and chunk["created_at"].endswith("Z")
        assert chunk["message"]["role"] == "assistant"
        assert isinstance(chunk["message"]["content"], str)
    thinking = [c["message"]["thinking"] for c in chunks if "thinking" in c["message"]]
    assert thinking == ["Let m", "e see"]
    content = [c["message"]["content"] for c in chunks if c["message"]["content"]]
    assert content == ["Hello", " ther", "e!"]
    with_calls = [c for c in chunks if "tool_calls" in c["message"]]
    assert len(with_calls) == 1 and with_calls[0]["done"] is False
    wire_call = with_calls[0]["message"]["tool_calls"][0]
    assert CALL_ID.match(wire_call["id"])
    assert wire_call["function"] == {"index": 0, "name": "read_file", "arguments": {"path": "a.py"}}
    assert [c["done"] for c in chunks] == [False] * (len(chunks) - 1) + [True]
    final = chunks[-1]
    assert final["done_reason"] == "stop" and final["message"] == {
        "role": "assistant",
        "content": "",
    }
    assert all(isinstance(final[key], int) and final[key] > 0 for key in METRICS)
    assert all(key not in c for c in chunks[:-1] for key in METRICS)


async def test_real_client_reassembles_stream(scripted_ollama: ScriptedOllama) -> None:
    calls = [
        {"name": "read_file", "arguments": {"path": "a.py"}},
        {"name": "grep", "arguments": {"pattern": "def", "paths": ["x", "y"]}},
    ]
    scripted_ollama.script(
        Reply(content="Sure, reading.", thinking="Plan.", tool_calls=calls, eval_count=7)
    )
    client = ollama.AsyncClient(scripted_ollama.url)
    try:
        parts = [p async for p in await client.chat(model="m", messages=USER, stream=True)]
    finally:
        await client.close()
    assert "".join(p.message.content or "" for p in parts) == "Sure, reading."
    assert "".join(p.message.thinking or "" for p in parts) == "Plan."
    got = [c for p in parts for c in p.message.tool_calls or []]
    assert [(c.function.name, dict(c.function.arguments)) for c in got] == [
        (call["name"], call["arguments"]) for call in calls
    ]
    assert parts[-1].done and parts[-1].eval_count == 7


async def test_stream_false_returns_one_object(scripted_ollama: ScriptedOllama) -> None:
    call = {"name": "think", "arguments": {"thought": "ok"}}
    scripted_ollama.script(Reply(content="All done.", thinking="hm", tool_calls=[call]))
    async with httpx.AsyncClient() as http:
        response = await http.post(
            scripted_ollama.url + "/api/chat",
            json={"model": "m", "messages": USER, "stream": False},
        )
    obj = response.json()
    assert obj["done"] is True and obj["done_reason"] == "stop"
    assert obj["message"]["content"] == "All done." and obj["message"]["thinking"] == "hm"
    assert obj["message"]["tool_calls"][0]["function"]["arguments"] == {"thought": "ok"}
    assert all(isinstance(obj[key], int) for key in METRICS)


async def test_done_chunk_leftovers(scripted_ollama: ScriptedOllama) -> None:
    call = {"name": "bash", "arguments": {"command": "ls"}}
    scripted_ollama.script(
        Reply(content="ab", done_content="cd", tool_calls=[call], tool_calls_on_done=True)
    )
    _, lines = await raw_lines(scripted_ollama.url, "/api/chat", {"model": "m", "messages": USER})
    chunks = [json.loads(line) for line in lines if line]
    assert not any("tool_calls" in c["message"] for c in chunks[:-1])
    assert chunks[-1]["done"] and chunks[-1]["message"]["content"] == "cd"
    assert chunks[-1]["message"]["tool_calls"][0]["function"]["name"] == "bash"


async def test_pre_stream_errors() -> None:
    caps = {"plain:1b": ["completion"]}
    models = ["qwen3:4b", "plain:1b"]
    async with ScriptedOllama(models=models, capabilities=caps, strict_models=True) as server:
        tools = [{"type": "function", "function": {"name": "x", "parameters": {}}}]
        server.script(Reply(status=503), Reply(status=401))
        async with httpx.AsyncClient(base_url=server.url) as http:

            async def chat(**body: Any) -> httpx.Response:
                return await http.post("/api/chat", json={"messages": USER} | body)

            missing = await chat(model="nope")
            assert missing.status_code == 404
            assert missing.json() == {"error": "model 'nope' not found"}
            no_tools = await chat(model="plain:1b", tools=tools)
            assert no_tools.status_code == 400
            assert no_tools.json()["error"] == (
                "registry.ollama.ai/library/plain:1b does not support tools"
            )
            busy = await chat(model="qwen3:4b")
            assert busy.status_code == 503 and "error" in busy.json()
            denied = await chat(model="qwen3:4b")
            assert denied.status_code == 401
            assert denied.json()["error"] == "unauthorized"
            assert denied.json()["signin_url"].startswith("https://ollama.com/")
            unscripted = await chat(model="qwen3:4b")
            assert unscripted.status_code == 500
            assert unscripted.json()["error"] == (
                "scripted server: no reply scripted for this request"
            )
            assert (await http.post("/api/show", json={"model": "nope"})).status_code == 404
        assert [b["model"] for b in server.chat_requests] == [
            "nope",
            "plain:1b",
            "qwen3:4b",
            "qwen3:4b",
            "qwen3:4b",
        ]


async def test_midstream_error(scripted_ollama: ScriptedOllama) -> None:
    scripted_ollama.script(Reply(content="partial", midstream_error="runner crashed"))
    response, lines = await raw_lines(
        scripted_ollama.url, "/api/chat", {"model": "m", "messages": USER}
    )
    assert response.status_code == 200
    chunks = [json.loads(line) for line in lines if line]
    assert chunks[-1] == {"error": "runner crashed"}
    assert not any(c.get("done") for c in chunks)
    scripted_ollama.script(Reply(content="partial", midstream_error="runner crashed"))
    client = ollama.AsyncClient(scripted_ollama.url)
    try:
        with pytest.raises(ollama.ResponseError) as caught:
            async for _ in await client.chat(model="m", messages=USER, stream=True):
                pass
    finally:
        await client.close()
    assert caught.value.status_code == -1 and caught.value.error == "runner crashed"


async def test_show_reports_capabilities_and_context() -> None:
    caps = {"qwen3:4b": ["completion", "tools", "thinking"]}
    async with ScriptedOllama(capabilities=caps, context_length=32768) as server:
        client = ollama.AsyncClient(server.url)
        try:
            shown = await client.show("qwen3:4b")
        finally:
            await client.close()
    assert shown.capabilities == ["completion", "tools", "thinking"]
    assert shown.modelinfo is not None and shown.modelinfo["qwen3.context_length"] == 32768
    assert shown.details is not None and shown.details.family == "qwen3"
    assert shown.template and shown.parameters


async def test_ps_load_and_unload(scripted_ollama: ScriptedOllama) -> None:
    client = ollama.AsyncClient(scripted_ollama.url)
    try:
        loaded = await client.chat(model="a:1b", messages=[], options={"num_ctx": 8192})
        assert loaded.done_reason == "load"
        scripted_ollama.script(Reply(content="hi"))
        await client.chat(model="b:2b", messages=USER, keep_alive="10m")
        processes = {m.name: m for m in (await client.ps()).models}
        assert set(processes) == {"a:1b", "b:2b"} == set(scripted_ollama.loaded_models)
        assert processes["a:1b"].context_length == 8192
        assert processes["b:2b"].context_length == 4096
        assert processes["b:2b"].size_vram == processes["b:2b"].size == 3_300_000_000
        assert processes["b:2b"].expires_at is not None
        unloaded = await client.chat(model="a:1b", messages=[], keep_alive=0)
        assert unloaded.done_reason == "unload"
        assert (await client.generate(model="b:2b", keep_alive=0)).done_reason == "unload"
        assert (await client.ps()).models == []
        scripted_ollama.script(Reply(content="bye"))
        await client.chat(model="c:1b", messages=USER, keep_alive=0)
        assert scripted_ollama.loaded_models == []
        assert scripted_ollama.chat_requests == [
            {"model": "b:2b", "messages": USER, "tools": [], "stream": False, "keep_alive": "10m"},
            {"model": "c:1b", "messages": USER, "tools": [], "stream": False, "keep_alive": 0},
        ]
    finally:
        await client.close()


async def test_pull() -> None:
    async with ScriptedOllama(models=["qwen3:4b"], strict_models=True) as server:
        client = ollama.AsyncClient(server.url)
        try:
            statuses = [p.status async for p in await client.pull("qwen3:4b", stream=True)]
            assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
            assert (await client.pull("qwen3:4b")).status == "success"
            with pytest.raises(ollama.ResponseError, match="file does not exist"):
                async for _ in await client.pull("ghost:1b", stream=True):
                    pass
        finally:
            await client.close()


async def sse_events(url: str, body: dict[str, Any]) -> tuple[httpx.Response, list[str]]:
    response, lines = await raw_lines(url, "/v1/chat/completions", body)
    assert response.headers["content-type"].startswith("text/event-stream")
    # Events are "data: ..." lines each followed by one blank line.
    assert all(line == "" for line in lines[1::2])
    return response, [line.removeprefix("data: ") for line in lines[0::2] if line]


async def test_openai_stream_framing(scripted_ollama: ScriptedOllama) -> None:
    calls = [
        {"name": "read_file", "arguments": {"path": "src/main.py"}},
        {"name": "grep", "arguments": {"pattern": "TODO"}},
    ]
    scripted_ollama.script(Reply(content="Reading.", thinking="hmm", tool_calls=calls))
    body = {
        "model": "m",
        "messages": USER,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    _, events = await sse_events(scripted_ollama.url, body)
    assert events[-1] == "[DONE]"
    objects = [json.loads(e) for e in events[:-1]]
    assert all(o["object"] == "chat.completion.chunk" for o in objects)
    deltas = [o["choices"][0]["delta"] for o in objects if o["choices"]]
    assert deltas[0] == {"role": "assistant", "reasoning": "hmm"}
    assert "".join(d.get("reasoning", "") for d in deltas) == "hmm"
    assert "".join(d.get("content", "") for d in deltas) == "Reading."
    fragments = [f for d in deltas for f in d.get("tool_calls", [])]
    for index, call in enumerate(calls):
        mine = [f for f in fragments if f["index"] == index]
        assert len(mine) > 2, "arguments arrive in several fragments"
        assert CALL_ID.match(mine[0]["id"]) and mine[0]["type"] == "function"
        assert mine[0]["function"]["name"] == call["name"]
        joined = "".join(f["function"]["arguments"] for f in mine)
        assert json.loads(joined) == call["arguments"]
    finishes = [o["choices"][0]["finish_reason"] for o in objects if o["choices"]]
    assert finishes[-1] == "tool_calls" and set(finishes[:-1]) == {None}
    usage = objects[-1]
    assert usage["choices"] == [] and usage["usage"]["total_tokens"] > 0

    scripted_ollama.script(Reply(content="x"))
    _, events = await sse_events(scripted_ollama.url, body | {"stream_options": {}})
    assert not any("usage" in json.loads(e) for e in events[:-1])


async def test_openai_errors(scripted_ollama: ScriptedOllama) -> None:
    scripted_ollama.script(Reply(status=429), Reply(content="so far", midstream_error="oom"))
    body = {"model": "m", "messages": USER, "stream": True}
    async with httpx.AsyncClient() as http:
        busy = await http.post(scripted_ollama.url + "/v1/chat/completions", json=body)
    assert busy.status_code == 429
    assert set(busy.json()["error"]) >= {"message", "type"}
    _, events = await sse_events(scripted_ollama.url, body)
    assert "[DONE]" not in events
    assert json.loads(events[-1]) == {"error": {"message": "oom", "type": "api_error"}}


async def test_queues_and_request_log(scripted_ollama: ScriptedOllama) -> None:
    seen: list[str] = []

    async def fallback(body: dict[str, Any]) -> Reply:
        seen.append(body["model"])
        return Reply(content=f"dynamic {len(seen)}")

    scripted_ollama.script(Reply(content="shared"))
    scripted_ollama.script_for("big", Reply(content="big-only"))
    scripted_ollama.respond_with(fallback)
    client = ollama.AsyncClient(scripted_ollama.url, headers={"X-Probe": "1"})

    async def say(model: str) -> str:
        options = {"num_ctx": 16384, "temperature": 0.2}
        stream = await client.chat(model=model, messages=USER, stream=True, options=options)
        return "".join([p.message.content or "" async for p in stream])

    try:
        assert await say("big") == "big-only"
        assert await say("big") == "shared"
        assert await say("small") == "dynamic 1"
        scripted_ollama.respond_with(lambda body: Reply(content="sync"))
        assert await say("small") == "sync"
    finally:
        await client.close()
    assert seen == ["small"]
    assert await scripted_ollama.wait_for_requests(4, timeout=0.1) == scripted_ollama.chat_requests
    assert [b["model"] for b in scripted_ollama.chat_requests] == ["big", "big", "small", "small"]
    assert all(b["options"]["num_ctx"] == 16384 for b in scripted_ollama.chat_requests)
    recorded = scripted_ollama.requests[-1]
    assert (recorded.method, recorded.path) == ("POST", "/api/chat")
    assert recorded.body == scripted_ollama.chat_requests[-1]
    assert recorded.headers["X-Probe"] == "1"
    times = [r.time for r in scripted_ollama.requests]
    assert times == sorted(times) and times[-1] <= time.monotonic()
    with pytest.raises(TimeoutError):
        await scripted_ollama.wait_for_requests(5, timeout=0.05)


async def test_wait_for_requests_wakes_on_arrival(scripted_ollama: ScriptedOllama) -> None:
    scripted_ollama.script(Reply(content="late", delay=0.3))
    async with httpx.AsyncClient() as http:
        post = asyncio.create_task(
            http.post(scripted_ollama.url + "/api/chat", json={"model": "m", "messages": USER})
        )
        started = time.monotonic()
        bodies = await scripted_ollama.wait_for_requests(1, timeout=2.0)
        assert time.monotonic() - started < 0.25, "recorded on arrival, before the delay"
        assert bodies[0]["messages"] == USER
        assert (await post).status_code == 200


async def test_chunk_delay_spaces_chunks(scripted_ollama: ScriptedOllama) -> None:
    scripted_ollama.script(Reply(content="abcdef", chunk_size=2, chunk_delay=0.05))
    arrivals: list[float] = []
    async with (
        httpx.AsyncClient() as http,
        http.stream(
            "POST", scripted_ollama.url + "/api/chat", json={"model": "m", "messages": USER}
        ) as response,
    ):
        async for _ in response.aiter_lines():
            arrivals.append(time.monotonic())
    gaps = [b - a for a, b in itertools.pairwise(arrivals)][:2]
    assert len(arrivals) == 4 and all(gap >= 0.04 for gap in gaps)


async def test_disconnect_breaks_the_stream(scripted_ollama: ScriptedOllama) -> None:
    scripted_ollama.script(Reply(content="partial answer", disconnect=True))
    lines: list[str] = []
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.TransportError):
            async with http.stream(
                "POST", scripted_ollama.url + "/api/chat", json={"model": "m", "messages": USER}
            ) as response:
                async for line in response.aiter_lines():
                    lines.append(line)
    assert "".join(json.loads(line)["message"]["content"] for line in lines) == "partial answer"


async def test_hang_ends_when_the_client_leaves() -> None:
    server = ScriptedOllama()
    await server.start()
    server.script(Reply(content="first chunk then silence", hang=True))
    first = asyncio.Event()

    async def consume() -> None:
        async with (
            httpx.AsyncClient() as http,
            http.stream(
                "POST", server.url + "/api/chat", json={"model": "m", "messages": USER}
            ) as response,
        ):
            async for _ in response.aiter_lines():
                first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 2.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    started = time.monotonic()
    await server.stop()
    assert time.monotonic() - started < 1.0


async def test_stop_ends_a_hanging_reply() -> None:
    server = ScriptedOllama()
    await server.start()
    server.script(Reply(content="x", hang=True))
    async with httpx.AsyncClient() as http:
        request = asyncio.create_task(
            http.post(server.url + "/api/chat", json={"model": "m", "messages": USER})
        )
        await server.wait_for_requests(1)
        await asyncio.sleep(0.05)
        started = time.monotonic()
        await server.stop()
        assert time.monotonic() - started < 1.5
        with pytest.raises(httpx.TransportError):
            await request


async def test_standalone_command(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps([{"content": "from a file"}]))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.testing.ollama_server",
        "--script",
        str(script),
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT,
    )
    try:
        assert process.stdout is not None
        url = (await asyncio.wait_for(process.stdout.readline(), 20)).decode().strip()
        assert re.match(r"^http://127\.0\.0\.1:\d+$", url)
        client = ollama.AsyncClient(url)
        try:
            answer = await client.chat(model="m", messages=USER)
        finally:
            await client.close()
        assert answer.message.content == "from a file"
    finally:
        process.terminate()
        await process.wait()


async def test_pytest_plugin_imports_no_server_code() -> None:
    probe = "import sys, bot.testing.pytest_plugin; print('aiohttp' in sys.modules)"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", probe, stdout=asyncio.subprocess.PIPE, cwd=REPO_ROOT
    )
    out, _ = await process.communicate()
    assert out.decode().strip() == "False"


async def test_runaway_honours_num_predict_with_length(scripted_ollama: ScriptedOllama) -> None:
    scripted_ollama.script(
        Reply(content="ab", runaway="xy", chunk_size=1, tool_calls=[{"name": "t"}]),
        Reply(content="ab", runaway="xy", chunk_size=1, runaway_frames=3),
    )
    body = {"model": "m", "messages": USER, "options": {"num_predict": 5}}
    _, lines = await raw_lines(scripted_ollama.url, "/api/chat", body)
    chunks = [json.loads(line) for line in lines if line]
    assert "".join(c["message"]["content"] for c in chunks) == "abxyx"
    assert not any("tool_calls" in c["message"] for c in chunks), "cut before its calls"
    assert chunks[-1]["done_reason"] == "length" and chunks[-1]["eval_count"] == 5
    # A finite runaway without a cap ends as scripted.
    _, lines = await raw_lines(scripted_ollama.url, "/api/chat", body | {"options": {}})
    chunks = [json.loads(line) for line in lines if line]
    assert "".join(c["message"]["content"] for c in chunks) == "abxyx"
    assert chunks[-1]["done_reason"] == "stop"


async def test_runaway_over_openai_and_stream_false(scripted_ollama: ScriptedOllama) -> None:
    scripted_ollama.script(
        Reply(runaway="la ", chunk_size=3),
        Reply(runaway="la ", chunk_size=3, ignore_max_tokens=True, runaway_frames=6),
        Reply(content="x", runaway="la ", chunk_size=3),
    )
    body = {"model": "m", "messages": USER, "stream": True, "max_tokens": 4}
    _, events = await sse_events(scripted_ollama.url, body)
    objects = [json.loads(e) for e in events[:-1]]
    deltas = [o["choices"][0]["delta"] for o in objects]
    assert deltas[0]["role"] == "assistant"
    assert "".join(d.get("content", "") for d in deltas) == "la " * 4
    assert objects[-1]["choices"][0]["finish_reason"] == "length"
    _, events = await sse_events(scripted_ollama.url, body)
    assert (
        "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1])
        == "la " * 6
    ), "a server that ignores max_tokens"
    async with httpx.AsyncClient() as http:
        whole = await http.post(
            scripted_ollama.url + "/api/chat",
            json={"model": "m", "messages": USER, "stream": False, "options": {"num_predict": 3}},
        )
    assert whole.json()["message"]["content"] == "xla la "
    assert whole.json()["done_reason"] == "length"


async def test_an_endless_runaway_streams_until_the_client_leaves(
    scripted_ollama: ScriptedOllama,
) -> None:
    scripted_ollama.script(Reply(runaway="again ", chunk_size=6, chunk_delay=0.005))
    seen = 0
    async with (
        httpx.AsyncClient() as http,
        http.stream(
            "POST", scripted_ollama.url + "/api/chat", json={"model": "m", "messages": USER}
        ) as response,
    ):
        async for line in response.aiter_lines():
            assert json.loads(line)["message"]["content"] == "again "
            seen += 1
            if seen == 40:
                break
    async with asyncio.timeout(3):
        while not scripted_ollama.abandoned_streams:  # noqa: ASYNC110 - no event to wait on
            await asyncio.sleep(0.02)
    assert scripted_ollama.abandoned_streams[0] >= 40
    assert scripted_ollama.responses_finished == []
