"""MatrixTransport: how one streamed reply is posted and edited in its Matrix thread.

:class:`bot.streaming.StreamingMessage` decides *when* to send (coalescing,
pacing, splitting long answers into several messages); this class decides
*what*: each message is an ``m.thread`` reply under the thread root, and each
update an ``m.replace`` edit carrying the whole new text, as plain Markdown in
``body`` and HTML in ``formatted_body``. A homeserver rate limit comes back as
:class:`bot.streaming.RateLimited` with the server's ``retry_after_ms``.
"""

from __future__ import annotations

from collections.abc import Callable

from plugins.matrix import content
from plugins.matrix.sender import MatrixSender
from plugins.matrix.threads import ThreadIndex

# A Matrix event may not exceed 64 KiB with its envelope; an edit carries the
# text twice (fallback body and m.new_content) plus its HTML. content.fit_to_size
# is the safety net for text that is mostly non-ASCII.
MAX_MESSAGE_CHARS = 16_000


class MatrixTransport:
    """A :class:`bot.streaming.MessageTransport` for one thread of one room."""

    max_chars = MAX_MESSAGE_CHARS

    def __init__(
        self,
        sender: MatrixSender,
        threads: ThreadIndex,
        room_id: str,
        root: str,
        *,
        encrypted: Callable[[], bool],
    ) -> None:
        self.sender = sender
        self.threads = threads
        self.room_id = room_id
        self.root = root
        self.encrypted = encrypted

    def _limit(self) -> int:
        return content.MAX_ENCRYPTED_EVENT_BYTES if self.encrypted() else content.MAX_EVENT_BYTES

    async def post(self, text: str) -> str:
        reply_to = self.threads.latest(self.room_id, self.root)
        event = content.in_thread(content.message(text), self.root, reply_to)
        event_id = await self.sender.send(
            self.room_id, "m.room.message", content.fit_to_size(event, self._limit()), wait=False
        )
        self.threads.record(self.room_id, event_id, self.root)
        return event_id

    async def edit(self, message_id: str, text: str) -> None:
        event = content.edit(message_id, content.message(text))
        await self.sender.send(
            self.room_id, "m.room.message", content.fit_to_size(event, self._limit()), wait=False
        )
