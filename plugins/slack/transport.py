"""SlackTransport: how one streamed reply posts and edits its messages in a thread.

:class:`bot.streaming.StreamingMessage` decides *when* to call it; this module
says *how* on Slack: ``chat.postMessage`` into the thread, then ``chat.update``
of the same ``ts``, always with the whole text, converted to mrkdwn. An HTTP
429 becomes :class:`bot.streaming.RateLimited` carrying ``Retry-After``, so
the streamer pauses and slows down instead of losing text.

``max_chars`` budgets Markdown characters (the streamer splits the reply into
continuation messages at that size), while Slack's ~4,000 limit applies to the
rendered mrkdwn. Escaping can make the rendered text longer (``<`` becomes
``&lt;``), so when a chunk does not fit, the transport lowers its budget and
refuses that chunk (:class:`bot.streaming.ChunkTooLong`); the streamer splits
again at the new size.

Native streaming (``chat.startStream``/``appendStream``) is deliberately not
used: a reply's text is re-rendered as tools finish (a tool line gains its
result, the cursor goes), which an append-only stream cannot express, and
``chat.update`` works in every workspace.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.streaming import ChunkTooLong, RateLimited
from plugins.slack.formatting import markdown_to_mrkdwn

log = logging.getLogger(__name__)

# Slack rejects `text` near 4,000 characters (msg_too_long); keep a margin.
SLACK_TEXT_LIMIT = 3900
DEFAULT_MAX_CHARS = 3500
# Escaping grows text at most fivefold (`&` → `&amp;`): this budget always fits.
MIN_MAX_CHARS = SLACK_TEXT_LIMIT // 5 - 10
DEFAULT_RETRY_AFTER_S = 1.0


def rate_limit_of(error: SlackApiError) -> RateLimited | None:
    """The RateLimited a 429 answer means, else None."""
    response = error.response
    if getattr(response, "status_code", None) != 429:
        return None
    headers = getattr(response, "headers", None) or {}
    raw = headers.get("Retry-After") or headers.get("retry-after")
    try:
        retry_after = float(raw) if raw is not None else DEFAULT_RETRY_AFTER_S
    except (TypeError, ValueError):
        retry_after = DEFAULT_RETRY_AFTER_S
    return RateLimited(retry_after)


class SlackTransport:
    """A :class:`bot.streaming.MessageTransport` for one thread of one channel."""

    def __init__(
        self,
        client: AsyncWebClient,
        channel: str,
        thread_ts: str,
        *,
        max_chars: int = DEFAULT_MAX_CHARS,
        render: Callable[[str], str] = markdown_to_mrkdwn,
        on_posted: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        self.channel = channel
        self.thread_ts = thread_ts
        self.max_chars = max_chars
        self.render = render
        self.on_posted = on_posted

    async def post(self, text: str) -> str:
        rendered = self._fit(text)
        response = await self._call(
            self.client.chat_postMessage,
            channel=self.channel,
            thread_ts=self.thread_ts,
            text=rendered,
            unfurl_links=False,
            unfurl_media=False,
        )
        ts = str(response["ts"])
        if self.on_posted is not None:
            self.on_posted(ts)
        return ts

    async def edit(self, message_id: str, text: str) -> None:
        rendered = self._fit(text)
        await self._call(
            self.client.chat_update, channel=self.channel, ts=message_id, text=rendered
        )

    def _fit(self, text: str) -> str:
        rendered = self.render(text)
        if len(rendered) <= SLACK_TEXT_LIMIT:
            return rendered
        if self.max_chars > MIN_MAX_CHARS:
            self._shrink(len(rendered))
        # Unreachable with Slack's escaping (at most 5x) at the minimum budget; a
        # custom renderer must still never make the streamer loop.
        log.warning("a Slack message is too long even when split small; it is cut")
        return rendered[: SLACK_TEXT_LIMIT - 1] + "…"

    def _shrink(self, rendered_length: int) -> None:
        before = self.max_chars
        ratio = SLACK_TEXT_LIMIT / max(rendered_length, 1)
        self.max_chars = max(MIN_MAX_CHARS, min(before - 100, int(before * ratio * 0.9)))
        log.info(
            "a %d-character Slack message did not fit; splitting at %d instead of %d",
            rendered_length,
            self.max_chars,
            before,
        )
        raise ChunkTooLong(f"rendered text is {rendered_length} characters")

    async def _call(self, method: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return await method(**kwargs)
        except SlackApiError as error:
            limited = rate_limit_of(error)
            if limited is not None:
                raise limited from None
            if _error_code(error) == "msg_too_long" and self.max_chars > MIN_MAX_CHARS:
                self._shrink(len(str(kwargs.get("text", ""))) + 500)
            raise


def _error_code(error: SlackApiError) -> str:
    try:
        return str(error.response.get("error", ""))
    except Exception:
        return ""
