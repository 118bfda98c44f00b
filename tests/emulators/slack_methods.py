"""Web API methods that read the workspace, open Socket Mode, and upload files.

`auth.test` answers with both `user_id` and `bot_id` because Bolt uses them to drop
the bot's own events.  Listing methods page with an opaque `next_cursor` like
Slack's.  Uploads follow slack_sdk's `files_upload_v2` flow: an upload URL on the
emulator, a raw POST of the bytes there, then `files.completeUploadExternal`, which
shares the file into the channel or thread as a message from the bot.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web

from tests.emulators.slack_chat import ChatMethods, find_channel
from tests.emulators.slack_store import MessageStore, SlackChannel, UploadedFile, random_id
from tests.emulators.slack_webapi import ApiFailure, WebApi


def page(
    items: Sequence[Any], args: dict[str, Any], default_limit: int = 100
) -> tuple[list[Any], str]:
    """One page of `items` and the cursor of the next ("" when there is none)."""
    try:
        limit = int(args.get("limit") or default_limit)
        cursor = str(args.get("cursor") or "")
        start = int(base64.b64decode(cursor).decode().removeprefix("next:")) if cursor else 0
    except ValueError as error:
        raise ApiFailure("invalid_cursor") from error
    limit = max(1, min(limit, 1000))
    end = start + limit
    next_cursor = base64.b64encode(f"next:{end}".encode()).decode() if end < len(items) else ""
    return list(items[start:end]), next_cursor


def in_range(ts: str, args: dict[str, Any]) -> bool:
    """Whether ts lies within the request's `oldest`/`latest` bounds."""
    inclusive = args.get("inclusive") in (True, "true", "1")
    value = float(ts)
    oldest, latest = args.get("oldest"), args.get("latest")
    if oldest and (value < float(oldest) or (value == float(oldest) and not inclusive)):
        return False
    return not (latest and (value > float(latest) or (value == float(latest) and not inclusive)))


