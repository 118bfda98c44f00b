"""Matrix timeline events → :class:`bot.events.ChatEvent`.

Only two kinds of input reach the core: text messages and reactions.
Everything else is dropped here: edits (``m.replace``, which nio delivers as
ordinary messages whose body starts with ``* ``), redactions and redacted
events, notices (``m.notice`` is how bots talk, so other bots are never taken
for users), media, state. The caller drops the bot's own events and events
from before it started.

A message's thread is its ``m.thread`` root; a message outside a thread is
the root of the thread the bot will answer in. The bot's address (the
leading name) is stripped from the text the core sees. A message outside a
thread that starts with a known command (``!refactor …``, ``/refactor …``,
``!help``) is addressed to the bot even without a mention.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from bot.events import ChatEvent, ChatEventKind, ThreadKey
from plugins.matrix.mentions import (
    BotIdentity,
    mentions_in_metadata,
    strip_leading_address,
    strip_reply_fallback,
)
from plugins.matrix.reactions import reaction_name
from plugins.matrix.threads import ThreadIndex

PLATFORM = "matrix"
TEXT_MSGTYPES = frozenset({"m.text"})

ThreadResolver = Callable[[str, str], Awaitable[str | None]]


def relation_of(content: Mapping[str, Any]) -> Mapping[str, Any]:
    relates_to = content.get("m.relates_to")
    return relates_to if isinstance(relates_to, Mapping) else {}


def is_edit(content: Mapping[str, Any]) -> bool:
    return relation_of(content).get("rel_type") == "m.replace" or "m.new_content" in content


def thread_root(event_id: str, content: Mapping[str, Any]) -> str:
    """The root of the thread an event belongs to (itself when it is in none)."""
    relation = relation_of(content)
    root = relation.get("event_id")
    if relation.get("rel_type") == "m.thread" and isinstance(root, str) and root:
        return root
    return event_id


class EventTranslator:
    def __init__(
        self,
        identity: BotIdentity,
        threads: ThreadIndex,
        *,
        is_command: Callable[[str], bool],
        resolve_thread: ThreadResolver,
    ) -> None:
        self.identity = identity
        self.threads = threads
        self.is_command = is_command
        self.resolve_thread = resolve_thread

    async def translate(
        self, room_id: str, source: Mapping[str, Any], sender_name: str | None = None
    ) -> ChatEvent | None:
        event_id = source.get("event_id")
        sender = source.get("sender")
        content = source.get("content")
        if not isinstance(event_id, str) or not isinstance(sender, str):
            return None
        if not isinstance(content, Mapping) or not content:
            return None  # redacted events keep no content
        unsigned = source.get("unsigned")
        if isinstance(unsigned, Mapping) and "redacted_because" in unsigned:
            return None
        kind = source.get("type")
        if kind == "m.room.message":
            return self._message(room_id, event_id, sender, content, sender_name, source)
        if kind == "m.reaction":
            return await self._reaction(room_id, event_id, sender, content, sender_name, source)
        return None

    def _message(
        self,
        room_id: str,
        event_id: str,
        sender: str,
        content: Mapping[str, Any],
        sender_name: str | None,
        source: Mapping[str, Any],
    ) -> ChatEvent | None:
        if content.get("msgtype") not in TEXT_MSGTYPES or is_edit(content):
            return None
        body = content.get("body")
        if not isinstance(body, str):
            return None
        root = thread_root(event_id, content)
        self.threads.record(room_id, event_id, root)
        relation = relation_of(content)
        if "m.in_reply_to" in relation and not relation.get("is_falling_back"):
            body = strip_reply_fallback(body)
        mentioned = mentions_in_metadata(content, self.identity)
        text, addressed = strip_leading_address(body, self.identity)
        mentioned = mentioned or addressed
        if not mentioned and root == event_id and self.is_command(text):
            mentioned = True
        return ChatEvent(
            kind=ChatEventKind.MESSAGE,
            thread=ThreadKey(PLATFORM, room_id, root),
            user=sender,
            text=text.strip(),
            event_id=event_id,
            message_id=event_id,
            mentions_bot=mentioned,
            user_name=sender_name,
            raw=source,
        )

    async def _reaction(
        self,
        room_id: str,
        event_id: str,
        sender: str,
        content: Mapping[str, Any],
        sender_name: str | None,
        source: Mapping[str, Any],
    ) -> ChatEvent | None:
        relation = relation_of(content)
        target = relation.get("event_id")
        key = relation.get("key")
        if relation.get("rel_type") != "m.annotation":
            return None
        if not isinstance(target, str) or not isinstance(key, str):
            return None
        root = self.threads.root_of(room_id, target) or await self.resolve_thread(room_id, target)
        if root is None:
            return None
        return ChatEvent(
            kind=ChatEventKind.REACTION,
            thread=ThreadKey(PLATFORM, room_id, root),
            user=sender,
            event_id=event_id,
            message_id=event_id,
            reaction=reaction_name(key),
            target_message_id=target,
            user_name=sender_name,
            raw=source,
        )
