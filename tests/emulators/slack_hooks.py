"""`response_url`s: the per-invocation webhooks Slack hands an app with a command or click.

An app answers a slash command or a button click later by POSTing JSON to the
`response_url` it was given.  The emulator records each POST and, for
`response_type: in_channel`, shows the message in the channel as Slack does.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.emulators.slack_store import SlackMessage


@dataclass(frozen=True)
class ResponseUrlPost:
    """A POST the app made to a slash command's or click's `response_url`."""

    hook_id: str
    channel: str
    body: dict[str, Any]
    time: float


class ResponseUrls:
    def __init__(self, post_in_channel: Callable[[str, dict[str, Any]], SlackMessage]) -> None:
        self.posts: list[ResponseUrlPost] = []
        self._channels: dict[str, str] = {}
        self._post_in_channel = post_in_channel
        self.on_post: list[Callable[[], None]] = []

    def issue(self, base_url: str, team_id: str, channel: str) -> str:
        hook_id = secrets.token_hex(6)
        self._channels[hook_id] = channel
        return f"{base_url}/commands/{team_id}/{hook_id}/{secrets.token_urlsafe(16)}"

    async def handle(self, request: web.Request) -> web.Response:
        hook_id = request.match_info["hook_id"]
        channel = self._channels.get(hook_id)
        if channel is None:
            return web.Response(status=404, text="invalid_token")
        body = await request.json()
        self.posts.append(ResponseUrlPost(hook_id, channel, body, time.monotonic()))
        if body.get("response_type") == "in_channel":
            self._post_in_channel(channel, body)
        for callback in self.on_post:
            callback()
        return web.Response(text="ok")
