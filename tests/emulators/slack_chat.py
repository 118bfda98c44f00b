"""Web API methods that write messages: `chat.*`, native streaming, reactions, thread status.

Every write lands in the shared `MessageStore` and is echoed to the app as the
event Slack would send: the bot's own post as a `message` carrying `bot_id`
(subtype `bot_message` only when the post overrode `username`), an update as a
hidden `message_changed`, a delete as `message_deleted`, its reactions as
`reaction_added` / `reaction_removed` from the bot user.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.emulators.slack_payloads import (
    message_changed_event,
    message_deleted_event,
    message_event,
    reaction_event,
)
from tests.emulators.slack_store import MessageStore, SlackChannel, SlackMessage, UploadedFile
from tests.emulators.slack_webapi import ApiFailure, WebApi

MAX_TEXT = 4000
MAX_STREAM_TEXT = 12000
MAX_BLOCKS = 50


@dataclass(frozen=True)
class Ephemeral:
    channel: str
    user: str
    text: str
    blocks: list[dict[str, Any]] | None
    thread_ts: str | None
    message_ts: str


@dataclass(frozen=True)
class ThreadStatus:
    status: str
    loading_messages: list[str] | None
    set_at: float


def find_channel(store: MessageStore, args: dict[str, Any], key: str = "channel") -> SlackChannel:
    """The channel an argument names, by id or by `#name`, else `channel_not_found`."""
    ref = args.get(key)
    if not isinstance(ref, str) or not ref:
        raise ApiFailure("channel_not_found")
    channel = store.channels.get(ref)
    if channel is None:
        name = ref.removeprefix("#")
        channel = next((c for c in store.channels.values() if c.name == name), None)
    if channel is None:
        raise ApiFailure("channel_not_found")
    return channel


def check_blocks(args: dict[str, Any]) -> list[dict[str, Any]] | None:
    blocks = args.get("blocks")
    if blocks is None:
        return None
    if not isinstance(blocks, list) or len(blocks) > MAX_BLOCKS:
        raise ApiFailure("invalid_blocks")
    if not all(isinstance(b, dict) and isinstance(b.get("type"), str) for b in blocks):
        raise ApiFailure("invalid_blocks")
    return blocks


def stream_text(args: dict[str, Any]) -> str:
    """Text carried by a streaming call, as `markdown_text` or markdown_text chunks."""
    text = str(args.get("markdown_text") or "")
    for chunk in args.get("chunks") or []:
        if isinstance(chunk, dict) and chunk.get("type") == "markdown_text":
            text += str(chunk.get("text", ""))
    if len(text) > MAX_STREAM_TEXT:
        raise ApiFailure("msg_too_long")
    return text


class ChatMethods:
    """Handlers for message-writing methods; `emit` hands an event to the delivery side."""

    def __init__(
        self, store: MessageStore, emit: Callable[[dict[str, Any]], object], stream_ttl: float
    ):
        self.store = store
        self.emit = emit
        self.stream_ttl = stream_ttl
        self.ephemerals: list[Ephemeral] = []
        self.thread_statuses: dict[tuple[str, str], ThreadStatus] = {}

    def register(self, api: WebApi) -> None:
        for method, handler in {
            "chat.postMessage": self.post_message,
            "chat.update": self.update,
            "chat.delete": self.delete,
            "chat.postEphemeral": self.post_ephemeral,
            "chat.getPermalink": self.get_permalink,
            "chat.startStream": self.start_stream,
            "chat.appendStream": self.append_stream,
            "chat.stopStream": self.stop_stream,
            "reactions.add": self.reactions_add,
            "reactions.remove": self.reactions_remove,
            "assistant.threads.setStatus": self.set_status,
        }.items():
            api.register(method, handler)

    # --------------------------------------------------------------- helpers

    def _writable_channel(self, args: dict[str, Any]) -> SlackChannel:
        channel = find_channel(self.store, args)
        if not self.store.bot_is_member(channel.id):
            raise ApiFailure("not_in_channel")
        return channel

    def thread_root(self, channel: SlackChannel, thread_ts: Any) -> str | None:
        if thread_ts in (None, ""):
            return None
        root = self.store.thread_root_ts(channel.id, str(thread_ts))
        if root is None:
            raise ApiFailure("thread_not_found")
        return root

    def _own_message(self, args: dict[str, Any], key: str = "ts") -> SlackMessage:
        channel = find_channel(self.store, args)
        message = self.store.get(channel.id, str(args.get(key, "")))
        if message is None:
            raise ApiFailure("message_not_found")
        if message.bot_id != self.store.workspace.bot_id:
            raise ApiFailure("cant_update_message")
        return message

    def post_bot_message(
        self,
        channel: SlackChannel,
        text: str,
        *,
        thread_ts: str | None = None,
        blocks: list[dict[str, Any]] | None = None,
        username: str | None = None,
        files: list[UploadedFile] | None = None,
        subtype: str | None = None,
        mrkdwn: bool = True,
    ) -> SlackMessage:
        """Store a message from the bot and echo it as Slack does."""
        workspace = self.store.workspace
        message = SlackMessage(
            channel=channel.id,
            ts=self.store.next_ts(),
            text=text,
            user=None if username else workspace.bot_user_id,
            bot_id=workspace.bot_id,
            blocks=blocks,
            thread_ts=thread_ts,
            subtype="bot_message" if username else subtype,
            username=username,
            files=files or [],
            mrkdwn=mrkdwn,
        )
        self.store.add_message(message)
        if thread_ts is not None:
            # Slack clears "is thinking…" as soon as the app replies in the thread.
            self.thread_statuses.pop((channel.id, thread_ts), None)
        self.emit(message_event(self.store, message))
        return message

    # ------------------------------------------------------------------ chat.*

    async def post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._writable_channel(args)
        blocks = check_blocks(args)
        text = args.get("text")
        if not text and not blocks and not args.get("attachments"):
            raise ApiFailure("no_text")
        if text and len(str(text)) > MAX_TEXT:
            raise ApiFailure("msg_too_long")
        thread_ts = self.thread_root(channel, args.get("thread_ts"))
        broadcast = thread_ts is not None and args.get("reply_broadcast") in (True, "true", "1")
        message = self.post_bot_message(
            channel,
            str(text or ""),
            thread_ts=thread_ts,
            blocks=blocks,
            username=args.get("username") or None,
            subtype="thread_broadcast" if broadcast else None,
            mrkdwn=args.get("mrkdwn") not in (False, "false", "0"),
        )
        return {
            "channel": channel.id,
            "ts": message.ts,
            "message": self.store.render_message(message),
        }

    async def update(self, args: dict[str, Any]) -> dict[str, Any]:
        message = self._own_message(args)
        blocks = check_blocks(args)
        if "text" not in args and blocks is None and not args.get("attachments"):
            raise ApiFailure("no_text")
        # Slack keeps what an update leaves out: the old text, the old blocks.
        text = str(args["text"]) if "text" in args else message.text
        if len(text) > MAX_TEXT:
            raise ApiFailure("msg_too_long")
        previous = self.store.render_message(message)
        self.store.edit(message, text, blocks)
        self.emit(message_changed_event(self.store, message, previous))
        return {
            "channel": message.channel,
            "ts": message.ts,
            "text": message.text,
            "message": self.store.render_message(message),
        }

    async def delete(self, args: dict[str, Any]) -> dict[str, Any]:
        try:
            message = self._own_message(args)
        except ApiFailure as failure:
            if failure.error == "cant_update_message":
                raise ApiFailure("cant_delete_message") from failure
            raise
        previous = self.store.render_message(message)
        self.store.delete(message)
        channel = self.store.channels[message.channel]
        self.emit(message_deleted_event(self.store, channel, previous))
        return {"channel": message.channel, "ts": message.ts}

    async def post_ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._writable_channel(args)
        user = str(args.get("user", ""))
        if user not in channel.members:
            raise ApiFailure("user_not_in_channel")
        blocks = check_blocks(args)
        text = str(args.get("text") or "")
        if not text and not blocks:
            raise ApiFailure("no_text")
        ts = self.store.next_ts()
        thread_ts = args.get("thread_ts") or None
        self.ephemerals.append(Ephemeral(channel.id, user, text, blocks, thread_ts, ts))
        return {"message_ts": ts}

    async def get_permalink(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = find_channel(self.store, args)
        message = self.store.get(channel.id, str(args.get("message_ts", "")))
        if message is None:
            raise ApiFailure("message_not_found")
        link = (
            f"{self.store.workspace.team_url}archives/{channel.id}/p{message.ts.replace('.', '')}"
        )
        if message.is_reply:
            link += f"?thread_ts={message.thread_ts}&cid={channel.id}"
        return {"channel": channel.id, "permalink": link}

    # --------------------------------------------------------- native streaming

    def _streaming_message(self, args: dict[str, Any]) -> SlackMessage:
        message = self._own_message(args)
        started = message.stream_started or 0.0
        if message.streaming and time.monotonic() - started > self.stream_ttl:
            message.streaming = False
        if not message.streaming:
            raise ApiFailure("message_not_in_streaming_state")
        return message

    async def start_stream(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._writable_channel(args)
        if not args.get("thread_ts"):
            raise ApiFailure("invalid_arguments")
        if not channel.is_im and not (
            args.get("recipient_user_id") and args.get("recipient_team_id")
        ):
            raise ApiFailure("invalid_arguments")
        thread_ts = self.thread_root(channel, args["thread_ts"])
        message = self.post_bot_message(channel, stream_text(args), thread_ts=thread_ts)
        message.streaming = True
        message.stream_started = time.monotonic()
        return {"channel": channel.id, "ts": message.ts}

    async def append_stream(self, args: dict[str, Any]) -> dict[str, Any]:
        message = self._streaming_message(args)
        message.text += stream_text(args)
        return {"channel": message.channel, "ts": message.ts}

    async def stop_stream(self, args: dict[str, Any]) -> dict[str, Any]:
        message = self._streaming_message(args)
        previous = self.store.render_message(message)
        message.text += stream_text(args)
        blocks = check_blocks(args)
        if blocks is not None:
            message.blocks = blocks
        message.streaming = False
        self.emit(message_changed_event(self.store, message, previous))
        return {
            "channel": message.channel,
            "ts": message.ts,
            "message": self.store.render_message(message),
        }

    # --------------------------------------------------------------- reactions

    def _reaction_target(self, args: dict[str, Any]) -> tuple[SlackMessage, str]:
        channel = find_channel(self.store, args)
        message = self.store.get(channel.id, str(args.get("timestamp", "")))
        if message is None:
            raise ApiFailure("message_not_found")
        name = str(args.get("name", "")).strip(":")
        if not name:
            raise ApiFailure("invalid_name")
        return message, name

    async def reactions_add(self, args: dict[str, Any]) -> dict[str, Any]:
        message, name = self._reaction_target(args)
        bot_user = self.store.workspace.bot_user_id
        users = message.reactions.setdefault(name, [])
        if bot_user in users:
            raise ApiFailure("already_reacted")
        users.append(bot_user)
        self.emit(reaction_event(self.store, "reaction_added", bot_user, name, message))
        return {}

    async def reactions_remove(self, args: dict[str, Any]) -> dict[str, Any]:
        message, name = self._reaction_target(args)
        bot_user = self.store.workspace.bot_user_id
        users = message.reactions.get(name, [])
        if bot_user not in users:
            raise ApiFailure("no_reaction")
        users.remove(bot_user)
        if not users:
            del message.reactions[name]
        self.emit(reaction_event(self.store, "reaction_removed", bot_user, name, message))
        return {}

    # ------------------------------------------------------------ thread status

    async def set_status(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = find_channel(self.store, args, key="channel_id")
        thread_ts = self.thread_root(channel, args.get("thread_ts"))
        if thread_ts is None or "status" not in args:
            raise ApiFailure("invalid_arguments")
        status = str(args["status"])
        key = (channel.id, thread_ts)
        if status:
            loading = args.get("loading_messages")
            self.thread_statuses[key] = ThreadStatus(status, loading, time.monotonic())
        else:
            self.thread_statuses.pop(key, None)
        return {}
