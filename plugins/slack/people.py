"""Display names of Slack users, so replies say "Stopped by alice", not "Stopped by U0123".

Looked up once per user with ``users.info`` and cached; a failed lookup (no
``users:read`` scope, an unknown user) falls back to the id and is not retried
for a while, so a missing scope costs one call per user, not one per message.
"""

from __future__ import annotations

import asyncio
import logging
import time

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger(__name__)

RETRY_FAILED_AFTER_S = 600.0
MAX_CACHED = 5_000


class UserNames:
    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client
        self._names: dict[str, tuple[str, float]] = {}  # user -> (name, expires at)
        self._pending: dict[str, asyncio.Future[str]] = {}

    def remember(self, user: str, name: str) -> None:
        if user and name:
            self._names[user] = (name, float("inf"))

    async def name_of(self, user: str) -> str:
        cached = self._names.get(user)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        # A mention arrives twice at once (app_mention and message): one lookup serves both.
        pending = self._pending.get(user)
        if pending is None:
            pending = asyncio.ensure_future(self._look_up(user))
            self._pending[user] = pending
            pending.add_done_callback(lambda _: self._pending.pop(user, None))
        return await asyncio.shield(pending)

    async def _look_up(self, user: str) -> str:
        name = user
        expires = time.monotonic() + RETRY_FAILED_AFTER_S
        try:
            response = await self.client.users_info(user=user)
            info = response.get("user") or {}
            profile = info.get("profile") or {}
            name = str(
                profile.get("display_name") or info.get("name") or info.get("real_name") or user
            )
            expires = float("inf")
        except SlackApiError as error:
            log.debug("users.info for %s failed: %s", user, error.response.get("error"))
        except Exception as error:  # a name is a nicety: never lose the message over it
            log.debug("users.info for %s failed: %r", user, error)
        if len(self._names) >= MAX_CACHED:
            self._names.clear()
        self._names[user] = (name, expires)
        return name
