"""Ollama's native API through the official ``ollama`` client.

One :class:`ollama.AsyncClient` (one httpx connection pool) serves every call.
Whatever goes wrong on the wire comes out as a :class:`ModelError` subclass
whose ``user_message`` says what to do; raw httpx, ``ollama`` and builtin
connection errors never escape.

Two things the official client does on its own are overridden here:

- it sends ``OLLAMA_API_KEY`` from the environment to whatever host it talks
  to; we send exactly the ``api_key`` we were given, or none;
- it turns an error body into a bare string, losing the ``signin_url`` of a
  401; a response hook keeps it so the user can be pointed at it.

Ollama 0.6's response model drops tool-call ``id``s, so calls get fresh
``call_<8 hex>`` ids here (Ollama matches tool results by name and order).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncGenerator, AsyncIterator, Generator
from contextlib import aclosing
from typing import Any, cast

import httpx
import ollama
import pydantic

from bot.models.base import (
    ChatRequest,
    ModelAuthError,
    ModelChunk,
    ModelError,
    ModelNotFoundError,
    ModelOverloadedError,
    ModelStreamError,
    ModelTimeoutError,
    ModelUnavailableError,
    ToolCall,
)


def new_call_id() -> str:
    """An id for a tool call whose server sent none."""
    return f"call_{secrets.token_hex(4)}"


def normalize_host(host: str) -> str:
    """``localhost:11434`` → ``http://localhost:11434``; no trailing slash."""
    host = host.strip().rstrip("/")
    return host if "://" in host else f"http://{host}"


class _ExactBearer(httpx.Auth):
    """Send our API key, or no Authorization header at all."""

    def __init__(self, api_key: str | None) -> None:
        self._api_key = api_key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._api_key:
            request.headers["Authorization"] = f"Bearer {self._api_key}"
        else:
            request.headers.pop("Authorization", None)
        yield request


