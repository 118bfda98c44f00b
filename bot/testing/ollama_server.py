"""A scripted stand-in for an Ollama server, for tests and benchmarks.

Tests script the answers (:class:`Reply`) and the server plays them back over
the real wire protocols: Ollama's native NDJSON API (``/api/chat`` and
friends) and the OpenAI-compatible SSE API (``/v1/chat/completions``). The
framing follows ``shared/protocols/ollama.md`` closely enough that the official
``ollama`` client cannot tell it from Ollama, so client code is tested at the
network seam rather than with mocks.

Every request is recorded (:attr:`ScriptedOllama.requests`); chat requests
that ask for an answer are also kept, as bodies, in
:attr:`ScriptedOllama.chat_requests`. Load/unload requests (empty
``messages``) answer at once and consume no reply.

Run it standalone with ``python -m bot.testing.ollama_server --script FILE``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import inspect
import itertools
import json
import re
import secrets
import string
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

OLLAMA_VERSION = "0.12.10"
NO_REPLY_ERROR = "scripted server: no reply scripted for this request"
DEFAULT_CAPABILITIES = ("completion", "tools")
DEFAULT_KEEP_ALIVE_S = 300.0
DEFAULT_MODEL_SIZE = 3_300_000_000
NDJSON = "application/x-ndjson"
_STATUS_ERRORS = {
    401: "unauthorized",
    403: "forbidden",
    404: "model not found",
    429: "too many requests",
    500: "internal server error",
    503: "server busy, please try again.  maximum pending requests exceeded",
}
# Parsed once by the recording middleware; aiohttp >= 3.13 wants typed keys.
_BODY: Any = web.RequestKey("body", dict) if hasattr(web, "RequestKey") else "body"
_OPENAI_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
}


@dataclass
class Reply:
    """One scripted answer to a chat request.

    ``tool_calls`` holds ``{"name": ..., "arguments": {...}}`` (optionally
    ``"id"``); string ``arguments`` go out verbatim, to script malformed calls.

    Chunks go out in the order thinking, content, tool calls, then the final
    ``done`` chunk. ``midstream_error`` and ``disconnect`` take the final
    chunk's place, so the stream breaks after the content; ``hang`` stops after
    the first chunk until the client goes away. ``done_content`` and
    ``tool_calls_on_done`` put leftovers on the final chunk, as Ollama may.

    ``runaway`` plays a model that will not stop: after ``content`` it streams
    again and again, one frame per ``chunk_size`` characters ``chunk_delay``
    apart, for ``runaway_frames`` frames (``None``: until the client goes away),
    then the reply ends as scripted. Like a real server, the reply stops after
    as many thinking/content frames (tokens) as the request's ``num_predict``
    (native) or ``max_tokens`` (OpenAI) allow and ends with ``done_reason`` /
    ``finish_reason`` ``"length"``, its tool calls unsent;
    ``ignore_max_tokens`` plays a server that ignores the cap.
    """

    content: str = ""
    thinking: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    chunk_size: int = 8
    chunk_delay: float = 0.0
    delay: float = 0.0
    status: int = 200
    error: str | None = None
    midstream_error: str | None = None
    done_reason: str = "stop"
    prompt_eval_count: int | None = None
    eval_count: int | None = None
    hang: bool = False
    disconnect: bool = False
    done_content: str = ""
    tool_calls_on_done: bool = False
    runaway: str = ""
    runaway_frames: int | None = None
    ignore_max_tokens: bool = False
    signin_url: str = "https://ollama.com/connect?name=scripted&key=c2NyaXB0ZWQ"

    def __post_init__(self) -> None:
        if self.chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        if self.status != 200 and self.error is None:
            self.error = _STATUS_ERRORS.get(self.status, f"HTTP {self.status}")


def tool_call(name: str, /, **arguments: Any) -> dict[str, Any]:
    """A tool call for :attr:`Reply.tool_calls`: ``tool_call("bash", command="ls")``."""
    return {"name": name, "arguments": arguments}


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the server received it.

    ``body`` is the parsed JSON (``None`` when absent or not JSON), ``headers``
    is case-insensitive, ``time`` is ``time.monotonic()`` at arrival, ``peer``
    the client's ``(host, port)``: the same port means a reused connection.
    """

    method: str
    path: str
    body: Any
    headers: Mapping[str, str]
    time: float
    peer: tuple[str, int] | None = None


