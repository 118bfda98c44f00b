"""The browser view's HTTP side: the page, a small JSON API and the SSE streams.

Safety, in the order a request meets it:

* **Host check.** Bound to loopback without a token, only ``Host:
  localhost`` / ``127.0.0.1`` / ``[::1]`` is served, so a DNS-rebinding page
  (``evil.example`` resolving to 127.0.0.1) gets nothing.
* **Token.** With a token set (``THREADWRIGHT_WEB_TOKEN``; required when bound
  off loopback) every ``/api/`` request needs ``Authorization: Bearer
  <token>`` or the HttpOnly, SameSite=Strict cookie that ``POST /api/login``
  sets. The page asks for the token when the API answers 401.
* **CSRF.** Every POST must carry ``X-Threadwright: 1`` and ``Content-Type:
  application/json`` (neither can be sent cross-site without a CORS
  preflight, which this server never grants), and an ``Origin`` header, when
  present, must be this server's own.
* The page is served with a CSP that allows only its own inline script (by
  hash) and same-origin connections, and may not be framed (so the Allow
  button cannot be clickjacked).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot.events import ChatEventKind, ThreadKey
from bot.policy.approvals import answer_for
from plugins.web.adapter import PLATFORM, WEB_USER
from plugins.web.sse import EventLog, StreamClient, pump

if TYPE_CHECKING:
    from bot.agent import AgentSession
    from plugins.web.adapter import WebAdapter

log = logging.getLogger(__name__)

CSRF_HEADER = "X-Threadwright"
AUTH_COOKIE = "threadwright_auth"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class ApiError(web.HTTPException):
    """An API refusal with a JSON body: ``{"error": "..."}``."""

    def __init__(self, status: int, message: str) -> None:
        self.status_code = status
        super().__init__(text=json.dumps({"error": message}), content_type="application/json")


def _load_page() -> tuple[bytes, str]:
    html = resources.files("plugins.web").joinpath("page.html").read_text(encoding="utf-8")
    scripts = re.findall(r"<script>(.*?)</script>", html, re.DOTALL)
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in scripts
    )
    csp = (
        f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )
    return html.encode(), csp


class WebServer:
    def __init__(self, adapter: WebAdapter) -> None:
        self.adapter = adapter
        self.config = adapter.config
        self._runner: web.AppRunner | None = None
        self.port = self.config.web.port
        self._page, self._csp = _load_page()
        # Called with each chunk of frames as it goes to the socket (benchmarks, metrics);
        # asyncio's transport sends at once when nothing is queued before it.
        self.write_observer: Callable[[bytes], None] | None = None
        token = adapter.token
        self._cookie_value = (
            hmac.new(token.encode(), b"threadwright-web-login", hashlib.sha256).hexdigest()
            if token
            else None
        )

    # --- lifecycle ------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=1024 * 1024)
        app.router.add_get("/", self.page)
        app.router.add_post("/api/login", self.login)
        app.router.add_get("/api/sessions", self.list_sessions)
        app.router.add_post("/api/sessions", self.create_session)
        app.router.add_get("/api/sessions/{id}/events", self.events)
        app.router.add_post("/api/sessions/{id}/steer", self.steer)
        app.router.add_post("/api/sessions/{id}/stop", self.stop_session)
        app.router.add_post("/api/sessions/{id}/approval", self.approval)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.web.host, self.config.web.port)
        await site.start()
        for address in self._runner.addresses:
            if isinstance(address, tuple):
                self.port = int(address[1])
                break

    async def stop(self) -> None:
        self.adapter.hub.close_all()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    @property
    def url(self) -> str:
        host = self.config.web.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    # --- guard ----------------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        token = self.adapter.token
        if not token and not self._host_allowed(request):
            return _error(403, "this server answers only to localhost")
        if request.path.startswith("/api/"):
            if request.method == "POST":
                problem = self._csrf_problem(request)
                if problem:
                    return _error(403, problem)
            if token and request.path != "/api/login" and not self._authorized(request, token):
                return _error(401, "token required")
        return await handler(request)

    @staticmethod
    def _host_allowed(request: web.Request) -> bool:
        host = request.host
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return name.strip("[]") in LOOPBACK_NAMES

    @staticmethod
    def _csrf_problem(request: web.Request) -> str | None:
        if request.headers.get(CSRF_HEADER) != "1":
            return f"missing {CSRF_HEADER}: 1 header"
        if request.content_type != "application/json":
            return "Content-Type must be application/json"
        origin = request.headers.get("Origin")
        if origin is not None and origin not in {
            f"http://{request.host}",
            f"https://{request.host}",
        }:
            return "cross-origin request refused"
        return None

    def _authorized(self, request: web.Request, token: str) -> bool:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer ") and hmac.compare_digest(
            header[7:].strip().encode(), token.encode()
        ):
            return True
        cookie = request.cookies.get(AUTH_COOKIE)
        return bool(
            cookie
            and self._cookie_value
            and hmac.compare_digest(cookie.encode(), self._cookie_value.encode())
        )

    # --- handlers -------------------------------------------------------------------

    async def page(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self._page,
            content_type="text/html",
            charset="utf-8",
            headers={
                "Content-Security-Policy": self._csp,
                "X-Frame-Options": "DENY",
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
                "Cache-Control": "no-store",
            },
        )

    async def login(self, request: web.Request) -> web.Response:
        token = self.adapter.token
        body = await self._json(request)
        given = str(body.get("token", ""))
        if not token or self._cookie_value is None:
            return web.json_response({"ok": True, "required": False})
        if not hmac.compare_digest(given.encode(), token.encode()):
            return _error(401, "wrong token")
        response = web.json_response({"ok": True, "required": True})
        response.set_cookie(
            AUTH_COOKIE, self._cookie_value, httponly=True, samesite="Strict", path="/"
        )
        return response

    async def list_sessions(self, request: web.Request) -> web.Response:
        sessions = self.adapter.sessions
        assert sessions is not None
        items: dict[str, dict[str, Any]] = {}
        for record in await sessions.runtime.store.list_sessions(limit=50):
            platform = ThreadKey.parse(record.thread_key).platform
            items[record.id] = {
                "id": record.id,
                "platform": platform,
                "task": self.adapter.redactor(record.task)[:300],
                "status": record.status,
                "running": False,
                "read_only": platform != PLATFORM,
                "updated_at": record.updated_at,
            }
        for entry in self.adapter.hub.logs.values():
            if entry.meta:
                items[entry.session_id] = {**items.get(entry.session_id, {}), **entry.meta}
        for session in sessions.active_sessions():
            items[session.id] = {**self.adapter.describe(session), "running": True}
        ordered = sorted(
            items.values(), key=lambda i: float(i.get("updated_at") or 0), reverse=True
        )
        return web.json_response({"sessions": ordered, "auth": bool(self.adapter.token)})

    async def create_session(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        task = str(body.get("task", "")).strip()
        if not task:
            return _error(400, "task is empty")
        sessions = self.adapter.sessions
        assert sessions is not None
        thread = self.adapter.new_thread()
        event = self.adapter.message(thread, task)
        self.adapter.remember_typed(event.message_id, task)
        await sessions.handle(event)
        session = await sessions.get_session(thread)
        notices = self.adapter.take_orphan_notices(thread)
        if session is None:
            if notices:
                return web.json_response({"id": None, "notices": notices})
            return _error(503, "the session was not started (see the bot's log)")
        return web.json_response({"id": session.id, "running": session.running})

    async def events(self, request: web.Request) -> web.StreamResponse:
        entry = await self._log(request.match_info["id"])
        if entry is None:
            return _error(404, "no such session")
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache, no-transform",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        transport = request.transport

        def abort() -> None:
            if transport is not None:
                transport.abort()

        client = StreamClient(self.config.streaming.buffer_size, on_overflow=abort)
        last = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
        backlog, reset = entry.attach(client, last)
        try:
            why = await pump(
                self._writer(response),
                client,
                backlog,
                preamble=entry.reset_frame() if reset else b"",
                heartbeat=self.config.web.heartbeat_interval,
                write_timeout=self.config.streaming.disconnect_timeout,
                is_gone=lambda: transport is None or transport.is_closing(),
                backed_up=lambda: transport is None or transport.get_write_buffer_size() > 0,
            )
        finally:
            entry.detach(client)
        log.debug("stream of %s ended: %s", entry.session_id, why)
        if why != "closed":
            abort()  # a stalled or gone peer: finishing the response would wait on it
        return response

    def _writer(self, response: web.StreamResponse) -> Callable[[bytes], Awaitable[None]]:
        async def write(data: bytes) -> None:
            if self.write_observer is not None:
                self.write_observer(data)
            await response.write(data)

        return write

    async def steer(self, request: web.Request) -> web.Response:
        session = await self._writable(request)
        text = str((await self._json(request)).get("text", "")).strip()
        if not text:
            return _error(400, "text is empty")
        sessions = self.adapter.sessions
        assert sessions is not None
        was_running = session.running
        event = self.adapter.message(session.thread, text)
        self.adapter.remember_typed(event.message_id, text)
        await sessions.handle(event)
        return web.json_response(
            {"message_id": event.message_id, "as": "steering" if was_running else "turn"}
        )

    async def stop_session(self, request: web.Request) -> web.Response:
        session = await self._writable(request)
        sessions = self.adapter.sessions
        assert sessions is not None
        was_running = session.running
        event = self.adapter.message(
            session.thread, "stop", kind=ChatEventKind.COMMAND, command="stop"
        )
        await sessions.handle(event)
        return web.json_response({"stopping": was_running})

    async def approval(self, request: web.Request) -> web.Response:
        session = await self._writable(request)
        body = await self._json(request)
        message_id = str(body.get("message_id", ""))
        choice = str(body.get("choice", ""))
        parsed = answer_for(choice)
        if parsed is None:
            return _error(400, "choice must be approve_once, approve_thread or deny")
        sessions = self.adapter.sessions
        assert sessions is not None
        thread = str(session.thread)
        if not sessions.approvals.is_pending(thread, message_id):
            return _error(409, "that question is no longer waiting for an answer")
        event = self.adapter.message(
            session.thread, "", kind=ChatEventKind.ACTION, target=message_id, action=choice
        )
        await sessions.handle(event)
        accepted = not sessions.approvals.is_pending(thread, message_id)
        if accepted:
            approved = parsed[0]
            entry = self.adapter.log_for(session)
            self.adapter.append_note(
                entry,
                "approval",
                f"{'allowed' if approved else 'denied'} by {WEB_USER}",
                message_id=message_id,
                state="allowed" if approved else "denied",
                choice=choice,
            )
        return web.json_response({"accepted": accepted})

    # --- helpers --------------------------------------------------------------------

    @staticmethod
    async def _json(request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise ApiError(400, "body must be JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "body must be a JSON object")
        return body

    async def _session(self, session_id: str) -> AgentSession | None:
        sessions = self.adapter.sessions
        if sessions is None or not re.fullmatch(r"[0-9A-Za-z_-]{1,64}", session_id):
            return None
        for active in sessions.active_sessions():
            if active.id == session_id:
                return active
        return await sessions.load_session(session_id)

    async def _log(self, session_id: str) -> EventLog | None:
        existing = self.adapter.hub.get(session_id)
        if existing is not None:
            return existing
        session = await self._session(session_id)
        return None if session is None else self.adapter.log_for(session)

    async def _writable(self, request: web.Request) -> AgentSession:
        session = await self._session(request.match_info["id"])
        if session is None:
            raise ApiError(404, "no such session")
        if session.thread.platform != PLATFORM:
            raise ApiError(403, f"read-only: this session belongs to {session.thread.platform}")
        return session
