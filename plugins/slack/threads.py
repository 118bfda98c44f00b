"""Which thread a Slack message belongs to, and how a ThreadKey maps to a channel.

A Slack thread is named by its root's ``ts``. Message events carry
``thread_ts``, but a ``reaction_added`` only names the message it is on, so
the adapter remembers the thread of every message it posted or saw (the bot
knows where its own messages went) and asks ``conversations.replies`` for
the rest. The memory is bounded: old entries fall out and are looked up again.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.events import ThreadKey

log = logging.getLogger(__name__)

PLATFORM = "slack"
REMEMBERED_MESSAGES = 10_000


def thread_key(team: str, channel: str, thread_ts: str) -> ThreadKey:
    return ThreadKey(PLATFORM, f"{team}/{channel}", thread_ts)


def channel_of(thread: ThreadKey) -> str:
    """The channel id in a Slack ThreadKey's ``team/channel`` room."""
    return thread.room.rsplit("/", 1)[-1]


def team_of(thread: ThreadKey) -> str:
    return thread.room.split("/", 1)[0] if "/" in thread.room else ""


class ThreadIndex:
    """(channel, ts) → root ts of the thread the message is in."""

    def __init__(self, client: AsyncWebClient, capacity: int = REMEMBERED_MESSAGES) -> None:
        self.client = client
        self.capacity = capacity
        self._roots: OrderedDict[tuple[str, str], str] = OrderedDict()

    def remember(self, channel: str, ts: str, thread_ts: str | None) -> None:
        key = (channel, ts)
        self._roots[key] = thread_ts or ts
        self._roots.move_to_end(key)
        while len(self._roots) > self.capacity:
            self._roots.popitem(last=False)

    def known(self, channel: str, ts: str) -> str | None:
        return self._roots.get((channel, ts))

    async def root_of(self, channel: str, ts: str) -> str | None:
        """The thread's root ts, asking Slack when the message is not remembered."""
        root = self.known(channel, ts)
        if root is not None:
            return root
        try:
            response = await self.client.conversations_replies(
                channel=channel, ts=ts, limit=1, inclusive=True
            )
        except SlackApiError as error:
            log.info("cannot find the thread of %s in %s: %s", ts, channel, error.response)
            return None
        messages = response.get("messages") or []
        if not messages:
            return None
        first = messages[0]
        root = str(first.get("thread_ts") or first.get("ts") or ts)
        self.remember(channel, ts, root)
        return root
