"""Both model clients against the scripted Ollama server (and one raw SSE server)."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

import pytest
from aiohttp import web

from bot.models.base import (
    ChatRequest,
    ModelAuthError,
    ModelChunk,
    ModelClient,
    ModelError,
    ModelNotFoundError,
    ModelOverloadedError,
    ModelStreamError,
    ModelTimeoutError,
    ModelUnavailableError,
)
from bot.models.ollama import OllamaClient
from bot.models.openai_compat import MALFORMED_ARGUMENTS, OpenAICompatClient, iter_sse_data
from bot.models.stream_limits import MAX_SECONDS, MAX_TOKENS, StreamLimits, limit_stream
from bot.testing import Reply, ScriptedOllama, pytest_plugin

# The repository is not pip-installed in every checkout, so the fixture is taken
# from the plugin module rather than from the pytest11 entry point.
scripted_ollama = pytest_plugin.scripted_ollama

ClientFactory = Callable[..., Any]
CLIENTS: dict[str, ClientFactory] = {"ollama": OllamaClient, "openai": OpenAICompatClient}
CALL_ID = re.compile(r"^call_[0-9a-z]{8}$")
USER: list[dict[str, Any]] = [{"role": "user", "content": "list the files"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "Read a file",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string", "description": "file path"}},
                "required": ["path"],
            },
        },
    }
]


async def collect(client: ModelClient, request: ChatRequest) -> list[ModelChunk]:
    return [chunk async for chunk in client.stream_chat(request)]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(params=sorted(CLIENTS))
async def client(
    request: pytest.FixtureRequest, scripted_ollama: ScriptedOllama
) -> AsyncIterator[Any]:
    made = CLIENTS[request.param](scripted_ollama.url, read_timeout=5.0)
    try:
        yield made
    finally:
        await made.close()


async def test_clients_satisfy_the_protocol(client: Any) -> None:
    assert isinstance(client, ModelClient)
    assert client.endpoint.startswith("http://127.0.0.1:")


async def test_streams_text_thinking_and_usage(
    client: Any,
    scripted_ollama: ScriptedOllama,
) -> None:
    scripted_ollama.script(
        Reply(
            content="Here are the files.",
            thinking="I should list.",
            chunk_size=4,
            prompt_eval_count=120,
            eval_count=9,
        )
    )
    chunks = await collect(client, ChatRequest(model="qwen3:4b", messages=USER))
    assert "".join(c.content for c in chunks) == "Here are the files."
    assert "".join(c.thinking for c in chunks) == "I should list."
    assert sum(1 for c in chunks if c.content) >= 5, "content arrives in several chunks"
    assert [c.done for c in chunks].count(True) == 1 and chunks[-1].done
    final = chunks[-1]
    assert (final.prompt_tokens, final.completion_tokens) == (120, 9)
    assert final.done_reason == "stop"


async def test_connection_is_reused(client: Any, scripted_ollama: ScriptedOllama) -> None:
    scripted_ollama.script(Reply(content="one"), Reply(content="two", tool_calls=[{"name": "t"}]))
    for _ in range(2):
        await collect(client, ChatRequest(model="m", messages=USER))
    first, second = scripted_ollama.requests[-2:]
    assert first.peer is not None and first.peer == second.peer


async def test_tool_calls(client: Any, scripted_ollama: ScriptedOllama) -> None:
    calls = [
        {"name": "read_file", "arguments": {"path": "a.py"}},
        {"name": "grep", "arguments": {"pattern": "def (\\w+)", "flags": {"i": True}}},
    ]
    scripted_ollama.script(Reply(content="Looking.", tool_calls=calls))
    request = ChatRequest(model="qwen3:4b", messages=USER, tools=TOOLS)
    chunks = await collect(client, request)
    got = [call for chunk in chunks for call in chunk.tool_calls]
    assert [(c.name, c.arguments) for c in got] == [(c["name"], c["arguments"]) for c in calls]
    assert all(CALL_ID.match(c.id) for c in got) and len({c.id for c in got}) == 2
    assert chunks[-1].done and chunks[-1].done_reason == "stop"
    sent = scripted_ollama.chat_requests[-1]
    assert sent["tools"][0]["function"]["name"] == "read_file"


async def test_ollama_request_shape(scripted_ollama: ScriptedOllama) -> None:
    history: list[dict[str, Any]] = [
        {"role": "system", "content": "You are terse."},
        *USER,
        {
            "role": "assistant",
            "content": "",
            "thinking": "need the file",
            "tool_calls": [
                {"id": "call_1", "function": {"name": "read_file", "arguments": {"path": "a"}}}
            ],
        },
        {"role": "tool", "content": "print(1)", "tool_name": "read_file", "tool_call_id": "call_1"},
    ]
    scripted_ollama.script(Reply(content="ok"))
    client = OllamaClient(scripted_ollama.url)
    try:
        request = ChatRequest(
            model="qwen3:4b",
            messages=history,
            tools=TOOLS,
            options={"num_ctx": 12288, "temperature": 0.1},
            keep_alive="15m",
            think=True,
        )
        await collect(client, request)
    finally:
        await client.close()
    sent = scripted_ollama.chat_requests[-1]
    assert sent["model"] == "qwen3:4b" and sent["stream"] is True
    assert sent["options"] == {"num_ctx": 12288, "temperature": 0.1}
    assert sent["keep_alive"] == "15m" and sent["think"] is True
    assistant, tool = sent["messages"][2], sent["messages"][3]
    assert assistant["tool_calls"][0]["function"] == {
        "name": "read_file",
        "arguments": {"path": "a"},
    }
    assert tool == {"role": "tool", "content": "print(1)", "tool_name": "read_file"}


async def test_ollama_reads_done_chunk_leftovers(scripted_ollama: ScriptedOllama) -> None:
    call = {"name": "bash", "arguments": {"command": "ls"}}
    scripted_ollama.script(
        Reply(content="Run", done_content="ning.", tool_calls=[call], tool_calls_on_done=True)
    )
    client = OllamaClient(scripted_ollama.url)
    try:
        chunks = await collect(client, ChatRequest(model="m", messages=USER))
    finally:
        await client.close()
    final = chunks[-1]
    assert final.done and final.content == "ning." and final.tool_calls[0].name == "bash"
    assert "".join(c.content for c in chunks) == "Running."
    assert isinstance(final.total_duration_ns, int) and final.total_duration_ns > 0


async def test_ollama_model_management(scripted_ollama: ScriptedOllama) -> None:
    scripted_ollama.capabilities["qwen3:4b"] = ["completion", "tools", "thinking"]
    client = OllamaClient(scripted_ollama.url)
    try:
        assert await client.version() == "0.12.10"
        assert await client.list_models() == ["qwen3:4b"]
        shown = await client.show("qwen3:4b")
        assert shown["capabilities"] == ["completion", "tools", "thinking"]
        assert shown["context_length"] == 40960
        assert shown["raw"]["model_info"]["general.architecture"] == "qwen3"
        scripted_ollama.script(Reply(content="hi"))
        request = ChatRequest(model="qwen3:4b", messages=USER, options={"num_ctx": 8192})
        await collect(client, request)
        [loaded] = await client.ps()
        assert loaded["name"] == "qwen3:4b" and loaded["context_length"] == 8192
        assert loaded["size_vram"] == loaded["size"] > 0 and loaded["expires_at"] is not None
        await client.unload("qwen3:4b")
        assert await client.ps() == [] and scripted_ollama.loaded_models == []
    finally:
        await client.close()


async def test_ollama_api_key_is_exactly_ours(
    scripted_ollama: ScriptedOllama,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OLLAMA_API_KEY", "leaked-from-env")
    without = OllamaClient(scripted_ollama.url)
    keyed = OllamaClient(scripted_ollama.url, api_key="configured")
    try:
        await without.list_models()
        await keyed.list_models()
    finally:
        await without.close()
        await keyed.close()
    first, second = scripted_ollama.requests[-2:]
    assert "Authorization" not in first.headers
    assert second.headers["Authorization"] == "Bearer configured"


async def test_openai_request_translation(scripted_ollama: ScriptedOllama) -> None:
    history: list[dict[str, Any]] = [
        *USER,
        {
            "role": "assistant",
            "content": "",
            "thinking": "private",
            "tool_calls": [
                {"id": "call_aa", "function": {"name": "read_file", "arguments": {"path": "a"}}},
                {"function": {"name": "grep", "arguments": {"pattern": "x"}}},
            ],
        },
        {"role": "tool", "content": "A", "tool_name": "read_file", "tool_call_id": "call_aa"},
        {"role": "tool", "content": "G", "tool_name": "grep"},
    ]
    scripted_ollama.script(Reply(content="ok"))
    client = OpenAICompatClient(scripted_ollama.url + "/v1/", api_key="sk-test")
    try:
        options = {"num_ctx": 8192, "temperature": 0.3, "num_predict": 50, "seed": 7}
        await collect(client, ChatRequest(model="m", messages=history, options=options))
    finally:
        await client.close()
    recorded = scripted_ollama.requests[-1]
    assert recorded.path == "/v1/chat/completions"
    assert recorded.headers["Authorization"] == "Bearer sk-test"
    sent = recorded.body
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert (sent["temperature"], sent["max_tokens"], sent["seed"]) == (0.3, 50, 7)
    assert "num_ctx" not in json.dumps(sent) and "options" not in sent
    assistant = sent["messages"][1]
    assert "thinking" not in assistant and assistant["content"] is None
    first, second = assistant["tool_calls"]
    assert first == {
        "id": "call_aa",
        "type": "function",
        "function": {"name": "read_file", "arguments": '{"path": "a"}'},
    }
    assert CALL_ID.match(second["id"])
    assert sent["messages"][2] == {"role": "tool", "tool_call_id": "call_aa", "content": "A"}
    assert sent["messages"][3]["tool_call_id"] == second["id"]


async def test_openai_fragments_and_malformed_arguments(scripted_ollama: ScriptedOllama) -> None:
    calls: list[dict[str, Any]] = [
        {"name": "write_file", "arguments": {"path": "a.py", "content": "x = {'k': [1, 2]}\n"}},
        {"name": "bash", "arguments": '{"command": "ls'},
        {"name": "think", "arguments": "[1, 2]"},
    ]
    scripted_ollama.script(Reply(tool_calls=calls, thinking="plan it"))
    client = OpenAICompatClient(scripted_ollama.url)
    try:
        chunks = await collect(client, ChatRequest(model="m", messages=USER))
    finally:
        await client.close()
    got = [call for chunk in chunks for call in chunk.tool_calls]
    assert [c.name for c in got] == ["write_file", "bash", "think"]
    assert got[0].arguments == calls[0]["arguments"]
    assert got[1].arguments == {MALFORMED_ARGUMENTS: '{"command": "ls'}
    assert got[2].arguments == {MALFORMED_ARGUMENTS: "[1, 2]"}
    assert "".join(c.thinking for c in chunks) == "plan it"


async def test_sse_parser_handles_comments_and_multiline() -> None:
    async def lines() -> AsyncIterator[str]:
        for line in [": keep-alive", "", "event: message", 'data: {"a":', "data: 1}", "", "id: 3"]:
            yield line
        yield "data:[DONE]"

    events = [data async for data in iter_sse_data(lines())]
    assert events == ['{"a":\n1}', "[DONE]"]
    assert json.loads(events[0]) == {"a": 1}


async def raw_sse_server(body: bytes) -> tuple[web.AppRunner, str]:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(body)
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


def sse_delta(delta: dict[str, Any], finish: str | None = None) -> str:
    event = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(event)}\n\n"


@pytest.mark.parametrize("ending", ["data: [DONE]\n\n", ""])
async def test_openai_comments_reasoning_content_and_missing_done(ending: str) -> None:
    body = ": OPENROUTER PROCESSING\n\n" + sse_delta({"reasoning_content": "think"})
    body += sse_delta({"content": "answer"}) + sse_delta({}, "length") + ending
    runner, url = await raw_sse_server(body.encode())
    client = OpenAICompatClient(url)
    try:
        if ending:
            chunks = await collect(client, ChatRequest(model="m", messages=USER))
            assert [(c.thinking, c.content) for c in chunks[:2]] == [("think", ""), ("", "answer")]
            assert chunks[-1].done and chunks[-1].done_reason == "length"
            assert chunks[-1].prompt_tokens is None
        else:
            with pytest.raises(ModelStreamError, match=r"without \[DONE\]"):
                await collect(client, ChatRequest(model="m", messages=USER))
    finally:
        await client.close()
        await runner.cleanup()


async def test_openai_list_and_show(scripted_ollama: ScriptedOllama) -> None:
    client = OpenAICompatClient(scripted_ollama.url + "/v1")
    try:
        assert await client.list_models() == ["qwen3:4b"]
        shown = await client.show("qwen3:4b")
        assert shown["capabilities"] == ["completion", "tools"]
        assert shown["context_length"] is None
    finally:
        await client.close()
    assert scripted_ollama.requests[-1].path == "/v1/models"


ERROR_CASES: list[tuple[Reply, type[ModelError], str]] = [
    (Reply(status=503), ModelOverloadedError, "busy or failing (HTTP 503"),
    (Reply(status=429), ModelOverloadedError, "HTTP 429"),
    (Reply(status=401), ModelAuthError, "HTTP 401: unauthorized"),
    (Reply(status=400, error="invalid options"), ModelStreamError, "invalid options"),
    (Reply(content="half", midstream_error="CUDA out of memory"), ModelStreamError, "CUDA out"),
    (Reply(content="half", disconnect=True), ModelStreamError, "broke in the middle"),
]


@pytest.mark.parametrize(("reply", "kind", "text"), ERROR_CASES)
async def test_errors_map_to_model_errors(
    client: Any,
    scripted_ollama: ScriptedOllama,
    reply: Reply,
    kind: type[ModelError],
    text: str,
) -> None:
    scripted_ollama.script(reply)
    with pytest.raises(kind, match=re.escape(text)) as caught:
        await collect(client, ChatRequest(model="qwen3:4b", messages=USER))
    assert caught.value.model == "qwen3:4b" and caught.value.endpoint == client.endpoint
    assert client.endpoint in caught.value.user_message
    if isinstance(caught.value, ModelOverloadedError):
        assert caught.value.status_code == reply.status


async def test_ollama_auth_error_carries_signin_url(scripted_ollama: ScriptedOllama) -> None:
    scripted_ollama.script(Reply(status=401, signin_url="https://ollama.com/connect?key=abc"))
    client = OllamaClient(scripted_ollama.url)
    try:
        with pytest.raises(ModelAuthError) as caught:
            await collect(client, ChatRequest(model="qwen3-coder:480b-cloud", messages=USER))
    finally:
        await client.close()
    assert caught.value.signin_url == "https://ollama.com/connect?key=abc"
    assert "`ollama signin`" in caught.value.user_message
    assert "https://ollama.com/connect?key=abc" in caught.value.user_message


async def test_unknown_model_and_missing_tool_support() -> None:
    caps = {"tiny:1b": ["completion"]}
    async with ScriptedOllama(models=["tiny:1b"], capabilities=caps, strict_models=True) as server:
        native = OllamaClient(server.url)
        compat = OpenAICompatClient(server.url)
        try:
            with pytest.raises(ModelNotFoundError) as missing:
                await collect(native, ChatRequest(model="ghost:7b", messages=USER))
            assert missing.value.user_message == (
                f"Model 'ghost:7b' is not available on {server.url}. Run `ollama pull ghost:7b`."
            )
            with pytest.raises(ModelNotFoundError):
                await native.show("ghost:7b")
            with pytest.raises(ModelNotFoundError, match="ghost:7b"):
                await collect(compat, ChatRequest(model="ghost:7b", messages=USER))
            for client in (native, compat):
                with pytest.raises(ModelStreamError, match="does not support tools"):
                    await collect(client, ChatRequest(model="tiny:1b", messages=USER, tools=TOOLS))
        finally:
            await native.close()
            await compat.close()


@pytest.mark.parametrize("kind", sorted(CLIENTS))
async def test_server_down(kind: str) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    client = CLIENTS[kind](url, connect_timeout=1.0)
    try:
        with pytest.raises(ModelUnavailableError) as caught:
            await collect(client, ChatRequest(model="m", messages=USER))
        with pytest.raises(ModelUnavailableError):
            await client.list_models()
    finally:
        await client.close()
    assert f"Cannot reach {'Ollama at ' if kind == 'ollama' else ''}{url}" in str(caught.value)
    if kind == "ollama":
        assert "`ollama serve`" in caught.value.user_message
        assert "OLLAMA_HOST" in caught.value.user_message


@pytest.mark.parametrize("kind", sorted(CLIENTS))
async def test_read_timeout(kind: str, scripted_ollama: ScriptedOllama) -> None:
    scripted_ollama.script(Reply(content="too late", delay=2.0))
    client = CLIENTS[kind](scripted_ollama.url, read_timeout=0.2)
    started = time.monotonic()
    try:
        with pytest.raises(ModelTimeoutError, match=r"sent nothing for 0\.2 s"):
            await collect(client, ChatRequest(model="m", messages=USER))
    finally:
        await client.close()
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize("kind", sorted(CLIENTS))
async def test_cancelling_a_hanging_stream_is_prompt(
    kind: str,
    scripted_ollama: ScriptedOllama,
) -> None:
    scripted_ollama.script(Reply(content="first words", hang=True), Reply(content="next"))
    client = CLIENTS[kind](scripted_ollama.url)
    first = asyncio.Event()

    async def consume() -> None:
        async for chunk in client.stream_chat(ChatRequest(model="m", messages=USER)):
            if chunk.content:
                first.set()

    try:
        task = asyncio.create_task(consume())
        await asyncio.wait_for(first.wait(), 2.0)
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - started < 1.0
        chunks = await collect(client, ChatRequest(model="m", messages=USER))
        assert "".join(c.content for c in chunks) == "next", "the client still works"
    finally:
        await client.close()


# --- output caps and runaways ----------------------------------------------------------


async def limited(client: ModelClient, request: ChatRequest, **limits: Any) -> list[ModelChunk]:
    stream = limit_stream(client.stream_chat(request), StreamLimits(**limits))
    async with aclosing(stream):
        return [chunk async for chunk in stream]


async def test_the_cap_is_sent_and_a_server_honouring_it_ends_with_length(
    client: Any, scripted_ollama: ScriptedOllama
) -> None:
    scripted_ollama.script(Reply(content="Counting: ", runaway="one ", chunk_size=4))
    request = ChatRequest(model="m", messages=USER, options={"num_predict": 12})
    chunks = await limited(client, request, max_tokens=12)
    assert sum(1 for c in chunks if c.content) == 12
    assert chunks[-1].done and chunks[-1].done_reason == "length"
    assert chunks[-1].completion_tokens == 12
    sent = scripted_ollama.chat_requests[-1]
    if isinstance(client, OpenAICompatClient):
        assert sent["max_tokens"] == 12
    else:
        assert sent["options"]["num_predict"] == 12
    assert scripted_ollama.abandoned_streams == []


async def test_an_endless_stream_is_closed_at_the_client_side_cap(
    client: Any, scripted_ollama: ScriptedOllama
) -> None:
    scripted_ollama.script(
        Reply(runaway="same line\n", chunk_size=5, ignore_max_tokens=True),
        Reply(content="next answer"),
    )
    request = ChatRequest(model="m", messages=USER, options={"num_predict": 30})
    chunks = await limited(client, request, max_tokens=30)
    assert sum(1 for c in chunks if c.content) == 31
    assert chunks[-1].done and chunks[-1].done_reason == MAX_TOKENS
    assert chunks[-1].completion_tokens == 31
    async with asyncio.timeout(3):
        while not scripted_ollama.abandoned_streams:  # noqa: ASYNC110 - no event to wait on
            await asyncio.sleep(0.02)
    # The client still works after hanging up on a stream.
    again = await collect(client, ChatRequest(model="m", messages=USER))
    assert "".join(c.content for c in again) == "next answer"


async def test_a_trickling_stream_is_closed_at_its_deadline(
    client: Any, scripted_ollama: ScriptedOllama
) -> None:
    scripted_ollama.script(Reply(runaway="slow ", chunk_size=5, chunk_delay=0.05))
    started = time.monotonic()
    chunks = await limited(
        client, ChatRequest(model="m", messages=USER), deadline=started + 0.4, max_tokens=None
    )
    assert 0.4 <= time.monotonic() - started < 1.5
    assert chunks[-1].done and chunks[-1].done_reason == MAX_SECONDS
    assert 3 <= sum(1 for c in chunks if c.content) <= 10


async def test_openai_finish_reason_length_is_reported(scripted_ollama: ScriptedOllama) -> None:
    scripted_ollama.script(
        Reply(content="cut in the middle of", done_reason="length"),
        Reply(content="writing", tool_calls=[{"name": "t"}], done_reason="length"),
    )
    client = OpenAICompatClient(scripted_ollama.url)
    try:
        first = await collect(client, ChatRequest(model="m", messages=USER))
        second = await collect(client, ChatRequest(model="m", messages=USER))
    finally:
        await client.close()
    assert first[-1].done_reason == "length"
    assert second[-1].done_reason == "length", "cut while writing its calls"
