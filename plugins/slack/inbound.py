"""Slack payloads → :class:`bot.events.ChatEvent`: translation only, no decisions.

What is dropped here is what can never be input: the bot's own messages and
other bots' (``bot_id``, subtype ``bot_message``), edits and deletions
(``message_changed``, ``message_deleted``) and every other subtype except
``file_share`` and ``thread_broadcast``, which are ordinary messages with
extras. A top-level channel message that does not mention the bot is dropped
too: it cannot belong to a session (its thread would be itself), so there is
nothing for the host to decide.

Identity: the thread is ``ThreadKey("slack", "team/channel", thread_ts or
ts)``; ``message_id`` is the message's ``ts`` and ``event_id`` the Events API
envelope's ``event_id``, which Slack keeps across retries. The same mention
delivered as ``app_mention`` and as ``message`` therefore carries one
``message_id`` and the host keeps only the first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.events import ChatEvent, ChatEventKind
from plugins.slack.formatting import slack_to_plain
from plugins.slack.threads import thread_key

ORDINARY_SUBTYPES = frozenset({"file_share", "thread_broadcast"})
_SKIN_TONE = re.compile(r"::skin-tone-\d+$")


@dataclass(frozen=True, slots=True)
class BotIdentity:
    """Who the bot is in this workspace (from ``auth.test``)."""

    user_id: str
    bot_id: str
    team_id: str


def mentions(text: str, user_id: str) -> bool:
    return f"<@{user_id}>" in text or f"<@{user_id}|" in text


def message_event(
    body: Mapping[str, Any], event: Mapping[str, Any], bot: BotIdentity
) -> ChatEvent | None:
    """A person's message (``message`` or ``app_mention``) as a MESSAGE event, or None."""
    subtype = event.get("subtype")
    if subtype is not None and subtype not in ORDINARY_SUBTYPES:
        return None
    user = event.get("user")
    if event.get("bot_id") or not user or user == bot.user_id:
        return None
    channel, ts = event.get("channel"), event.get("ts")
    if not channel or not ts:
        return None
    text = str(event.get("text") or "")
    direct = event.get("channel_type") == "im"
    addressed = mentions(text, bot.user_id) or direct
    thread_ts = event.get("thread_ts")
    if not thread_ts and not addressed:
        return None  # channel chatter
    return ChatEvent(
        kind=ChatEventKind.MESSAGE,
        thread=thread_key(team_of_body(body, event, bot), str(channel), str(thread_ts or ts)),
        user=str(user),
        text=slack_to_plain(text, bot.user_id),
        event_id=str(body.get("event_id") or ""),
        message_id=str(ts),
        mentions_bot=addressed,
        raw=event,
    )


def reaction_name(raw: str) -> str:
    """``+1::skin-tone-3`` → ``+1``; names stay Slack's short names (``x``, ``repeat``)."""
    return _SKIN_TONE.sub("", raw.strip(":"))


def reaction_event(
    body: Mapping[str, Any], event: Mapping[str, Any], bot: BotIdentity, root_ts: str
) -> ChatEvent | None:
    """``reaction_added`` on a message in thread ``root_ts`` as a REACTION event."""
    item = event.get("item") or {}
    user = event.get("user")
    if item.get("type") != "message" or not user or user == bot.user_id:
        return None
    return ChatEvent(
        kind=ChatEventKind.REACTION,
        thread=thread_key(team_of_body(body, event, bot), str(item["channel"]), root_ts),
        user=str(user),
        event_id=str(body.get("event_id") or ""),
        reaction=reaction_name(str(event.get("reaction") or "")),
        target_message_id=str(item.get("ts") or ""),
        raw=event,
    )


def action_event(
    body: Mapping[str, Any], action: Mapping[str, Any], bot: BotIdentity
) -> ChatEvent | None:
    """A button press on one of the bot's messages as an ACTION event."""
    container = body.get("container") or {}
    message = body.get("message") or {}
    channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
    message_ts = container.get("message_ts") or message.get("ts")
    user = (body.get("user") or {}).get("id")
    if not channel or not message_ts or not user:
        return None
    root = container.get("thread_ts") or message.get("thread_ts") or message_ts
    team = (body.get("team") or {}).get("id") or bot.team_id
    return ChatEvent(
        kind=ChatEventKind.ACTION,
        thread=thread_key(str(team), str(channel), str(root)),
        user=str(user),
        event_id=f"action:{action.get('action_ts') or body.get('trigger_id') or ''}:{user}",
        action_value=str(action.get("value") or ""),
        target_message_id=str(message_ts),
        raw=dict(action),
    )


def team_of_body(body: Mapping[str, Any], event: Mapping[str, Any], bot: BotIdentity) -> str:
    """The workspace the app is installed in (not the author's team in shared channels)."""
    return str(body.get("team_id") or bot.team_id or event.get("team") or "")
