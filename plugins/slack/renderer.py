"""One turn's reply in a Slack thread: the streamed message, plus long output as a file.

The reply itself is :class:`bot.streaming.StreamingRenderer` over a
:class:`plugins.slack.transport.SlackTransport`: answer tokens, a compact line
per tool call, notices and the footer, edited in place at a steady pace. A
shell command whose output is too long to be useful inline (its summary is in
the tool line already) is also attached to the thread as a text file with
``files_upload_v2``, so the whole output is one click away without flooding
the conversation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from bot.events import AgentEvent, AgentEventKind
from bot.render import describe_tool_call
from bot.streaming import StreamingRenderer
from plugins.slack.transport import SlackTransport

log = logging.getLogger(__name__)

# Tools whose full output is worth attaching, and from what length.
ATTACHED_TOOLS = frozenset({"bash"})
ATTACH_OVER_CHARS = 2_000
UPLOAD_WAIT_S = 30.0

Uploader = Callable[[str, str, str], Awaitable[None]]  # (filename, title, content)


def tool_output(event: AgentEvent) -> str:
    result = event.data.get("result") or {}
    stdout = str(result.get("stdout") or "")
    stderr = str(result.get("stderr") or "")
    if stderr:
        return f"{stdout}\n--- stderr ---\n{stderr}" if stdout else stderr
    return stdout


class SlackReplyRenderer:
    """A :class:`bot.adapters.TurnRenderer` for Slack."""

    def __init__(
        self,
        transport: SlackTransport,
        *,
        interval: float,
        upload: Uploader | None = None,
    ) -> None:
        self.stream = StreamingRenderer(transport, interval=interval)
        self.upload = upload
        self._uploads: set[asyncio.Task[None]] = set()

    @property
    def message_ids(self) -> list[str]:
        return list(self.stream.message.ids)

    async def __call__(self, event: AgentEvent) -> None:
        await self.stream(event)
        if event.kind is AgentEventKind.TOOL_RESULT and self.upload is not None:
            name = str(event.data.get("name") or "")
            output = tool_output(event)
            if name in ATTACHED_TOOLS and len(output) > ATTACH_OVER_CHARS:
                title = describe_tool_call(name, event.data.get("arguments") or {})
                task = asyncio.create_task(
                    self._upload(f"{name}-output.txt", title, output), name="slack-upload"
                )
                self._uploads.add(task)
                task.add_done_callback(self._uploads.discard)

    async def _upload(self, filename: str, title: str, content: str) -> None:
        assert self.upload is not None
        try:
            await self.upload(filename, title, content)
        except Exception:
            log.exception("could not attach %s to the thread", filename)

    async def close(self) -> None:
        await self.stream.close()
        if not self._uploads:
            return
        _, late = await asyncio.wait(list(self._uploads), timeout=UPLOAD_WAIT_S)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