class OllamaClient:
    """A :class:`~bot.models.base.ModelClient` for one Ollama host."""

    def __init__(
        self,
        host: str,
        *,
        api_key: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 300.0,
    ) -> None:
        self.endpoint = normalize_host(host)
        self.read_timeout = read_timeout
        self._signin_url: str | None = None
        self._client = ollama.AsyncClient(
            self.endpoint,
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            # Plain http never uses TLS; skipping the CA bundle load saves ~40 ms
            # of start-up. https endpoints keep full verification.
            verify=not self.endpoint.startswith("http://"),
            auth=_ExactBearer(api_key),
            event_hooks={"response": [self._keep_signin_url]},
        )

    async def _keep_signin_url(self, response: httpx.Response) -> None:
        if response.status_code not in (401, 403):
            return
        await response.aread()
        try:
            url = response.json().get("signin_url")
        except (ValueError, AttributeError):
            return
        if isinstance(url, str) and url:
            self._signin_url = url

    # -- chat ----------------------------------------------------------------

    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[ModelChunk]:
        """Stream one chat step; the last chunk has ``done=True`` and the metrics."""
        output_began = False
        finished = False
        try:
            parts = await self._client.chat(
                model=request.model,
                messages=request.messages,
                tools=request.tools or None,
                stream=True,
                options=request.options or None,
                keep_alive=request.keep_alive,
                think=request.think,
            )
            # The official client streams from an async generator; closing it
            # closes the HTTP response when our consumer stops early.
            stream = cast(AsyncGenerator[ollama.ChatResponse, None], parts)
            async with aclosing(stream):
                async for part in stream:
                    output_began = True
                    chunk = _chunk_from(part)
                    finished = finished or chunk.done
                    # Reading on to the end of the body (rather than stopping at
                    # the done chunk) lets httpx reuse the connection.
                    yield chunk
        except Exception as exc:
            raise self._translate(exc, request.model, output_began) from exc
        if not finished:
            raise ModelStreamError(
                f"Ollama at {self.endpoint} closed the answer from '{request.model}' before "
                "it finished. Try again; if it repeats, check the Ollama server log.",
                model=request.model,
                endpoint=self.endpoint,
            )

    # -- model management ----------------------------------------------------

    async def list_models(self) -> list[str]:
        response = await self._call(self._client.list(), "")
        return [m.model for m in response.models if m.model]

    async def show(self, model: str) -> dict[str, Any]:
        """``capabilities``, ``context_length`` (from ``<arch>.context_length``) and ``raw``."""
        response = await self._call(self._client.show(model), model)
        info = dict(response.modelinfo or {})
        context_length = next(
            (int(v) for k, v in info.items() if k.endswith(".context_length") and v), None
        )
        return {
            "capabilities": list(response.capabilities or []),
            "context_length": context_length,
            "raw": response.model_dump(mode="json", by_alias=True),
        }

    async def ps(self) -> list[dict[str, Any]]:
        """Loaded models: name, size, size_vram (bytes), expires_at, context_length."""
        response = await self._call(self._client.ps(), "")
        return [
            {
                "name": m.name or m.model,
                "model": m.model,
                "size": int(m.size or 0),
                "size_vram": int(m.size_vram or 0),
                "expires_at": m.expires_at,
                "context_length": m.context_length,
            }
            for m in response.models
        ]

    async def unload(self, model: str) -> None:
        """Ask the server to drop ``model`` from memory now."""
        await self._call(self._client.generate(model=model, keep_alive=0), model)

    async def version(self) -> str:
        # The official client has no call for /api/version; _request_raw
        # shares its connection pool and error handling.
        response = await self._call(self._client._request_raw("GET", "/api/version"), "")
        return str(response.json().get("version", ""))

    async def close(self) -> None:
        await self._client.close()

    async def _call(self, call: Any, model: str) -> Any:
        try:
            return await call
        except Exception as exc:
            raise self._translate(exc, model, output_began=False) from exc

    # -- errors --------------------------------------------------------------

    def _translate(self, exc: Exception, model: str, output_began: bool) -> ModelError:
        where = {"model": model, "endpoint": self.endpoint}
        host = self.endpoint
        if isinstance(exc, ollama.ResponseError):
            return self._from_status(exc.status_code, str(exc.error), model)
        if isinstance(exc, httpx.ConnectTimeout | httpx.ConnectError | ConnectionError):
            return ModelUnavailableError(
                f"Cannot reach Ollama at {host}. Start it with `ollama serve` "
                "(or set OLLAMA_HOST to where it runs).",
                **where,
            )
        if isinstance(exc, httpx.TimeoutException):
            return ModelTimeoutError(
                f"Ollama at {host} sent nothing for {self.read_timeout:g} s while answering "
                f"with '{model}'. It may still be loading the model or be overloaded; "
                "raise the request timeout if this model is slow.",
                **where,
            )
        if isinstance(exc, httpx.TransportError) and not output_began:
            return ModelUnavailableError(
                f"Ollama at {host} dropped the connection before answering ({exc!r}). "
                "Check that it is running (`ollama serve`) and that OLLAMA_HOST is right.",
                **where,
            )
        if isinstance(exc, httpx.TransportError):
            return ModelStreamError(
                f"The connection to Ollama at {host} broke in the middle of the answer "
                f"from '{model}' ({exc!r}). Try again.",
                **where,
            )
        if isinstance(exc, json.JSONDecodeError | pydantic.ValidationError):
            return ModelStreamError(
                f"Ollama at {host} sent a response that could not be read ({exc}). "
                "Is it really an Ollama server?",
                **where,
            )
        return ModelError(f"Talking to Ollama at {host} failed: {exc!r}", **where)

    def _from_status(self, status: int, text: str, model: str) -> ModelError:
        where = {"model": model, "endpoint": self.endpoint}
        host = self.endpoint
        if status == -1:
            return ModelStreamError(
                f"Ollama at {host} reported an error in the middle of the answer: {text}", **where
            )
        if status == 404:
            return ModelNotFoundError(
                f"Model '{model}' is not available on {host}. Run `ollama pull {model}`.", **where
            )
        if status in (401, 403):
            url = self._signin_url
            hint = f"sign in at {url} or run `ollama signin`" if url else "run `ollama signin`"
            return ModelAuthError(
                f"Ollama at {host} refused '{model}' (HTTP {status}: {text}). To use cloud "
                f"models, {hint}; to call ollama.com directly, set OLLAMA_API_KEY.",
                signin_url=url,
                **where,
            )
        if status == 429 or status >= 500:
            return ModelOverloadedError(
                f"Ollama at {host} is busy or failing (HTTP {status}: {text}). "
                "Try again in a moment.",
                status_code=status,
                **where,
            )
        return ModelStreamError(f"Ollama at {host} rejected the request: {text}", **where)


def _chunk_from(part: ollama.ChatResponse) -> ModelChunk:
    message = part.message
    calls = [
        ToolCall(
            id=getattr(call, "id", None) or new_call_id(),
            name=call.function.name,
            arguments=dict(call.function.arguments or {}),
        )
        for call in message.tool_calls or []
    ]
    chunk = ModelChunk(
        content=message.content or "", thinking=message.thinking or "", tool_calls=calls
    )
    if part.done:
        chunk.done = True
        chunk.done_reason = part.done_reason
        chunk.prompt_tokens = part.prompt_eval_count
        chunk.completion_tokens = part.eval_count
        chunk.total_duration_ns = part.total_duration
    return chunk
