"""The Web API's HTTP surface: argument decoding, tokens, rate limits, call log.

slack_sdk sends one method as a JSON body, another as a form body, a third as
GET query parameters, and `files.*` as POST query parameters; Slack reads its
arguments from all of these, so the emulator merges query, form and JSON into one
dict.  Business errors are HTTP 200 `{"ok": false, "error": ...}`; rate limits are
HTTP 429 with `Retry-After`.  Method handlers live in other modules and raise
`ApiFailure` for Slack's error codes.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.web_request import FileField

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]

# Arguments slack_sdk serialises to a JSON string when it cannot send a JSON body.
JSON_ENCODED_ARGS = ("blocks", "attachments", "files", "chunks", "metadata", "loading_messages")


class ApiFailure(Exception):
    """A Slack business error, answered as HTTP 200 `{"ok": false, "error": error}`."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


@dataclass(frozen=True)
class ApiCall:
    """One Web API request as the emulator saw it.

    `args` excludes the token; `encoding` says how the client sent them
    ("json", "form", "query" or "multipart"); `error` is Slack's error code, if any.
    """

    method: str
    args: dict[str, Any]
    time: float
    status: int
    error: str | None = None
    encoding: str = "query"
    http_method: str = "POST"


@dataclass(frozen=True)
class MethodSpec:
    handler: Handler
    token_kind: str  # "bot" or "app"


class TokenBucket:
    def __init__(self, per_second: float, burst: int) -> None:
        self.per_second = per_second
        self.burst = burst
        self.tokens = float(burst)
        self.updated = time.monotonic()

    def take(self) -> int | None:
        """None when a token was available, else the seconds to wait (Retry-After)."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.per_second)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return None
        return max(1, math.ceil((1 - self.tokens) / self.per_second))


class RateLimiter:
    """Injected 429s: a fixed number of refusals, or a steady per-method token bucket."""

    def __init__(self) -> None:
        self.forced: dict[str, tuple[int, int]] = {}
        self.buckets: dict[str, TokenBucket] = {}
        self.limited_count: Counter[str] = Counter()

    def check(self, method: str) -> int | None:
        remaining, retry_after = self.forced.get(method, (0, 0))
        if remaining > 0:
            self.forced[method] = (remaining - 1, retry_after)
            self.limited_count[method] += 1
            return retry_after
        bucket = self.buckets.get(method)
        wait = bucket.take() if bucket is not None else None
        if wait is not None:
            self.limited_count[method] += 1
        return wait


async def read_args(request: web.Request) -> tuple[dict[str, Any], str]:
    """All arguments of a request, and how they were encoded."""
    args: dict[str, Any] = dict(request.query)
    encoding = "query"
    if request.method == "POST" and request.can_read_body:
        content_type = request.content_type
        if content_type == "application/json":
            body = await request.json()
            if isinstance(body, dict):
                args.update(body)
            encoding = "json"
        elif content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            for key, field in form.items():
                if isinstance(field, FileField):
                    args[key] = field.file.read()
                else:
                    args[key] = field if isinstance(field, str) else bytes(field)
            if form:
                encoding = "form" if content_type.endswith("urlencoded") else "multipart"
    for key in JSON_ENCODED_ARGS:
        encoded = args.get(key)
        if isinstance(encoded, str) and encoded[:1] in ("[", "{"):
            try:
                args[key] = json.loads(encoded)
            except json.JSONDecodeError as error:
                raise ApiFailure(f"invalid_{key}") from error
    return args, encoding


def bearer_token(request: web.Request, args: dict[str, Any]) -> str | None:
    header = request.headers.get("Authorization", "")
    token = args.pop("token", None)
    if header.startswith("Bearer "):
        return header.removeprefix("Bearer ").strip()
    return token if isinstance(token, str) else None


class WebApi:
    """Routes `/api/{method}` to handlers and records every call."""

    def __init__(self, *, bot_token: str, app_token: str, on_call: Callable[[], None]) -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        self.methods: dict[str, MethodSpec] = {}
        self.calls: list[ApiCall] = []
        self.limiter = RateLimiter()
        self._on_call = on_call

    def register(self, method: str, handler: Handler, token_kind: str = "bot") -> None:
        self.methods[method] = MethodSpec(handler, token_kind)

    def _record(
        self, method: str, args: dict[str, Any], status: int, error: str | None, **kw: Any
    ) -> None:
        self.calls.append(ApiCall(method, args, time.monotonic(), status, error, **kw))
        self._on_call()

    def _check_token(self, token: str | None, token_kind: str) -> None:
        if not token:
            raise ApiFailure("not_authed")
        expected = self.app_token if token_kind == "app" else self.bot_token
        if token == expected:
            return
        if token in (self.app_token, self.bot_token):
            raise ApiFailure("not_allowed_token_type")
        raise ApiFailure("invalid_auth")

    async def handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args: dict[str, Any] = {}
        encoding = "query"
        details = {"http_method": request.method}
        try:
            args, encoding = await read_args(request)
            token = bearer_token(request, args)
            spec = self.methods.get(method)
            if spec is None:
                raise ApiFailure("unknown_method", req_method=method)
            self._check_token(token, spec.token_kind)
            retry_after = self.limiter.check(method)
            if retry_after is not None:
                self._record(method, args, 429, "ratelimited", encoding=encoding, **details)
                return web.json_response(
                    {"ok": False, "error": "ratelimited"},
                    status=429,
                    headers={"Retry-After": str(retry_after)},
                )
            body = await spec.handler(args)
        except ApiFailure as failure:
            self._record(method, args, 200, failure.error, encoding=encoding, **details)
            return web.json_response({"ok": False, "error": failure.error, **failure.extra})
        self._record(method, args, 200, None, encoding=encoding, **details)
        return web.json_response({"ok": True, **body})
