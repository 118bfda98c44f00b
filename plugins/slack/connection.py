"""How Slack's pushes reach the Bolt app: Socket Mode (default) or HTTP (Events API).

Socket Mode uses Bolt's ``AsyncSocketModeHandler`` (the aiohttp client):
``apps.connections.open`` with the ``xapp-`` token on the configured Web API
base URL, a websocket to the URL it returns, and a fresh connection whenever
Slack sends ``disconnect`` or the pings stop. The first URL is fetched here,
before connecting, so a bad app token fails start-up with Slack's error
instead of the client's endless retry loop.

HTTP mode serves Bolt's aiohttp app on ``slack.http_port`` at
``/slack/events`` (events, slash commands and button clicks alike); Bolt
checks every request's signature with ``SLACK_SIGNING_SECRET`` and answers
Slack's URL verification.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from aiohttp import web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 30.0
PING_INTERVAL_S = 10.0
HTTP_PATH = "/slack/events"
HTTP_HOST = "0.0.0.0"  # Slack must reach it; put a TLS reverse proxy in front


class Connection(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    @property
    def connected(self) -> bool: ...


class SocketModeConnection:
    def __init__(self, app: AsyncApp, app_token: str, *, ping_interval: float = PING_INTERVAL_S):
        self.app = app
        self.app_token = app_token
        self.ping_interval = ping_interval
        self.handler: AsyncSocketModeHandler | None = None

    async def start(self) -> None:
        handler = AsyncSocketModeHandler(self.app, self.app_token, ping_interval=self.ping_interval)
        self.handler = handler
        client = handler.client
        client.wss_uri = await client.issue_new_wss_url()
        await asyncio.wait_for(handler.connect_async(), CONNECT_TIMEOUT_S)

    async def stop(self) -> None:
        handler, self.handler = self.handler, None
        if handler is None:
            return
        client = handler.client
        # Take no new envelopes while closing: acking one on a closing socket only
        # fails loudly, and Slack redelivers what was not acked.
        client.socket_mode_request_listeners.clear()
        await handler.close_async()
        # close() cancels the client's loops without waiting for them.
        tasks = [client.message_processor, client.current_session_monitor, client.message_receiver]
        await asyncio.gather(*[t for t in tasks if t is not None], return_exceptions=True)

    @property
    def connected(self) -> bool:
        if self.handler is None:
            return False
        client = self.handler.client
        session = client.current_session
        return not client.closed and not client.stale and session is not None and not session.closed

    @property
    def connection_id(self) -> str:
        """Changes whenever the client opens a new websocket."""
        if self.handler is None or self.handler.client.current_session is None:
            return ""
        return str(id(self.handler.client.current_session))


class HttpConnection:
    def __init__(self, app: AsyncApp, port: int, host: str = HTTP_HOST) -> None:
        self.app = app
        self.host = host
        self.requested_port = port
        self.port: int | None = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        runner = web.AppRunner(
            self.app.web_app(path=HTTP_PATH, port=self.requested_port),
            access_log=None,
            shutdown_timeout=2.0,
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.requested_port).start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        log.info("Slack HTTP mode: listening on %s:%d%s", self.host, self.port, HTTP_PATH)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    @property
    def connected(self) -> bool:
        return self._runner is not None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{HTTP_PATH}"
