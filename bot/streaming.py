"""StreamingMessage: one chat reply that grows as the agent works, with paced edits.

Platform-neutral. An adapter supplies a :class:`MessageTransport` (post a
message, edit a message, its size limit, its Markdown dialect); this module
decides *when* to call it: the first visible text goes out at once, later
changes are coalesced into at most one edit per ``interval``; a rate limit
(:class:`RateLimited`) pauses for the server's ``retry_after`` and slows the
pace, never dropping or reordering text, because every edit sends the whole
current text of that message. Text beyond ``transport.max_chars`` continues in
further messages, split at paragraph or line boundaries with code fences
closed and reopened. :meth:`StreamingMessage.finish` returns once every
message shows its final text.

:class:`ReplyDocument` turns a session's events into that text (answer
tokens, compact tool lines, notices, a footer); :class:`StreamingRenderer`
joins the two as a :class:`bot.adapters.TurnRenderer`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from bot.events import AgentEvent, AgentEventKind
from bot.policy.redaction import redact
from bot.render import describe_tool_call, footer

log = logging.getLogger(__name__)

# Give up on a final render after this long of rate limits or errors: the
# bot must never hang on a homeserver that keeps refusing.
FINISH_DEADLINE_S = 180.0
MAX_INTERVAL_S = 30.0
RECOVERY_FACTOR = 0.85
CURSOR = " ▍"


class RateLimited(Exception):
    """The platform refused a call for now; try again after ``retry_after`` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limited; retry after {retry_after:.2f}s")
        self.retry_after = max(0.0, retry_after)


class ChunkTooLong(Exception):
    """The platform's form of a chunk did not fit; the transport lowered ``max_chars``.

    Raised by a transport whose limit applies to rendered text (escaping can make
    it longer than the Markdown); the message is split again at the new size.
    """


class MessageTransport(Protocol):
    """How one platform posts and edits the messages of one reply (in one thread)."""

    max_chars: int

    async def post(self, text: str) -> str:
        """Post a new message with ``text`` (Markdown); return its id. May raise RateLimited."""
        ...

    async def edit(self, message_id: str, text: str) -> None:
        """Replace the text of a message this reply posted. May raise RateLimited."""
        ...


def split_text(text: str, limit: int) -> list[str]:
    """Split Markdown into chunks of at most ``limit`` characters.

    Prefers a paragraph break, then a line break, in the second half of the
    window; a code fence open at a cut is closed there and reopened (with its
    language) in the next chunk, so every chunk renders on its own.
    """
    if limit < 40:
        raise ValueError("limit too small to split Markdown sensibly")
    chunks: list[str] = []
    rest = text
    reopen = ""
    budget = limit - 8  # room for a closing fence
    while True:
        candidate = reopen + rest
        if len(candidate) <= limit:
            chunks.append(candidate)
            return chunks
        window = candidate[:budget]
        cut = -1
        for sep in ("\n\n", "\n"):
            pos = window.rfind(sep)
            if pos > budget // 2:
                cut = pos + len(sep)
                break
        if cut <= len(reopen):
            cut = budget
        head = candidate[:cut]
        fence = _open_fence(head)
        if fence is not None:
            head = head.rstrip("\n") + "\n```"
            reopen = f"```{fence}\n"
        else:
            reopen = ""
        chunks.append(head)
        rest = candidate[cut:]
        if not rest:
            return chunks


def _open_fence(text: str) -> str | None:
    """The language of a code fence left open at the end of ``text``, else None."""
    language: str | None = None
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped.startswith("```"):
            language = None if language is not None else stripped[3:].strip()
    return language


@dataclass(slots=True)
class StreamStats:
    posts: int = 0
    edits: int = 0
    rate_limited: int = 0
    errors: int = 0
    first_visible_at: float | None = None


