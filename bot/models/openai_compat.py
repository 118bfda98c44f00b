"""OpenAI-compatible chat completions (vLLM, llama.cpp, LM Studio, OpenRouter, Ollama's /v1).

Speaks ``POST /v1/chat/completions`` with ``stream: true`` over one reused
:class:`httpx.AsyncClient`; no ``openai`` package. Messages arrive in Ollama's
shape (see :mod:`bot.models.base`) and are translated here: tool-call
arguments become JSON strings, tool results are matched by ``tool_call_id``,
``thinking`` is dropped.

Decisions worth knowing:

- Tool-call arguments stream as string fragments keyed by ``index`` and are
  parsed once the call is complete. Arguments that are not a JSON object still
  yield the call, with ``{"__malformed__": "<raw text>"}`` as arguments, so the
  agent can tell the model its call was unreadable instead of losing it.
- ``finish_reason: "tool_calls"`` is reported as ``done_reason="stop"``, as
  Ollama does; ``"length"`` stays ``"length"``.
- Of ``options`` only ``temperature``, ``top_p``, ``num_predict`` (as
  ``max_tokens``), ``stop`` and ``seed`` are expressible; ``num_ctx`` and the
  rest are dropped. A string ``think`` becomes ``reasoning_effort``.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

import httpx

from bot.models.base import (
    ChatRequest,
    Message,
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

MALFORMED_ARGUMENTS = "__malformed__"
_OPTION_NAMES = {
    "temperature": "temperature",
    "top_p": "top_p",
    "num_predict": "max_tokens",
    "stop": "stop",
    "seed": "seed",
}
_IMAGE_TYPES = {
    "/9j/": "image/jpeg",
    "iVBOR": "image/png",
    "R0lGOD": "image/gif",
    "UklGR": "image/webp",
}


def new_call_id() -> str:
    """An id for a tool call whose server sent none."""
    return f"call_{secrets.token_hex(4)}"


async def iter_sse_data(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The ``data`` of each server-sent event, multi-line data joined by ``\\n``.

    Comment lines (``:`` keep-alives) and other fields are skipped; an event
    ends at a blank line, or at end of stream.
    """
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