ReplyFactory = Callable[[dict[str, Any]], "Reply | Awaitable[Reply]"]


@dataclass(slots=True)
class _Played:
    """How far one streamed answer got: token frames written, and whether the cap cut it."""

    tokens: int = 0
    frames: int = 0
    cut: bool = False


@dataclass(slots=True)
class _LoadedModel:
    context_length: int
    expires_at: float | None  # wall-clock seconds; None stays loaded


def _now_rfc3339() -> str:
    ns = time.time_ns()
    stamp = datetime.fromtimestamp(ns // 1_000_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{ns % 1_000_000_000:09d}Z"


def _compact(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _ndjson(obj: Any) -> bytes:
    return (_compact(obj) + "\n").encode()


def _sse(obj: Any) -> bytes:
    return f"data: {_compact(obj)}\n\n".encode()


def _split(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _new_call_id() -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "call_" + "".join(secrets.choice(alphabet) for _ in range(8))


def _keep_alive_seconds(value: Any) -> float | None:
    """Seconds to stay loaded (Go durations or numbers); ``None``: forever."""
    if value is None:
        return DEFAULT_KEEP_ALIVE_S
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
        parts = re.findall(r"(-?\d+(?:\.\d+)?)(ms|s|m|h)", str(value))
        if not parts:
            return DEFAULT_KEEP_ALIVE_S
        seconds = sum(float(n) * units[u] for n, u in parts)
    return None if seconds < 0 else seconds


def _runaway_pieces(reply: Reply) -> Iterator[str]:
    """The runaway text in ``chunk_size`` pieces, cycled (endlessly when no count is set)."""
    if not reply.runaway:
        return iter(())
    pieces = itertools.cycle(_split(reply.runaway, reply.chunk_size))
    return itertools.islice(pieces, reply.runaway_frames)


def _token_pieces(reply: Reply, *, done_content: bool) -> Iterator[tuple[str, str]]:
    """``("thinking"|"content", text)`` per token frame: thinking, content, the runaway,
    and (``done_content``) the leftovers, for APIs that have no final chunk to carry them."""
    size = reply.chunk_size
    for text in _split(reply.thinking, size):
        yield "thinking", text
    leftover = reply.done_content if done_content else ""
    # Content and leftovers split as one text, unless a runaway goes between them.
    for text in _split(reply.content + ("" if reply.runaway else leftover), size):
        yield "content", text
    for text in _runaway_pieces(reply):
        yield "content", text
    if reply.runaway:
        for text in _split(leftover, size):
            yield "content", text


def _output_cap(value: Any, reply: Reply) -> int | None:
    """The output token cap a request asked for, unless this reply ignores it."""
    if reply.ignore_max_tokens or isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if value > 0 else None  # Ollama: -1 is "no limit", -2 "fill the context"


def _estimate_tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _family(model: str) -> str:
    base = model.rsplit("/", 1)[-1].split(":", 1)[0].lower()
    found = re.match(r"[a-z]+\d*", base)
    return found.group(0) if found else "llama"


def _details(model: str) -> dict[str, Any]:
    family = _family(model)
    return {
        "parent_model": "",
        "format": "gguf",
        "family": family,
        "families": [family],
        "parameter_size": "4.0B",
        "quantization_level": "Q4_K_M",
    }


def _digest(model: str) -> str:
    return hashlib.sha256(model.encode()).hexdigest()


def _native_chunk(model: str, content: str = "", **extra: Any) -> dict[str, Any]:
    """A ``done:false`` chat chunk; empty ``thinking``/``tool_calls`` stay absent."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    message.update({key: value for key, value in extra.items() if value})
    return {"model": model, "created_at": _now_rfc3339(), "message": message, "done": False}


def _native_calls(reply: Reply) -> list[dict[str, Any]]:
    return [
        {
            "id": call.get("id") or _new_call_id(),
            "function": {"index": i, "name": call["name"], "arguments": call.get("arguments", {})},
        }
        for i, call in enumerate(reply.tool_calls)
    ]


async def _wait_until_cancelled() -> None:
    """Block until the client goes away or the server stops (both cancel us)."""
    await asyncio.get_running_loop().create_future()


class ScriptedOllama:
    """An aiohttp server speaking Ollama's APIs with scripted answers.

    With ``strict_models=False`` every model name is known (with default
    capabilities); with ``True`` only ``models`` are, and others get 404.
    """

    def __init__(
        self,
        models: Iterable[str] | None = None,
        capabilities: Mapping[str, Iterable[str]] | None = None,
        context_length: int | Mapping[str, int] = 40960,
        strict_models: bool = False,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        default_num_ctx: int = 4096,
        model_sizes: Mapping[str, tuple[int, int]] | None = None,
    ) -> None:
        self.models: list[str] = list(models) if models is not None else ["qwen3:4b"]
        self.capabilities = {m: list(c) for m, c in (capabilities or {}).items()}
        self.context_length = context_length
        self.strict_models = strict_models
        self.default_num_ctx = default_num_ctx  # the num_ctx a model loads with if none is sent
        self.model_sizes = dict(model_sizes or {})  # model -> (size, size_vram) for /api/ps
        self.requests: list[RecordedRequest] = []
        self.chat_requests: list[dict[str, Any]] = []
        # time.monotonic() when the last byte of each complete chat answer was
        # written: benchmarks measure the client's gap to its next request.
        self.responses_finished: list[float] = []
        # For each chat stream the client closed before its end: how many token
        # (thinking/content) frames had gone out. Tests see a client cut a runaway here.
        self.abandoned_streams: list[int] = []
        self.url = ""
        self._host, self._port = host, port
        self._shared: deque[Reply] = deque()
        self._per_model: dict[str, deque[Reply]] = {}
        self._factory: ReplyFactory | None = None
        self._loaded: dict[str, _LoadedModel] = {}
        self._chat_arrived = asyncio.Condition()
        self._inflight: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> str:
        """Listen on ``host:port`` (port 0 picks a free one); returns :attr:`url`."""
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/", self._root)
        app.router.add_get("/api/version", self._version)
        app.router.add_get("/api/tags", self._tags)
        app.router.add_post("/api/show", self._show)
        app.router.add_get("/api/ps", self._ps)
        app.router.add_post("/api/chat", self._chat)
        app.router.add_post("/api/generate", self._generate)
        app.router.add_post("/api/pull", self._pull)
        app.router.add_post("/v1/chat/completions", self._openai_chat)
        app.router.add_get("/v1/models", self._openai_models)
        # aiohttp sets TCP_NODELAY on every accepted socket itself
        # (BaseProtocol.connection_made), which per-chunk benchmarks rely on.
        # handler_cancellation lets a client that goes away end a hanging reply.
        self._runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self.url

    async def stop(self) -> None:
        """End replies still in flight (hanging ones too) and close the server."""
        for task in list(self._inflight):
            task.cancel()
        if self._inflight:
            await asyncio.wait(list(self._inflight), timeout=1.0)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ScriptedOllama:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- scripting -----------------------------------------------------------

    def script(self, *replies: Reply) -> None:
        """Append replies to the queue shared by every model."""
        self._shared.extend(replies)

    def script_for(self, model: str, *replies: Reply) -> None:
        """Append replies for one model; they go before the shared queue."""
        self._per_model.setdefault(model, deque()).extend(replies)

    def respond_with(self, factory: ReplyFactory | None) -> None:
        """Answer with ``factory(body)`` (sync or async) once the queues are empty."""
        self._factory = factory

    @property
    def loaded_models(self) -> list[str]:
        """Models a chat or load request loaded and keep_alive has not yet expired."""
        self._expire()
        return list(self._loaded)

    async def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:  # noqa: ASYNC109
        """Wait until ``n`` chat requests arrived; returns the chat request bodies."""
        async with asyncio.timeout(timeout), self._chat_arrived:
            await self._chat_arrived.wait_for(lambda: len(self.chat_requests) >= n)
        return self.chat_requests

    # -- bookkeeping ---------------------------------------------------------

    @web.middleware
    async def _record(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = CIMultiDict(request.headers)
        peername = request.transport.get_extra_info("peername") if request.transport else None
        peer = (str(peername[0]), int(peername[1])) if peername else None
        self.requests.append(
            RecordedRequest(request.method, request.path, body, headers, time.monotonic(), peer)
        )
        request[_BODY] = body if isinstance(body, dict) else {}
        task = asyncio.current_task()
        assert task is not None
        self._inflight.add(task)
        try:
            return await handler(request)
        finally:
            self._inflight.discard(task)

    def _is_known(self, model: str) -> bool:
        if not self.strict_models:
            return bool(model)
        return model in self.models or f"{model}:latest" in self.models

    def _caps(self, model: str) -> list[str]:
        return self.capabilities.get(model, list(DEFAULT_CAPABILITIES))

    def _sizes(self, model: str) -> tuple[int, int]:
        return self.model_sizes.get(model, (DEFAULT_MODEL_SIZE, DEFAULT_MODEL_SIZE))

    def _expire(self) -> None:
        now = time.time()
        for name, state in list(self._loaded.items()):
            if state.expires_at is not None and state.expires_at <= now:
                del self._loaded[name]

    def _load(self, model: str, body: dict[str, Any]) -> None:
        seconds = _keep_alive_seconds(body.get("keep_alive"))
        num_ctx = (body.get("options") or {}).get("num_ctx") or self.default_num_ctx
        expires_at = None if seconds is None else time.time() + seconds
        self._loaded[model] = _LoadedModel(int(num_ctx), expires_at)

    def _full_name(self, model: str) -> str:
        name = model if ":" in model.rsplit("/", 1)[-1] else f"{model}:latest"
        return f"registry.ollama.ai/{name}" if "/" in name else f"registry.ollama.ai/library/{name}"

    async def _next_reply(self, model: str, body: dict[str, Any]) -> Reply | None:
        queue = self._per_model.get(model)
        if queue:
            return queue.popleft()
        if self._shared:
            return self._shared.popleft()
        if self._factory is not None:
            result = self._factory(body)
            return await result if inspect.isawaitable(result) else result
        return None

    async def _prepare_chat(self, body: dict[str, Any]) -> tuple[Reply | None, int | None, str]:
        """Check a chat request as Ollama would, then pick and delay its reply.

        Returns ``(reply, None, "")`` to answer, or ``(reply or None, status,
        error)`` for an error before the stream.
        """
        async with self._chat_arrived:
            self.chat_requests.append(body)
            self._chat_arrived.notify_all()
        model = str(body.get("model") or "")
        if not model:
            return None, 400, "model is required"
        if not self._is_known(model):
            return None, 404, f"model '{model}' not found"
        if body.get("tools") and "tools" not in self._caps(model):
            return None, 400, f"{self._full_name(model)} does not support tools"
        reply = await self._next_reply(model, body)
        if reply is None:
            return None, 500, NO_REPLY_ERROR
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.status != 200:
            return reply, reply.status, reply.error or ""
        self._load(model, body)
        return reply, None, ""

    def _metrics(
        self, reply: Reply, body: dict[str, Any], started: int, played: _Played | None = None
    ) -> dict[str, int]:
        prompt = "".join(str(m.get("content") or "") for m in body.get("messages") or [])
        prompt += _compact(body.get("tools") or [])
        output = reply.thinking + reply.content + reply.done_content + _compact(reply.tool_calls)
        prompt_count = reply.prompt_eval_count
        if prompt_count is None:
            prompt_count = _estimate_tokens(prompt)
        eval_count = reply.eval_count
        if eval_count is None:
            # A runaway or a capped answer is as long as what went out.
            cut_short = played is not None and (played.cut or reply.runaway)
            eval_count = played.tokens if played and cut_short else _estimate_tokens(output)
        load_ns, prompt_ns, eval_ns = 1_200_000, prompt_count * 50_000, eval_count * 1_000_000
        return {
            "total_duration": max(time.monotonic_ns() - started, load_ns + prompt_ns + eval_ns),
            "load_duration": load_ns,
            "prompt_eval_count": prompt_count,
            "prompt_eval_duration": prompt_ns,
            "eval_count": eval_count,
            "eval_duration": eval_ns,
        }

    async def _play(
        self,
        request: web.Request,
        reply: Reply,
        content_type: str,
        frames: tuple[Iterable[bytes], list[bytes]],
        error_frame: bytes,
        final_frames: Callable[[_Played], list[bytes]],
        cap: int | None,
    ) -> web.StreamResponse:
        """Stream the token frames (at most ``cap``), the tool-call frames unless the cap
        cut the answer, then the error, a dropped connection, or the end."""
        tokens, calls = frames
        response = web.StreamResponse(headers={"Content-Type": content_type})
        await response.prepare(request)
        played = _Played()

        async def send(frame: bytes) -> None:
            if played.frames and (reply.chunk_delay or reply.runaway):
                # sleep(0) too: a fast endless runaway must still let the client run.
                await asyncio.sleep(reply.chunk_delay)
            await response.write(frame)
            played.frames += 1
            if reply.hang:
                await _wait_until_cancelled()

        try:
            for frame in tokens:
                if cap is not None and played.tokens >= cap:
                    played.cut = True
                    break
                await send(frame)
                played.tokens += 1
            for frame in [] if played.cut else calls:
                await send(frame)
            if reply.midstream_error is not None:
                await response.write(error_frame)
            elif reply.disconnect:
                if request.transport is not None:
                    request.transport.abort()
                await _wait_until_cancelled()
            else:
                for frame in final_frames(played):
                    await response.write(frame)
                await response.write_eof()
                self.responses_finished.append(time.monotonic())
        except (asyncio.CancelledError, ConnectionResetError):
            if not reply.disconnect:
                self.abandoned_streams.append(played.tokens)
            raise
        return response

    # -- native API ----------------------------------------------------------

    async def _root(self, request: web.Request) -> web.Response:
        return web.Response(text="Ollama is running")

    async def _version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": OLLAMA_VERSION})

    async def _tags(self, request: web.Request) -> web.Response:
        stamp = datetime.now(UTC).isoformat()
        models = [
            {"name": m, "model": m, "modified_at": stamp, "size": self._sizes(m)[0]}
            | {"digest": _digest(m), "details": _details(m)}
            for m in self.models
        ]
        return web.json_response({"models": models})

    async def _show(self, request: web.Request) -> web.Response:
        model = str(request[_BODY].get("model") or request[_BODY].get("name") or "")
        if not self._is_known(model):
            return web.json_response({"error": f"model '{model}' not found"}, status=404)
        family = _family(model)
        context_length = self.context_length
        if isinstance(context_length, Mapping):
            context_length = context_length.get(model, 40960)
        model_info = {
            "general.architecture": family,
            "general.parameter_count": 4_022_468_096,
            f"{family}.context_length": context_length,
            f"{family}.embedding_length": 2560,
        }
        return web.json_response(
            {
                "license": "Apache License 2.0",
                "modelfile": f"FROM {model}\n",
                "parameters": "temperature 0.6\ntop_k 20\ntop_p 0.95",
                "template": "{{ .Prompt }}",
                "details": _details(model),
                "model_info": model_info,
                "capabilities": self._caps(model),
                "modified_at": datetime.now(UTC).isoformat(),
            }
        )

    async def _ps(self, request: web.Request) -> web.Response:
        self._expire()
        forever = datetime.now(UTC) + timedelta(days=365 * 200)
        models = []
        for name, state in self._loaded.items():
            size, size_vram = self._sizes(name)
            expires = forever
            if state.expires_at is not None:
                expires = datetime.fromtimestamp(state.expires_at, UTC)
            models.append(
                {"name": name, "model": name, "size": size, "digest": _digest(name)}
                | {"details": _details(name), "expires_at": expires.isoformat()}
                | {"size_vram": size_vram, "context_length": state.context_length}
            )
        return web.json_response({"models": models})

    def _load_or_unload(self, request: web.Request, chat: bool) -> web.Response:
        body = request[_BODY]
        model = str(body.get("model"))
        if not self._is_known(model):
            return web.json_response({"error": f"model '{model}' not found"}, status=404)
        if _keep_alive_seconds(body.get("keep_alive")) == 0:
            self._loaded.pop(model, None)
            reason = "unload"
        else:
            self._load(model, body)
            reason = "load"
        answer: dict[str, Any] = {"model": model, "created_at": _now_rfc3339()}
        answer |= {"message": {"role": "assistant", "content": ""}} if chat else {"response": ""}
        return web.json_response(answer | {"done_reason": reason, "done": True})

    async def _generate(self, request: web.Request) -> web.Response:
        if request[_BODY].get("model") and not request[_BODY].get("prompt"):
            return self._load_or_unload(request, chat=False)
        error = "scripted server: /api/generate answers load/unload requests only"
        return web.json_response({"error": error}, status=400)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = request[_BODY]
        if body.get("model") and not body.get("messages"):
            return self._load_or_unload(request, chat=True)
        started = time.monotonic_ns()
        reply, status, error = await self._prepare_chat(body)
        if status is not None:
            payload: dict[str, Any] = {"error": error}
            if status == 401 and reply is not None:
                payload["signin_url"] = reply.signin_url
            return web.json_response(payload, status=status)
        assert reply is not None
        model = str(body["model"])
        try:
            if body.get("stream", True):
                return await self._stream_native(request, body, reply, started)
            return await self._whole_native(request, body, reply, started)
        finally:
            if _keep_alive_seconds(body.get("keep_alive")) == 0:
                self._loaded.pop(model, None)

    def _native_final(
        self,
        body: dict[str, Any],
        reply: Reply,
        started: int,
        message: dict[str, Any],
        played: _Played | None = None,
    ) -> dict[str, Any]:
        head = {"model": body["model"], "created_at": _now_rfc3339(), "message": message}
        reason = "length" if played is not None and played.cut else reply.done_reason
        return (
            head
            | {"done": True, "done_reason": reason}
            | self._metrics(reply, body, started, played)
        )

    async def _stream_native(
        self, request: web.Request, body: dict[str, Any], reply: Reply, started: int
    ) -> web.StreamResponse:
        model = str(body["model"])
        calls = _native_calls(reply)
        tokens = (
            _native_chunk(model, thinking=text)
            if kind == "thinking"
            else _native_chunk(model, text)
            for kind, text in _token_pieces(reply, done_content=False)
        )
        tail = []
        if calls and not reply.tool_calls_on_done:
            tail.append(_native_chunk(model, tool_calls=calls))
        if not (reply.thinking or reply.content or reply.runaway or tail):
            tail.append(_native_chunk(model))

        def final(played: _Played) -> list[bytes]:
            leftover = "" if played.cut else reply.done_content
            message: dict[str, Any] = {"role": "assistant", "content": leftover}
            if calls and reply.tool_calls_on_done and not played.cut:
                message["tool_calls"] = calls
            return [_ndjson(self._native_final(body, reply, started, message, played))]

        frames = ((_ndjson(chunk) for chunk in tokens), [_ndjson(chunk) for chunk in tail])
        error_frame = _ndjson({"error": reply.midstream_error})
        cap = _output_cap((body.get("options") or {}).get("num_predict"), reply)
        return await self._play(request, reply, NDJSON, frames, error_frame, final, cap)

    async def _whole_native(
        self, request: web.Request, body: dict[str, Any], reply: Reply, started: int
    ) -> web.StreamResponse:
        cap = _output_cap((body.get("options") or {}).get("num_predict"), reply)
        endless = reply.runaway and reply.runaway_frames is None and cap is None
        if reply.hang or reply.disconnect or endless:
            if reply.disconnect and request.transport is not None:
                request.transport.abort()
            await _wait_until_cancelled()
        if reply.midstream_error is not None:
            return web.json_response({"error": reply.midstream_error}, status=500)
        pieces = list(
            itertools.islice(
                _token_pieces(reply, done_content=True), None if cap is None else cap + 1
            )
        )
        played = _Played(cut=cap is not None and len(pieces) > cap)
        pieces = pieces[:cap]
        played.tokens = played.frames = len(pieces)
        text = "".join(t for kind, t in pieces if kind == "content")
        thinking = "".join(t for kind, t in pieces if kind == "thinking")
        message = _native_chunk("", text, thinking=thinking)["message"]
        if reply.tool_calls and not played.cut:
            message["tool_calls"] = _native_calls(reply)
        final = self._native_final(body, reply, started, message, played)
        return web.json_response(final, dumps=_compact)

    async def _pull(self, request: web.Request) -> web.StreamResponse:
        body = request[_BODY]
        model = str(body.get("model") or body.get("name") or "")
        failure = "pull model manifest: file does not exist"
        known = self._is_known(model)
        if not body.get("stream", True):
            if not known:
                return web.json_response({"error": failure}, status=500)
            return web.json_response({"status": "success"})
        digest, total = f"sha256:{_digest(model)}", self._sizes(model)[0]
        layer = {"status": f"pulling {digest[7:19]}", "digest": digest, "total": total}
        lines: list[dict[str, Any]] = [{"status": "pulling manifest"}]
        if known:
            lines += [layer, layer | {"completed": total // 2}, layer | {"completed": total}]
            lines += [{"status": s} for s in ("verifying sha256 digest", "writing manifest")]
            lines.append({"status": "success"})
        else:
            lines.append({"error": failure})
        response = web.StreamResponse(headers={"Content-Type": NDJSON})
        await response.prepare(request)
        for line in lines:
            await response.write(_ndjson(line))
        return response

    # -- OpenAI-compatible API -------------------------------------------------

    async def _openai_models(self, request: web.Request) -> web.Response:
        created = int(time.time())
        data = [
            {"id": m, "object": "model", "created": created, "owned_by": "library"}
            for m in self.models
        ]
        return web.json_response({"object": "list", "data": data})

    async def _openai_chat(self, request: web.Request) -> web.StreamResponse:
        body = request[_BODY]
        started = time.monotonic_ns()
        if not body.get("stream"):
            refusal = {
                "message": "scripted server: only stream:true is served",
                "type": "api_error",
            }
            return web.json_response({"error": refusal}, status=400)
        reply, status, message = await self._prepare_chat(body)
        if status is not None:
            kind = _OPENAI_ERROR_TYPES.get(status, "api_error")
            error = {"message": message, "type": kind, "param": None, "code": None}
            return web.json_response({"error": error}, status=status)
        assert reply is not None
        base = {
            "id": f"chatcmpl-{secrets.randbelow(10**6)}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body["model"],
            "system_fingerprint": "fp_ollama",
        }

        def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
            return _sse(base | {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

        token_deltas = (
            {"reasoning": text} if kind == "thinking" else {"content": text}
            for kind, text in _token_pieces(reply, done_content=True)
        )
        call_deltas: list[dict[str, Any]] = []
        for index, call in enumerate(reply.tool_calls):
            # Arguments go out as a JSON string in about three fragments, as
            # vLLM and llama.cpp send them; clients must join them by index.
            arguments = call.get("arguments", {})
            arguments = arguments if isinstance(arguments, str) else _compact(arguments)
            head = {"index": index, "id": call.get("id") or _new_call_id(), "type": "function"}
            function = {"name": call["name"], "arguments": ""}
            call_deltas.append({"tool_calls": [head | {"function": function}]})
            for piece in _split(arguments, max(1, -(-len(arguments) // 3))):
                call_deltas.append(
                    {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
                )

        def with_role(deltas: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
            # The role rides on the first delta, as Ollama sends it.
            for number, delta in enumerate(deltas):
                yield ({"role": "assistant"} | delta) if number == 0 else delta

        has_tokens = bool(reply.thinking or reply.content or reply.done_content or reply.runaway)
        token_frames: Iterator[bytes]
        if has_tokens:
            token_frames = (event(d) for d in with_role(token_deltas))
            call_frames = [event(d) for d in call_deltas]
        else:
            token_frames = iter(())
            call_frames = [event(d) for d in with_role(call_deltas or [{"content": ""}])]

        def final(played: _Played) -> list[bytes]:
            # An answer cut while it wrote its calls still ends as "length".
            finish = "tool_calls" if reply.tool_calls else "stop"
            finish = reply.done_reason if reply.done_reason != "stop" else finish
            ending = [event({}, "length" if played.cut else finish)]
            if (body.get("stream_options") or {}).get("include_usage"):
                metrics = self._metrics(reply, body, started, played)
                prompt, completion = metrics["prompt_eval_count"], metrics["eval_count"]
                usage = {"prompt_tokens": prompt, "completion_tokens": completion}
                usage["total_tokens"] = prompt + completion
                ending.append(_sse(base | {"choices": [], "usage": usage}))
            return [*ending, b"data: [DONE]\n\n"]

        cap = _output_cap(body.get("max_tokens") or body.get("max_completion_tokens"), reply)
        error_frame = _sse({"error": {"message": reply.midstream_error, "type": "api_error"}})
        frames = (token_frames, call_frames)
        return await self._play(
            request, reply, "text/event-stream", frames, error_frame, final, cap
        )


async def _serve_forever(host: str, port: int, script: list[Reply]) -> None:
    async with ScriptedOllama(host=host, port=port) as server:
        server.script(*script)
        print(server.url, flush=True)
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run a scripted Ollama-protocol server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--script", help="JSON file holding a list of Reply fields")
    args = parser.parse_args(argv)
    script: list[Reply] = []
    if args.script:
        with open(args.script, encoding="utf-8") as handle:
            script = [Reply(**fields) for fields in json.load(handle)]
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(args.host, args.port, script))


if __name__ == "__main__":
    main()
