"""Builders for what Slack pushes to an app: Events API callbacks, slash commands, clicks.

Each function returns the payload exactly as Slack shapes it, so that Bolt's
matchers, its self-event filter and the bot's own parsing meet real field names.
The transport (Socket Mode envelope or signed HTTP POST) is added elsewhere.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any

from tests.emulators.slack_store import (
    MessageStore,
    SlackChannel,
    SlackMessage,
    Workspace,
    random_id,
)


def event_callback(workspace: Workspace, event: dict[str, Any]) -> dict[str, Any]:
    """Wrap one event in the Events API outer payload; its event_id is fixed from here on."""
    context = {
        "et": event["type"],
        "tid": workspace.team_id,
        "aid": workspace.app_id,
        "cid": event.get("channel") or event.get("item", {}).get("channel"),
    }
    encoded = base64.urlsafe_b64encode(json.dumps(context).encode()).decode().rstrip("=")
    return {
        "token": workspace.verification_token,
        "team_id": workspace.team_id,
        "context_team_id": workspace.team_id,
        "context_enterprise_id": None,
        "api_app_id": workspace.app_id,
        "event": event,
        "type": "event_callback",
        "event_id": random_id("Ev"),
        "event_time": int(float(event.get("event_ts") or time.time())),
        "authorizations": workspace.authorizations(),
        "is_ext_shared_channel": False,
        "event_context": f"4-{encoded}",
    }


def message_event(store: MessageStore, message: SlackMessage) -> dict[str, Any]:
    """A `message` event for a new message (typed by a user or posted by the bot)."""
    event = store.render_message(message)
    # Events never carry thread bookkeeping of the root; a new message has none yet.
    for key in ("reply_count", "reply_users_count", "latest_reply", "reply_users"):
        event.pop(key, None)
    event["channel"] = message.channel
    event["event_ts"] = message.ts
    event["channel_type"] = store.channels[message.channel].channel_type
    return event


def app_mention_event(store: MessageStore, message: SlackMessage) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "app_mention",
        "user": message.user,
        "text": message.text,
        "ts": message.ts,
        "client_msg_id": message.client_msg_id,
        "team": store.workspace.team_id,
        "blocks": store.render_message(message)["blocks"],
        "channel": message.channel,
        "event_ts": message.ts,
    }
    if message.is_reply:
        event["thread_ts"] = message.thread_ts
        root = store.get(message.channel, message.thread_ts or "")
        if root is not None:
            event["parent_user_id"] = root.user or root.bot_id
    return event


def message_changed_event(
    store: MessageStore, message: SlackMessage, previous: dict[str, Any]
) -> dict[str, Any]:
    """What Slack sends after chat.update (or a user's edit): hidden, with both versions."""
    event_ts = store.next_ts()
    current = store.render_message(message)
    current.pop("team", None)
    return {
        "type": "message",
        "subtype": "message_changed",
        "message": current,
        "previous_message": previous,
        "channel": message.channel,
        "hidden": True,
        "ts": event_ts,
        "event_ts": event_ts,
        "channel_type": store.channels[message.channel].channel_type,
    }


def message_deleted_event(
    store: MessageStore, channel: SlackChannel, previous: dict[str, Any]
) -> dict[str, Any]:
    event_ts = store.next_ts()
    return {
        "type": "message",
        "subtype": "message_deleted",
        "previous_message": previous,
        "channel": channel.id,
        "hidden": True,
        "deleted_ts": previous["ts"],
        "ts": event_ts,
        "event_ts": event_ts,
        "channel_type": channel.channel_type,
    }


def reaction_event(
    store: MessageStore, kind: str, user: str, reaction: str, message: SlackMessage
) -> dict[str, Any]:
    """`reaction_added` or `reaction_removed` on a message."""
    event: dict[str, Any] = {
        "type": kind,
        "user": user,
        "reaction": reaction,
        "item": {"type": "message", "channel": message.channel, "ts": message.ts},
        "event_ts": store.next_ts(),
    }
    if message.user:
        event["item_user"] = message.user
    return event


def trigger_id() -> str:
    return f"{int(time.time())}.{secrets.randbelow(10**12)}.{secrets.token_hex(16)}"


def slash_command_payload(
    workspace: Workspace,
    *,
    command: str,
    text: str,
    user: str,
    user_name: str,
    channel: SlackChannel,
    response_url: str,
) -> dict[str, str]:
    """The form fields of a slash command invocation (all strings, as Slack sends them)."""
    return {
        "token": workspace.verification_token,
        "team_id": workspace.team_id,
        "team_domain": workspace.team_domain,
        "channel_id": channel.id,
        "channel_name": "directmessage" if channel.is_im else channel.name,
        "user_id": user,
        "user_name": user_name,
        "command": command,
        "text": text,
        "api_app_id": workspace.app_id,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id(),
    }


def block_actions_payload(
    store: MessageStore,
    *,
    user: str,
    channel: SlackChannel,
    message: SlackMessage,
    action_id: str,
    value: str,
    response_url: str,
) -> dict[str, Any]:
    """A button click on a message, as an `interactive` block_actions payload."""
    workspace = store.workspace
    clicker = store.ensure_user(user)
    container: dict[str, Any] = {
        "type": "message",
        "message_ts": message.ts,
        "channel_id": channel.id,
        "is_ephemeral": False,
    }
    if message.is_reply:
        container["thread_ts"] = message.thread_ts
    return {
        "type": "block_actions",
        "user": {
            "id": user,
            "username": clicker.name,
            "name": clicker.name,
            "team_id": workspace.team_id,
        },
        "api_app_id": workspace.app_id,
        "token": workspace.verification_token,
        "container": container,
        "trigger_id": trigger_id(),
        "team": {"id": workspace.team_id, "domain": workspace.team_domain},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel.id, "name": channel.name},
        "message": store.render_message(message),
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [
            {
                "action_id": action_id,
                "block_id": block_of_action(message, action_id),
                "text": {"type": "plain_text", "text": value, "emoji": True},
                "value": value,
                "type": "button",
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }


def block_of_action(message: SlackMessage, action_id: str) -> str:
    """The block_id of the block holding the element with `action_id`."""
    for block in message.blocks or []:
        elements = [*block.get("elements", []), block.get("accessory") or {}]
        if any(isinstance(e, dict) and e.get("action_id") == action_id for e in elements):
            return str(block.get("block_id", "actions"))
    return "actions"
