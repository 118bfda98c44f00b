"""The model-client contract shared by every wire protocol.

Messages travel in Ollama's native shape (plain dicts) because that is the
primary protocol; other clients translate at their edge:

- ``{"role": "system"|"user"|"assistant"|"tool", "content": str}``
- assistant messages may carry ``"thinking": str`` and
  ``"tool_calls": [{"id": str, "function": {"name": str, "arguments": dict}}]``
- tool results carry ``"tool_name": str`` and ``"tool_call_id": str``

Errors form one tree rooted at :class:`ModelError`; every error carries a
``user_message`` fit to show in a chat thread or a terminal.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

Message = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool call requested by the model; ``arguments`` is always a dict."""

    id: str
    name: str
    arguments: dict[str, Any]

    def to_message(self) -> dict[str, Any]:
        return {"id": self.id, "function": {"name": self.name, "arguments": self.arguments}}


@dataclass(slots=True)
class ModelChunk:
    """One piece of a streamed answer.

    ``done`` is set on the last chunk only, which also carries the token
    counts and durations the server reported (``None`` when it reported none).
    """

    content: str = ""
    thinking: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    done: bool = False
    done_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_duration_ns: int | None = None


@dataclass(slots=True)
class ChatRequest:
    """What one model step sends.

    ``options`` maps to Ollama's ``options`` (``num_ctx``, ``temperature``, …);
    an OpenAI-compatible client keeps what it can express and drops the rest.
    """

    model: str
    messages: list[Message]
    tools: list[dict[str, Any]] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    keep_alive: str | int | None = None
    think: bool | str | None = None


class ModelError(Exception):
    """Base of every model-client failure.

    ``user_message`` says what happened and what to do, in words fit for a
    chat thread; ``model`` and ``endpoint`` name where it happened.
    """

    def __init__(self, user_message: str, *, model: str = "", endpoint: str = "") -> None:
        super().__init__(user_message)
        self.user_message = user_message
        self.model = model
        self.endpoint = endpoint


class ModelUnavailableError(ModelError):
    """The endpoint could not be reached (refused, DNS, reset before output)."""


class ModelNotFoundError(ModelError):
    """The endpoint answered that the model does not exist (HTTP 404)."""


class ModelAuthError(ModelError):
    """The endpoint refused the credentials (HTTP 401/403), e.g. cloud not signed in.

    ``signin_url`` is set when the server offered one.
    """

    def __init__(self, user_message: str, *, signin_url: str | None = None, **kw: str) -> None:
        super().__init__(user_message, **kw)
        self.signin_url = signin_url


class ModelOverloadedError(ModelError):
    """The endpoint is busy or failing (HTTP 429/5xx)."""

    def __init__(self, user_message: str, *, status_code: int = 503, **kw: str) -> None:
        super().__init__(user_message, **kw)
        self.status_code = status_code


class ModelTimeoutError(ModelError):
    """No answer (or no next chunk) within the configured timeout."""


class ModelStreamError(ModelError):
    """The server reported an error, or broke the stream, after output began,
    or sent a response the client cannot read (e.g. HTTP 400)."""


@runtime_checkable
class ModelClient(Protocol):
    """A connection to one model endpoint, reused for every call."""

    endpoint: str

    def stream_chat(self, request: ChatRequest) -> AsyncIterator[ModelChunk]:
        """Stream one chat step. Raises a :class:`ModelError` subclass on failure."""
        ...

    async def list_models(self) -> list[str]:
        """Names of the models the endpoint serves."""
        ...

    async def show(self, model: str) -> dict[str, Any]:
        """Model details: at least ``capabilities`` (list) and ``context_length`` (int|None)."""
        ...

    async def close(self) -> None:
        """Release the HTTP connection pool."""
        ...
