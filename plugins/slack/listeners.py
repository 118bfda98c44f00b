"""The Bolt listeners: every push from Slack is acknowledged, translated and handed on.

Bolt acknowledges Events API envelopes before a listener runs, but only
envelopes some listener matches; an unmatched one is never acked and Slack
delivers it again. So ``message`` is caught whatever its subtype, and a last
catch-all acks every other event type. Slash commands and button clicks are
acked by the listener itself, first, before anything slow: the root message
of a slash command and the session start happen after the ack, in a task.

Listeners never wait for the host: each delivery runs in a task the adapter
owns, so Bolt's own (unreferenced) listener tasks end at once.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError

from bot.events import ChatEvent, ChatEventKind
from bot.policy.approvals import answer_for
from bot.sessions import STOP_REACTIONS
from plugins.slack.approvals import ACTION_PREFIX
from plugins.slack.commands import APP_COMMAND, SlashRequest, resolve
from plugins.slack.formatting import escape
from plugins.slack.inbound import action_event, message_event, reaction_event, reaction_name
from plugins.slack.threads import thread_key

if TYPE_CHECKING:
    from plugins.slack.adapter import SlackAdapter

log = logging.getLogger(__name__)

Ack = Callable[..., Awaitable[Any]]
Respond = Callable[..., Awaitable[Any]]

REFUSAL = (
    "Sorry, I can only take requests from people on my allow-list. "
    "Ask the operator to add you to `access.allowed_users`."
)
STOP_HINT = "To stop a task, reply `stop` in its thread or react :x: on my reply there."


class SlackListeners:
    def __init__(self, adapter: SlackAdapter) -> None:
        self.adapter = adapter

    def register(self, app: AsyncApp) -> None:
        app.event("app_mention")(self.on_message)
        app.event("message")(self.on_message)
        app.event("reaction_added")(self.on_reaction)
        app.action(re.compile("^" + re.escape(ACTION_PREFIX)))(self.on_action)
        app.command(re.compile(r"^/.+"))(self.on_command)
        app.event(re.compile(r".*"))(self.on_other_event)

    # --- events ---------------------------------------------------------------

    async def on_message(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        adapter = self.adapter
        chat_event = message_event(body, event, adapter.identity)
        if chat_event is None:
            return
        adapter.threads.remember(
            str(event["channel"]), chat_event.message_id, chat_event.thread.thread
        )
        adapter.spawn(adapter.deliver(chat_event), "slack-message")

    async def on_reaction(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        item = event.get("item") or {}
        if item.get("type") != "message" or not item.get("channel") or not item.get("ts"):
            return
        channel, ts = str(item["channel"]), str(item["ts"])
        name = reaction_name(str(event.get("reaction") or ""))
        root = self.adapter.threads.known(channel, ts)
        # Looking up the thread of an arbitrary message costs an API call; only
        # reactions that can mean something (stop, an approval answer) are worth it.
        if root is None and name not in STOP_REACTIONS and answer_for(name) is None:
            return
        self.adapter.spawn(self._deliver_reaction(body, event, channel, ts), "slack-reaction")

    async def _deliver_reaction(
        self, body: dict[str, Any], event: dict[str, Any], channel: str, ts: str
    ) -> None:
        root = await self.adapter.threads.root_of(channel, ts)
        if root is None:
            return
        chat_event = reaction_event(body, event, self.adapter.identity, root)
        if chat_event is not None:
            await self.adapter.deliver_answer(chat_event)

    async def on_other_event(self) -> None:
        """Acks event types threadwright does not use, so Slack does not redeliver them."""

    # --- interactivity ----------------------------------------------------------

    async def on_action(self, ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        chat_event = action_event(body, action, self.adapter.identity)
        if chat_event is not None:
            self.adapter.spawn(self.adapter.deliver_answer(chat_event), "slack-action")

    async def on_command(self, ack: Ack, command: dict[str, Any], respond: Respond) -> None:
        adapter = self.adapter
        sessions = adapter.manager
        user = str(command.get("user_id") or "")
        channel = str(command.get("channel_id") or "")
        team = str(command.get("team_id") or adapter.identity.team_id)
        request = resolve(
            str(command.get("command") or ""),
            str(command.get("text") or ""),
            sessions.runtime.current_directives(),
        )
        if not sessions.access.room_allowed("slack", f"{team}/{channel}"):
            await ack(text="I'm not enabled in this channel.")
            return
        if not sessions.access.user_allowed("slack", user):
            await ack(text=REFUSAL)
            return
        if request.kind == "control":
            await ack(text=self._control_answer(request))
            return
        if request.kind == "unknown":
            await ack(text=f"Unknown command `/{request.name}`. Try `/{APP_COMMAND} help`.")
            return
        if request.kind == "task" and not request.text:
            await ack(text=f"What should I do? `/{APP_COMMAND} <task>`")
            return
        await ack()
        adapter.spawn(self._start_from_command(command, request, respond), "slack-command")

    def _control_answer(self, request: SlashRequest) -> str:
        sessions = self.adapter.manager
        if request.name == "help":
            return self.adapter.render_text(sessions.runtime.current_directives().help_text())
        if request.name == "status":
            return self.adapter.render_text(sessions.status_text(None))
        return STOP_HINT

    async def _start_from_command(
        self, command: dict[str, Any], request: SlashRequest, respond: Respond
    ) -> None:
        adapter = self.adapter
        user = str(command["user_id"])
        channel = str(command["channel_id"])
        team = str(command.get("team_id") or adapter.identity.team_id)
        typed = str(command.get("command") or "")
        is_command = request.kind == "command"
        asked = f"/{request.name} {request.text}".strip() if is_command else request.text
        shown = escape(asked).replace("`", "'")
        root_text = f"🧵 <@{user}> asked for `{shown}`"
        try:
            root_ts = await adapter.post_root(channel, root_text)
        except SlackApiError as error:
            reason = error.response.get("error", "error")
            log.warning("cannot start %s in %s: %s", typed, channel, reason)
            await respond(
                text=f"I could not post in this channel ({reason}). "
                f"Invite me first: `/invite @{APP_COMMAND}`.",
                response_type="ephemeral",
            )
            return
        if command.get("user_name"):
            adapter.names.remember(user, str(command["user_name"]))
        chat_event = ChatEvent(
            kind=ChatEventKind.COMMAND if is_command else ChatEventKind.MESSAGE,
            thread=thread_key(team, channel, root_ts),
            user=user,
            text=request.text,
            event_id=f"slash:{command.get('trigger_id') or root_ts}",
            message_id=root_ts,
            mentions_bot=True,
            command=request.name if is_command else None,
            raw=command,
        )
        await adapter.deliver(chat_event)
