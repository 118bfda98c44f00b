"""The emulated workspace: who exists, which channels there are, and every message in them.

Slack's Web API and its Events API are two views of one message store, so the
emulator keeps a single store that both read from.  Messages are kept in the shape
Slack reasons about (a root with replies, an edit history, reactions, attached
files); `render_message` turns one into the JSON object Slack puts on the wire.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import string
import time
from dataclasses import dataclass, field
from typing import Any

BOT_ICONS = {
    "image_36": "https://a.slack-edge.com/80588/img/plugins/app/bot_36.png",
    "image_48": "https://a.slack-edge.com/80588/img/plugins/app/bot_48.png",
    "image_72": "https://a.slack-edge.com/80588/img/plugins/app/service_72.png",
}


def random_id(prefix: str, length: int = 10) -> str:
    """An opaque Slack-looking id such as `Ev06ABCDEF12` or `F07XYZ...`."""
    alphabet = string.ascii_uppercase + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(length))


@dataclass(frozen=True)
class Workspace:
    """Identity of the emulated team and of the one app installed in it."""

    team_id: str
    team_name: str
    team_domain: str
    bot_user_id: str
    bot_id: str
    bot_name: str
    app_id: str
    bot_token: str
    app_token: str
    verification_token: str

    @property
    def team_url(self) -> str:
        return f"https://{self.team_domain}.slack.com/"

    def bot_profile(self) -> dict[str, Any]:
        return {
            "id": self.bot_id,
            "app_id": self.app_id,
            "name": self.bot_name,
            "icons": dict(BOT_ICONS),
            "deleted": False,
            "updated": 1700000000,
            "team_id": self.team_id,
        }

    def authorizations(self) -> list[dict[str, Any]]:
        return [
            {
                "enterprise_id": None,
                "team_id": self.team_id,
                "user_id": self.bot_user_id,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ]


@dataclass
class SlackUser:
    id: str
    name: str
    real_name: str
    is_bot: bool = False


@dataclass
class SlackChannel:
    id: str
    name: str
    members: set[str]
    is_private: bool = False

    @property
    def is_im(self) -> bool:
        return self.id.startswith("D")

    @property
    def channel_type(self) -> str:
        """The `channel_type` Slack puts on message events."""
        if self.is_im:
            return "im"
        return "group" if self.is_private else "channel"


@dataclass
class Edit:
    """One earlier version of a message, kept when it is updated."""

    text: str
    blocks: list[dict[str, Any]] | None
    replaced_at: str


@dataclass
class UploadedFile:
    id: str
    name: str
    length: int
    content: bytes | None = None
    title: str | None = None
    channel: str | None = None
    thread_ts: str | None = None
    created: int = field(default_factory=lambda: int(time.time()))

    def to_api(self, workspace: Workspace) -> dict[str, Any]:
        size = len(self.content) if self.content is not None else self.length
        return {
            "id": self.id,
            "created": self.created,
            "timestamp": self.created,
            "name": self.name,
            "title": self.title or self.name,
            "mimetype": "text/plain",
            "filetype": "text",
            "user": workspace.bot_user_id,
            "user_team": workspace.team_id,
            "size": size,
            "mode": "hosted",
            "is_external": False,
            "is_public": True,
            "url_private": f"https://files.slack.com/files-pri/{workspace.team_id}-{self.id}/{self.name}",
            "permalink": f"{workspace.team_url}files/{workspace.bot_user_id}/{self.id}/{self.name}",
            "channels": [self.channel] if self.channel else [],
        }


@dataclass
class SlackMessage:
    """A message as the store holds it; tests read these fields directly."""

    channel: str
    ts: str
    text: str
    user: str | None = None
    bot_id: str | None = None
    blocks: list[dict[str, Any]] | None = None
    thread_ts: str | None = None
    subtype: str | None = None
    username: str | None = None
    client_msg_id: str | None = None
    mrkdwn: bool = True
    edits: list[Edit] = field(default_factory=list)
    edited_ts: str | None = None
    reactions: dict[str, list[str]] = field(default_factory=dict)
    files: list[UploadedFile] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)
    streaming: bool = False
    stream_started: float | None = None

    @property
    def is_reply(self) -> bool:
        return self.thread_ts is not None and self.thread_ts != self.ts

    @property
    def reply_count(self) -> int:
        return len(self.replies)


class MessageStore:
    """Users, channels and messages of one workspace, plus the ts clock."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self.users: dict[str, SlackUser] = {}
        self.channels: dict[str, SlackChannel] = {}
        self.messages: dict[str, dict[str, SlackMessage]] = {}
        self.files: dict[str, UploadedFile] = {}
        self._last_ts_micros = 0
        self.add_user(workspace.bot_user_id, workspace.bot_name, is_bot=True)

    def next_ts(self) -> str:
        """A Slack ts: wall-clock seconds and microseconds, unique and increasing."""
        now = int(time.time() * 1_000_000)
        self._last_ts_micros = max(now, self._last_ts_micros + 1)
        seconds, micros = divmod(self._last_ts_micros, 1_000_000)
        return f"{seconds}.{micros:06d}"

    def add_user(self, user_id: str, name: str, *, is_bot: bool = False) -> SlackUser:
        user = SlackUser(
            id=user_id, name=name, real_name=name.replace(".", " ").title(), is_bot=is_bot
        )
        self.users[user_id] = user
        return user

    def ensure_user(self, user_id: str) -> SlackUser:
        return self.users.get(user_id) or self.add_user(user_id, user_id.lower())

    def add_channel(
        self, channel_id: str, name: str, members: set[str], *, is_private: bool = False
    ) -> SlackChannel:
        channel = SlackChannel(id=channel_id, name=name, members=members, is_private=is_private)
        self.channels[channel_id] = channel
        self.messages.setdefault(channel_id, {})
        for member in members:
            self.ensure_user(member)
        return channel

    def bot_is_member(self, channel_id: str) -> bool:
        channel = self.channels.get(channel_id)
        return channel is not None and self.workspace.bot_user_id in channel.members

    def get(self, channel_id: str, ts: str) -> SlackMessage | None:
        return self.messages.get(channel_id, {}).get(ts)

    def thread_root_ts(self, channel_id: str, thread_ts: str) -> str | None:
        """The ts of the root a reply should hang under; a reply's own ts maps to its root."""
        parent = self.get(channel_id, thread_ts)
        if parent is None:
            return None
        return parent.thread_ts if parent.is_reply else parent.ts

    def add_message(self, message: SlackMessage) -> SlackMessage:
        self.messages[message.channel][message.ts] = message
        if message.is_reply:
            root = self.get(message.channel, message.thread_ts or "")
            if root is not None:
                root.thread_ts = root.ts
                root.replies.append(message.ts)
        return message

    def edit(self, message: SlackMessage, text: str, blocks: list[dict[str, Any]] | None) -> None:
        message.edits.append(
            Edit(text=message.text, blocks=message.blocks, replaced_at=self.next_ts())
        )
        message.edited_ts = message.edits[-1].replaced_at
        message.text = text
        if blocks is not None:
            message.blocks = blocks

    def delete(self, message: SlackMessage) -> None:
        del self.messages[message.channel][message.ts]
        if message.is_reply:
            root = self.get(message.channel, message.thread_ts or "")
            if root is not None and message.ts in root.replies:
                root.replies.remove(message.ts)

    def thread(self, channel_id: str, thread_ts: str) -> list[SlackMessage]:
        root = self.get(channel_id, thread_ts)
        if root is None:
            return []
        replies = [self.messages[channel_id][ts] for ts in root.replies]
        return [root, *sorted(replies, key=lambda m: float(m.ts))]

    def history(self, channel_id: str) -> list[SlackMessage]:
        """Top-level messages, newest first, as conversations.history lists them."""
        top = [m for m in self.messages.get(channel_id, {}).values() if not m.is_reply]
        return sorted(top, key=lambda m: float(m.ts), reverse=True)

    def reply_users(self, root: SlackMessage) -> list[str]:
        seen: list[str] = []
        for ts in root.replies:
            reply = self.messages[root.channel][ts]
            author = reply.user or reply.bot_id
            if author and author not in seen:
                seen.append(author)
        return seen

    def render_message(self, message: SlackMessage) -> dict[str, Any]:
        """The message object as Slack returns it from the Web API and in events."""
        rendered: dict[str, Any] = {"type": "message", "ts": message.ts, "text": message.text}
        if message.subtype:
            rendered["subtype"] = message.subtype
        if message.user:
            rendered["user"] = message.user
        if message.bot_id:
            rendered["bot_id"] = message.bot_id
            rendered["app_id"] = self.workspace.app_id
            rendered["bot_profile"] = self.workspace.bot_profile()
        if message.username:
            rendered["username"] = message.username
        if message.client_msg_id:
            rendered["client_msg_id"] = message.client_msg_id
        rendered["team"] = self.workspace.team_id
        rendered["blocks"] = (
            message.blocks
            if message.blocks is not None
            else rich_text_blocks(message.text, seed=message.ts)
        )
        if message.edited_ts:
            rendered["edited"] = {"user": message.user or message.bot_id, "ts": message.edited_ts}
        if message.thread_ts:
            rendered["thread_ts"] = message.thread_ts
        if message.is_reply:
            root = self.get(message.channel, message.thread_ts or "")
            if root is not None:
                rendered["parent_user_id"] = root.user or root.bot_id
        elif message.replies:
            users = self.reply_users(message)
            rendered.update(
                reply_count=len(message.replies),
                reply_users_count=len(users),
                latest_reply=message.replies[-1],
                reply_users=users,
                is_locked=False,
                subscribed=False,
            )
        if message.reactions:
            rendered["reactions"] = [
                {"name": name, "users": list(users), "count": len(users)}
                for name, users in message.reactions.items()
            ]
        if message.files:
            rendered["files"] = [f.to_api(self.workspace) for f in message.files]
            rendered["upload"] = False
        return rendered


def rich_text_blocks(text: str, seed: str) -> list[dict[str, Any]]:
    """The rich_text block Slack attaches to a plain-text message, mentions split out.

    `seed` (the message ts) keeps the block_id stable across renders of one message.
    """
    elements: list[dict[str, Any]] = []
    rest = text
    while rest:
        start = rest.find("<@")
        end = rest.find(">", start) if start >= 0 else -1
        if start < 0 or end < 0:
            elements.append({"type": "text", "text": rest})
            break
        if start > 0:
            elements.append({"type": "text", "text": rest[:start]})
        elements.append({"type": "user", "user_id": rest[start + 2 : end].split("|")[0]})
        rest = rest[end + 1 :]
    block_id = base64.b32encode(hashlib.sha1(seed.encode()).digest()).decode()[:5]
    return [
        {
            "type": "rich_text",
            "block_id": block_id,
            "elements": [{"type": "rich_text_section", "elements": elements}],
        }
    ]