class StreamingMessage:
    def __init__(
        self,
        transport: MessageTransport,
        *,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.transport = transport
        self.interval = interval
        self.base_interval = interval
        self.clock = clock
        self.ids: list[str] = []
        self.stats = StreamStats()
        self._sent: list[str] = []
        self._text = ""
        self._next_allowed = 0.0
        self._dirty = asyncio.Event()
        self._synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def text(self) -> str:
        return self._text

    def update(self, text: str) -> None:
        """Set the whole desired text; it is shown at the next allowed edit."""
        if text == self._text:
            return
        self._text = text
        self._synced.clear()
        self._dirty.set()
        if self._task is None:
            self._task = asyncio.create_task(self._pump(), name="streaming-message")

    async def finish(self, text: str | None = None) -> bool:
        """Render the final text and wait until it is shown. False if it could not be."""
        if text is not None:
            self.update(text)
        if self._task is None:
            return True
        self._dirty.set()
        try:
            await asyncio.wait_for(self._synced.wait(), FINISH_DEADLINE_S)
        except TimeoutError:
            log.error("gave up rendering the final reply after %.0fs", FINISH_DEADLINE_S)
            return False
        finally:
            await self.aclose()
        return True

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _pump(self) -> None:
        while True:
            await self._dirty.wait()
            delay = self._next_allowed - self.clock()
            if delay > 0:
                # Coalesce: everything that arrives while we wait goes in one edit.
                await asyncio.sleep(delay)
            self._dirty.clear()
            target = self._text
            if await self._sync(target):
                self._next_allowed = self.clock() + self.interval
                # Ease back toward the configured pace after a rate limit, slowly,
                # so a server that just refused us is not hit at full speed again.
                self.interval = max(self.base_interval, self.interval * RECOVERY_FACTOR)
                if self._text == target:
                    self._synced.set()
            else:
                self._dirty.set()

    async def _sync(self, text: str) -> bool:
        chunks = split_text(text, self.transport.max_chars) if text else []
        try:
            for i, chunk in enumerate(chunks):
                if i < len(self.ids):
                    if self._sent[i] != chunk:
                        await self.transport.edit(self.ids[i], chunk)
                        self._sent[i] = chunk
                        self.stats.edits += 1
                else:
                    message_id = await self.transport.post(chunk)
                    self.ids.append(message_id)
                    self._sent.append(chunk)
                    self.stats.posts += 1
                    if self.stats.first_visible_at is None:
                        self.stats.first_visible_at = self.clock()
        except RateLimited as exc:
            self.stats.rate_limited += 1
            self.interval = min(MAX_INTERVAL_S, max(self.interval * 2, exc.retry_after))
            self._next_allowed = self.clock() + exc.retry_after
            return False
        except ChunkTooLong:
            return False
        except asyncio.CancelledError:
            raise
        except Exception:
            self.stats.errors += 1
            log.exception("a chat update failed; retrying with the next change")
            self._next_allowed = self.clock() + self.interval
            return False
        return True


@dataclass(slots=True)
class _ToolLine:
    call_id: str
    text: str
    result: str | None = None
    ok: bool | None = None


class _Notice(str):
    """A notice line in the reply: never extended by answer tokens."""

    __slots__ = ()


@dataclass(slots=True)
class ReplyDocument:
    """The Markdown text of one turn's reply, built from its events."""

    parts: list[str | _ToolLine] = field(default_factory=list)
    footer: str = ""
    finished: bool = False
    extra_footer: list[str] = field(default_factory=list)
    # Where the current model step's output starts, and which step that is: a
    # step retried on the fallback model replaces what the failed attempt wrote.
    _step_start: int = 0
    _step: object = None

    def apply(self, event: AgentEvent) -> bool:
        """Fold one event in; True when the visible text changed."""
        kind = event.kind
        if kind is AgentEventKind.STEP:
            step = event.data.get("step")
            retried = step is not None and step == self._step
            if retried and len(self.parts) > self._step_start:
                # Keep the notices (they say why the step is retried), drop the rest.
                kept = [p for p in self.parts[self._step_start :] if isinstance(p, _Notice)]
                self.parts[self._step_start :] = kept
                self._step_start = len(self.parts)
                return True
            self._step, self._step_start = step, len(self.parts)
            return False
        if kind is AgentEventKind.TOKEN:
            if self.parts and type(self.parts[-1]) is str:  # answer text, not a notice
                self.parts[-1] += event.text
            else:
                self.parts.append(event.text)
            return bool(event.text)
        if kind is AgentEventKind.TOOL_CALL:
            args = event.data.get("arguments") or {}
            name = str(event.data.get("name") or event.text)
            self.parts.append(
                _ToolLine(str(event.data.get("id", "")), describe_tool_call(name, args))
            )
            return True
        if kind is AgentEventKind.TOOL_RESULT:
            call_id = str(event.data.get("id", ""))
            ok = bool((event.data.get("result") or {}).get("ok"))
            for part in reversed(self.parts):
                if isinstance(part, _ToolLine) and part.call_id == call_id and part.result is None:
                    part.result, part.ok = event.text, ok
                    return True
            return False
        if kind is AgentEventKind.STEERING:
            author = event.data.get("author", "someone")
            self.parts.append(f"\n↪ _{author}: {event.text}_\n")
            return True
        if kind is AgentEventKind.NOTICE:
            self.parts.append(_Notice(f"\n_{event.text}_\n"))
            return True
        if kind is AgentEventKind.ERROR and not event.data.get("recoverable"):
            self.parts.append(f"\n⚠️ {event.text}\n")
            return True
        if kind is AgentEventKind.DONE:
            self.finished = True
            extra = [*self.extra_footer, *(event.data.get("footer") or [])]
            self.footer = footer(event.data.get("stats") or {}, extra=extra)
            return True
        return False

    def render(self) -> str:
        """The reply's Markdown, secrets redacted (whatever the model wrote)."""
        return redact(self._render())

    def _render(self) -> str:
        lines: list[str] = []
        for part in self.parts:
            if isinstance(part, _ToolLine):
                mark = "⚙️" if part.ok is None else ("✅" if part.ok else "❌")
                line = f"{mark} `{part.text}`"
                if part.result is not None:
                    line += f" → {part.result}"
                if lines and not lines[-1].endswith("\n"):
                    lines.append("\n")
                lines.append(line + "\n")
            else:
                if lines and lines[-1].endswith("\n") and part.startswith("\n"):
                    part = part[1:]
                lines.append(part)
        body = "".join(lines).strip()
        if self.finished:
            if self.footer:
                body = f"{body}\n\n— _{self.footer}_" if body else f"— _{self.footer}_"
            return body
        return body + CURSOR if body else ""


class StreamingRenderer:
    """A :class:`bot.adapters.TurnRenderer` that streams a ReplyDocument into one reply."""

    def __init__(self, transport: MessageTransport, *, interval: float = 1.0) -> None:
        self.document = ReplyDocument()
        self.message = StreamingMessage(transport, interval=interval)

    async def __call__(self, event: AgentEvent) -> None:
        if self.document.apply(event):
            self.message.update(self.document.render())

    async def close(self) -> None:
        self.document.finished = True
        await self.message.finish(self.document.render())