class WorkspaceMethods:
    """Handlers for auth, Socket Mode URLs, conversations, users, bots and files."""

    def __init__(
        self,
        store: MessageStore,
        chat: ChatMethods,
        *,
        socket_url: Callable[[], str],
        upload_url: Callable[[str], str],
    ) -> None:
        self.store = store
        self.chat = chat
        self.socket_url = socket_url
        self.upload_url = upload_url

    def register(self, api: WebApi) -> None:
        api.register("apps.connections.open", self.connections_open, token_kind="app")
        for method, handler in {
            "auth.test": self.auth_test,
            "conversations.replies": self.replies,
            "conversations.history": self.history,
            "conversations.info": self.info,
            "conversations.members": self.members,
            "users.info": self.users_info,
            "bots.info": self.bots_info,
            "files.getUploadURLExternal": self.get_upload_url,
            "files.completeUploadExternal": self.complete_upload,
        }.items():
            api.register(method, handler)

    async def auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        workspace = self.store.workspace
        return {
            "url": workspace.team_url,
            "team": workspace.team_name,
            "user": workspace.bot_name,
            "team_id": workspace.team_id,
            "user_id": workspace.bot_user_id,
            "bot_id": workspace.bot_id,
            "is_enterprise_install": False,
        }

    async def connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"url": self.socket_url()}

    # ----------------------------------------------------------- conversations

    def _readable_channel(self, args: dict[str, Any]) -> SlackChannel:
        channel = find_channel(self.store, args)
        if not self.store.bot_is_member(channel.id):
            raise ApiFailure("not_in_channel")
        return channel

    async def replies(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._readable_channel(args)
        ts = str(args.get("ts", ""))
        target = self.store.get(channel.id, ts)
        if target is None:
            raise ApiFailure("thread_not_found")
        # A reply's ts names its whole thread, as in Slack.
        messages = self.store.thread(channel.id, target.thread_ts or ts)
        # The root is always first; oldest/latest only filter the replies.
        selected = [messages[0], *[m for m in messages[1:] if in_range(m.ts, args)]]
        items, cursor = page(selected, args, default_limit=1000)
        return {
            "messages": [self.store.render_message(m) for m in items],
            "has_more": bool(cursor),
            "response_metadata": {"next_cursor": cursor},
        }

    async def history(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._readable_channel(args)
        selected = [m for m in self.store.history(channel.id) if in_range(m.ts, args)]
        items, cursor = page(selected, args)
        return {
            "messages": [self.store.render_message(m) for m in items],
            "has_more": bool(cursor),
            "pin_count": 0,
            "response_metadata": {"next_cursor": cursor},
        }

    async def info(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = find_channel(self.store, args)
        bot_user = self.store.workspace.bot_user_id
        info: dict[str, Any] = {
            "id": channel.id,
            "created": 1700000000,
            "is_archived": False,
            "is_general": False,
            "is_shared": False,
            "is_ext_shared": False,
            "is_org_shared": False,
            "context_team_id": self.store.workspace.team_id,
        }
        if channel.is_im:
            others = [m for m in channel.members if m != bot_user]
            info.update(
                is_im=True, is_channel=False, is_group=False, user=others[0] if others else ""
            )
        else:
            info.update(
                name=channel.name,
                name_normalized=channel.name,
                is_channel=not channel.is_private,
                is_group=channel.is_private,
                is_im=False,
                is_mpim=False,
                is_private=channel.is_private,
                is_member=bot_user in channel.members,
                num_members=len(channel.members),
                topic={"value": "", "creator": "", "last_set": 0},
                purpose={"value": "", "creator": "", "last_set": 0},
            )
        return {"channel": info}

    async def members(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = find_channel(self.store, args)
        items, cursor = page(sorted(channel.members), args)
        return {"members": items, "response_metadata": {"next_cursor": cursor}}

    # -------------------------------------------------------------- users, bots

    async def users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self.store.users.get(str(args.get("user", "")))
        if user is None:
            raise ApiFailure("user_not_found")
        workspace = self.store.workspace
        profile: dict[str, Any] = {
            "real_name": user.real_name,
            "display_name": user.name,
            "real_name_normalized": user.real_name,
            "display_name_normalized": user.name,
            "team": workspace.team_id,
        }
        body: dict[str, Any] = {
            "id": user.id,
            "team_id": workspace.team_id,
            "name": user.name,
            "deleted": False,
            "real_name": user.real_name,
            "tz": "Europe/London",
            "tz_offset": 0,
            "is_admin": False,
            "is_owner": False,
            "is_bot": user.is_bot,
            "is_app_user": False,
            "profile": profile,
        }
        if user.id == workspace.bot_user_id:
            profile.update(bot_id=workspace.bot_id, api_app_id=workspace.app_id)
        return {"user": body}

    async def bots_info(self, args: dict[str, Any]) -> dict[str, Any]:
        workspace = self.store.workspace
        if args.get("bot") != workspace.bot_id:
            raise ApiFailure("bot_not_found")
        profile = workspace.bot_profile()
        profile.pop("team_id")
        return {"bot": {**profile, "user_id": workspace.bot_user_id}}

    # ------------------------------------------------------------------- files

    async def get_upload_url(self, args: dict[str, Any]) -> dict[str, Any]:
        filename, length = args.get("filename"), args.get("length")
        if not filename or length in (None, ""):
            raise ApiFailure("invalid_arguments")
        try:
            size = int(length)
        except ValueError as error:
            raise ApiFailure("invalid_arguments") from error
        upload = UploadedFile(id=random_id("F"), name=str(filename), length=size)
        self.store.files[upload.id] = upload
        return {"upload_url": self.upload_url(upload.id), "file_id": upload.id}

    async def receive_upload(self, request: web.Request) -> web.Response:
        """The upload URL handed out above; answers like files.slack.com does."""
        upload = self.store.files.get(request.match_info["file_id"])
        if upload is None:
            return web.Response(status=404, text="file not found")
        upload.content = await request.read()
        return web.Response(text=f"OK - {len(upload.content)}")

    async def complete_upload(self, args: dict[str, Any]) -> dict[str, Any]:
        entries = args.get("files")
        if not isinstance(entries, list) or not entries:
            raise ApiFailure("invalid_arguments")
        uploads: list[UploadedFile] = []
        for entry in entries:
            upload = self.store.files.get(str(entry.get("id")))
            if upload is None or upload.content is None:
                raise ApiFailure("file_not_found")
            upload.title = entry.get("title") or upload.name
            uploads.append(upload)
        if args.get("channel_id") or args.get("channels"):
            key = "channel_id" if args.get("channel_id") else "channels"
            channel = find_channel(self.store, {"channel": str(args[key]).split(",")[0]})
            if not self.store.bot_is_member(channel.id):
                raise ApiFailure("not_in_channel")
            thread_ts = self.chat.thread_root(channel, args.get("thread_ts"))
            for upload in uploads:
                upload.channel, upload.thread_ts = channel.id, thread_ts
            text = str(args.get("initial_comment") or "")
            self.chat.post_bot_message(channel, text, thread_ts=thread_ts, files=uploads)
        return {"files": [u.to_api(self.store.workspace) for u in uploads]}