def to_openai_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Translate Ollama-shaped messages to the OpenAI chat format."""
    translated: list[dict[str, Any]] = []
    unanswered: list[tuple[str, str]] = []  # (tool name, call id) awaiting a result
    for message in messages:
        role = message.get("role", "user")
        content = message.get("content") or ""
        if role == "assistant" and message.get("tool_calls"):
            calls = []
            for call in message["tool_calls"]:
                function = call.get("function", {})
                call_id = call.get("id") or new_call_id()
                arguments = function.get("arguments", {})
                if not isinstance(arguments, str):
                    arguments = json.dumps(arguments, ensure_ascii=False)
                name = function.get("name", "")
                unanswered.append((name, call_id))
                calls.append(
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": name, "arguments": arguments},
                    }
                )
            translated.append(
                {"role": "assistant", "content": content or None, "tool_calls": calls}
            )
        elif role == "tool":
            call_id = message.get("tool_call_id") or _claim_call_id(unanswered, message)
            translated.append({"role": "tool", "tool_call_id": call_id, "content": content})
        elif message.get("images"):
            parts: list[dict[str, Any]] = [{"type": "text", "text": content}]
            for image in message["images"]:
                kind = next(
                    (t for p, t in _IMAGE_TYPES.items() if image.startswith(p)), "image/png"
                )
                url = f"data:{kind};base64,{image}"
                parts.append({"type": "image_url", "image_url": {"url": url}})
            translated.append({"role": role, "content": parts})
        else:
            translated.append({"role": role, "content": content})
    return translated


def _claim_call_id(unanswered: list[tuple[str, str]], message: Message) -> str:
    """The id of the oldest unanswered call to this tool (Ollama matches by name)."""
    name = message.get("tool_name")
    for index, (call_name, call_id) in enumerate(unanswered):
        if call_name == name or name is None:
            del unanswered[index]
            return call_id
    return new_call_id()


def _parse_arguments(raw: str) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        return {MALFORMED_ARGUMENTS: raw}
    return parsed if isinstance(parsed, dict) else {MALFORMED_ARGUMENTS: raw}


class _ToolCallAssembler:
    """Joins streamed tool-call fragments by ``index``."""

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, str]] = {}

    def add(self, fragment: dict[str, Any]) -> None:
        call = self._calls.setdefault(
            int(fragment.get("index", 0)), {"id": "", "name": "", "args": ""}
        )
        call["id"] = fragment.get("id") or call["id"]
        function = fragment.get("function") or {}
        call["name"] += function.get("name") or ""
        call["args"] += function.get("arguments") or ""

    def take(self) -> list[ToolCall]:
        calls = [
            ToolCall(
                id=c["id"] or new_call_id(), name=c["name"], arguments=_parse_arguments(c["args"])
            )
            for _, c in sorted(self._calls.items())
        ]
        self._calls.clear()
        return calls


class OpenAICompatClient:
    """A :class:`~bot.models.base.ModelClient` for an OpenAI-compatible endpoint."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 300.0,
    ) -> None:
        base = base_url.strip().rstrip("/")
        base = base if "://" in base else f"http://{base}"
        self.endpoint = base.removesuffix("/v1")
        self.read_timeout = read_timeout
        self._chat_url = f"{self.endpoint}/v1/chat/completions"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            headers=headers,
            # Plain http never uses TLS: skip loading the CA bundle (~40 ms).
            verify=not self.endpoint.startswith("http://"),
        )

    def _payload(self, request: ChatRequest) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": request.model,
            "messages": to_openai_messages(request.messages),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.tools:
            payload["tools"] = request.tools
        for ours, theirs in _OPTION_NAMES.items():
            if request.options.get(ours) is not None:
                payload[theirs] = request.options[ours]
        if isinstance(request.think, str):
            payload["reasoning_effort"] = request.think
        return payload

    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[ModelChunk]:
        """Stream one chat step; the last chunk has ``done=True`` and the usage."""
        output_began = False
        try:
            async with self._http.stream(
                "POST",
                self._chat_url,
                json=self._payload(request),
                headers={"Accept": "text/event-stream"},
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise self._from_status(response, request.model)
                async with aclosing(self._read_events(response, request.model)) as chunks:
                    async for chunk in chunks:
                        output_began = True
                        yield chunk
        except ModelError:
            raise
        except Exception as exc:
            raise self._translate(exc, request.model, output_began, self._chat_url) from exc

    async def _read_events(
        self, response: httpx.Response, model: str
    ) -> AsyncGenerator[ModelChunk, None]:
        calls = _ToolCallAssembler()
        finish: str | None = None
        usage: dict[str, Any] = {}
        finished = False
        async for data in iter_sse_data(response.aiter_lines()):
            if finished:
                continue  # read on to the end of the body so httpx can reuse the connection
            if data.strip() == "[DONE]":
                finished = True
                continue
            event = json.loads(data)
            if event.get("error"):
                error = event["error"]
                text = error.get("message", error) if isinstance(error, dict) else error
                raise ModelStreamError(
                    f"{self._chat_url} reported an error in the middle of the answer: {text}",
                    model=model,
                    endpoint=self.endpoint,
                )
            usage = event.get("usage") or usage
            for choice in event.get("choices") or []:
                delta = choice.get("delta") or {}
                for fragment in delta.get("tool_calls") or []:
                    calls.add(fragment)
                thinking = delta.get("reasoning") or delta.get("reasoning_content") or ""
                content = delta.get("content") or ""
                finish = choice.get("finish_reason") or finish
                ready = calls.take() if choice.get("finish_reason") else []
                if content or thinking or ready:
                    yield ModelChunk(content=content, thinking=thinking, tool_calls=ready)
        if not finished:
            raise ModelStreamError(
                f"{self._chat_url} ended the answer from '{model}' without [DONE]; "
                "the connection or the server broke. Try again.",
                model=model,
                endpoint=self.endpoint,
            )
        yield ModelChunk(
            tool_calls=calls.take(),
            done=True,
            done_reason="stop" if finish in (None, "tool_calls") else finish,
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
        )

    async def list_models(self) -> list[str]:
        url = f"{self.endpoint}/v1/models"
        try:
            response = await self._http.get(url)
            if response.status_code >= 400:
                raise self._from_status(response, "")
            return [str(m["id"]) for m in response.json().get("data", [])]
        except ModelError:
            raise
        except Exception as exc:
            raise self._translate(exc, "", False, url) from exc

    async def show(self, model: str) -> dict[str, Any]:
        """Tool support is assumed; the window size is not knowable over /v1."""
        return {"capabilities": ["completion", "tools"], "context_length": None, "raw": {}}

    async def close(self) -> None:
        await self._http.aclose()

    # -- errors --------------------------------------------------------------

    def _from_status(self, response: httpx.Response, model: str) -> ModelError:
        status, url = response.status_code, str(response.request.url)
        try:
            error = response.json().get("error", response.text)
        except ValueError:
            error = response.text
        text = str(error.get("message", error) if isinstance(error, dict) else error).strip()
        where = {"model": model, "endpoint": self.endpoint}
        if status == 404:
            return ModelNotFoundError(
                f"Model '{model}' is not available at {url} (HTTP 404: {text}). "
                "Check the model name the server expects.",
                **where,
            )
        if status in (401, 403):
            return ModelAuthError(
                f"{url} refused the request (HTTP {status}: {text}). "
                "Check the API key configured for this endpoint.",
                **where,
            )
        if status == 429 or status >= 500:
            return ModelOverloadedError(
                f"{url} is busy or failing (HTTP {status}: {text}). Try again in a moment.",
                status_code=status,
                **where,
            )
        return ModelStreamError(f"{url} rejected the request (HTTP {status}): {text}", **where)

    def _translate(self, exc: Exception, model: str, output_began: bool, url: str) -> ModelError:
        where = {"model": model, "endpoint": self.endpoint}
        if isinstance(exc, httpx.ConnectTimeout | httpx.ConnectError | ConnectionError):
            return ModelUnavailableError(
                f"Cannot reach {url}. Check that the server runs and the base URL is right.",
                **where,
            )
        if isinstance(exc, httpx.TimeoutException):
            return ModelTimeoutError(
                f"{url} sent nothing for {self.read_timeout:g} s while answering with "
                f"'{model}'. Raise the request timeout if this model is slow.",
                **where,
            )
        if isinstance(exc, httpx.TransportError) and not output_began:
            return ModelUnavailableError(
                f"{url} dropped the connection before answering ({exc!r}).", **where
            )
        if isinstance(exc, httpx.TransportError):
            return ModelStreamError(
                f"The connection to {url} broke in the middle of the answer ({exc!r}). Try again.",
                **where,
            )
        if isinstance(exc, ValueError):
            return ModelStreamError(f"{url} sent a response that could not be read: {exc}", **where)
        return ModelError(f"Talking to {url} failed: {exc!r}", **where)
