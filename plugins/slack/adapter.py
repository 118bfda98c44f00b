"""The Slack adapter: slack-bolt's AsyncApp in, paced ``chat.update`` streaming out.

Start-up checks the tokens (a missing one is named in the error), asks
``auth.test`` who the bot is, registers the listeners
(:mod:`plugins.slack.listeners`) and connects in Socket Mode or HTTP mode
(:mod:`plugins.slack.connection`). Every Web API call goes to
``SLACK_API_URL`` through one pooled aiohttp session.

Outbound, a turn's reply is a :class:`plugins.slack.renderer.SlackReplyRenderer`
in the session's thread; notices, approval questions (with buttons) and
reactions are single calls. Two clients share the session: the streaming one
surfaces 429s to the streamer (which slows down), the other retries them after
``Retry-After`` for one-off posts that must simply arrive.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import aiohttp
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot.adapters import ChatAdapter, TurnRenderer
from bot.events import ChatEvent, ChatEventKind, ThreadKey
from bot.policy.redaction import redact
from bot.streaming import split_text
from plugins.slack.approvals import (
    ApprovalQuestions,
    Question,
    answered_blocks,
    content_blocks,
    fallback_text,
    outcome_line,
    question_blocks,
)
from plugins.slack.connection import Connection, HttpConnection, SocketModeConnection
from plugins.slack.formatting import markdown_to_mrkdwn
from plugins.slack.inbound import BotIdentity
from plugins.slack.listeners import SlackListeners
from plugins.slack.people import UserNames
from plugins.slack.renderer import SlackReplyRenderer
from plugins.slack.threads import ThreadIndex, channel_of
from plugins.slack.transport import DEFAULT_MAX_CHARS, SlackTransport

if TYPE_CHECKING:
    from bot.agent import AgentSession
    from bot.config import Config
    from bot.policy.approval_view import ApprovalView
    from bot.sessions import SessionManager

log = logging.getLogger(__name__)

WORKING_STATUS = "is working on it…"
STOP_WAIT_S = 5.0
# assistant.threads.setStatus errors meaning "not for this app": stop trying.
STATUS_UNAVAILABLE = frozenset(
    {"missing_scope", "not_allowed", "not_allowed_token_type", "unknown_method", "invalid_auth"}
)


class SlackSetupError(RuntimeError):
    """The Slack adapter cannot start; the message says what to set or fix."""


class SlackAdapter(ChatAdapter):
    name = "slack"
    approvals_in_thread = True

    def __init__(self, config: Config) -> None:
        self.config = config
        self.questions = ApprovalQuestions()
        self.connection: Connection | None = None
        self.app: AsyncApp | None = None
        self._manager: SessionManager | None = None
        self._identity: BotIdentity | None = None
        self._http: aiohttp.ClientSession | None = None
        self._client: AsyncWebClient | None = None
        self._patient: AsyncWebClient | None = None
        self._threads: ThreadIndex | None = None
        self._names: UserNames | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._status_available = True

    # --- wiring -----------------------------------------------------------------

    @property
    def manager(self) -> SessionManager:
        if self._manager is None:
            raise RuntimeError("the Slack adapter is not started")
        return self._manager

    @property
    def identity(self) -> BotIdentity:
        if self._identity is None:
            raise RuntimeError("the Slack adapter is not started")
        return self._identity

    @property
    def client(self) -> AsyncWebClient:
        """The client whose 429s reach the caller (streaming paces itself)."""
        if self._client is None:
            raise RuntimeError("the Slack adapter is not started")
        return self._client

    @property
    def patient_client(self) -> AsyncWebClient:
        """The client that waits out 429s (one-off posts)."""
        if self._patient is None:
            raise RuntimeError("the Slack adapter is not started")
        return self._patient

    @property
    def threads(self) -> ThreadIndex:
        if self._threads is None:
            raise RuntimeError("the Slack adapter is not started")
        return self._threads

    @property
    def names(self) -> UserNames:
        if self._names is None:
            raise RuntimeError("the Slack adapter is not started")
        return self._names

    def _credentials(self) -> tuple[str, str, str]:
        secrets, mode = self.config.secrets, self.config.slack.mode
        missing = []
        if not secrets.slack_bot_token:
            missing.append("SLACK_BOT_TOKEN (the xoxb- Bot User OAuth Token)")
        if mode == "socket" and not secrets.slack_app_token:
            missing.append("SLACK_APP_TOKEN (an xapp- app-level token with connections:write)")
        if mode == "http" and not secrets.slack_signing_secret:
            missing.append("SLACK_SIGNING_SECRET (Basic Information → Signing Secret)")
        if missing:
            raise SlackSetupError(
                f"Slack {mode} mode needs " + " and ".join(missing) + " in the environment; "
                "see docs/slack.md"
            )
        return (
            secrets.slack_bot_token or "",
            secrets.slack_app_token or "",
            secrets.slack_signing_secret or "",
        )

    async def start(self, sessions: SessionManager) -> None:
        bot_token, app_token, signing_secret = self._credentials()
        base_url = self.config.slack_api_url
        self._http = aiohttp.ClientSession()
        try:
            self._client = AsyncWebClient(token=bot_token, base_url=base_url, session=self._http)
            self._patient = AsyncWebClient(
                token=bot_token,
                base_url=base_url,
                session=self._http,
                retry_handlers=[
                    AsyncConnectionErrorRetryHandler(),
                    AsyncRateLimitErrorRetryHandler(max_retry_count=3),
                ],
            )
            self._identity = await self._whoami(self._client)
            self._threads = ThreadIndex(self._client)
            self._names = UserNames(self._client)
            self._manager = sessions
            sessions.register_adapter(self)
            self.app = AsyncApp(client=self._client, signing_secret=signing_secret or None)
            SlackListeners(self).register(self.app)
            if self.config.slack.mode == "http":
                self.connection = HttpConnection(self.app, self.config.slack.http_port)
            else:
                self.connection = SocketModeConnection(self.app, app_token)
            try:
                await self.connection.start()
            except SlackApiError as error:
                raise SlackSetupError(
                    "SLACK_APP_TOKEN was refused by Slack "
                    f"({error.response.get('error')}): it must be an xapp- token with "
                    "connections:write, and Socket Mode must be on"
                ) from None
        except BaseException:
            await self.stop()
            raise
        log.info(
            "Slack: connected as <@%s> in team %s (%s mode)",
            self.identity.user_id,
            self.identity.team_id,
            self.config.slack.mode,
        )

    async def _whoami(self, client: AsyncWebClient) -> BotIdentity:
        try:
            auth = await client.auth_test()
        except SlackApiError as error:
            raise SlackSetupError(
                f"SLACK_BOT_TOKEN was refused by Slack ({error.response.get('error')}); "
                "use the Bot User OAuth Token (xoxb-) of the installed app"
            ) from None
        except aiohttp.ClientError as error:
            raise SlackSetupError(
                f"cannot reach the Slack Web API at {self.config.slack_api_url} ({error}); "
                "check SLACK_API_URL and the network"
            ) from None
        return BotIdentity(
            user_id=str(auth.get("user_id") or ""),
            bot_id=str(auth.get("bot_id") or ""),
            team_id=str(auth.get("team_id") or ""),
        )

    async def stop(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            try:
                await connection.stop()
            except Exception:
                log.exception("closing the Slack connection failed")
        if self._tasks:
            _, late = await asyncio.wait(list(self._tasks), timeout=STOP_WAIT_S)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        http, self._http = self._http, None
        if http is not None:
            await http.close()

    @property
    def connected(self) -> bool:
        return self.connection is not None and self.connection.connected

    @property
    def deliveries_in_flight(self) -> int:
        """Events received but not yet fully handed to the host (tests wait for 0)."""
        return len(self._tasks)

    # --- inbound ------------------------------------------------------------------

    def spawn(self, work: Coroutine[Any, Any, Any], name: str) -> None:
        """Run ``work`` in a task the adapter keeps (and waits for on stop)."""
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("Slack task %s failed", task.get_name(), exc_info=task.exception())

    async def deliver(self, event: ChatEvent) -> None:
        """Hand one event to the host, with the author's display name."""
        if event.user_name is None:
            event = dataclasses.replace(event, user_name=await self.names.name_of(event.user))
        await self.manager.handle(event)

    async def deliver_answer(self, event: ChatEvent) -> None:
        """Deliver a reaction or click; if it settled an approval question, say so there."""
        channel, target = channel_of(event.thread), event.target_message_id or ""
        question = self.questions.get(channel, target)
        approvals = self.manager.approvals
        was_pending = question is not None and approvals.is_pending(str(event.thread), target)
        await self.deliver(event)
        if question is None:
            return
        choice = (
            event.reaction if event.kind is ChatEventKind.REACTION else event.action_value
        ) or ""
        if was_pending and approvals.is_pending(str(event.thread), target):
            if event.kind is ChatEventKind.ACTION:
                await self._tell(event, "Only an approver can answer this question.")
            return
        if not was_pending and event.kind is not ChatEventKind.ACTION:
            return
        outcome = outcome_line(choice, event.user) if was_pending else outcome_line("", "")
        self.questions.settle(channel, target)
        try:
            await self.patient_client.chat_update(
                channel=channel,
                ts=target,
                text=f"{question.text}\n{outcome}",
                blocks=answered_blocks(question.blocks, outcome),
            )
        except SlackApiError as error:
            log.warning("could not mark the approval question answered: %s", error.response)

    async def _tell(self, event: ChatEvent, text: str) -> None:
        try:
            await self.client.chat_postEphemeral(
                channel=channel_of(event.thread),
                user=event.user,
                text=text,
                thread_ts=event.thread.thread,
            )
        except SlackApiError as error:
            log.info("could not tell %s: %s", event.user, error.response.get("error"))

    # --- outbound -----------------------------------------------------------------

    def render_text(self, markdown: str) -> str:
        """Markdown → mrkdwn, with secrets masked: the last step before Slack."""
        return markdown_to_mrkdwn(redact(markdown))

    def renderer(self, session: AgentSession, trigger: ChatEvent | None) -> TurnRenderer:
        thread = session.thread
        channel = channel_of(thread)

        def remember(ts: str) -> None:
            self.threads.remember(channel, ts, thread.thread)

        async def upload(filename: str, title: str, content: str) -> None:
            await self.patient_client.files_upload_v2(
                channel=channel,
                thread_ts=thread.thread,
                content=redact(content),
                filename=filename,
                title=title,
            )

        transport = SlackTransport(
            self.client, channel, thread.thread, render=self.render_text, on_posted=remember
        )
        return SlackReplyRenderer(
            transport, interval=self.config.slack.edit_interval, upload=upload
        )

    async def post_message(self, thread: ThreadKey, text: str) -> str:
        channel = channel_of(thread)
        first = ""
        for chunk in split_text(text, DEFAULT_MAX_CHARS) or [text]:
            ts = await self._post(channel, self.render_text(chunk), thread.thread)
            first = first or ts
        return first

    async def post_file(self, thread: ThreadKey, filename: str, content: str, comment: str) -> None:
        """A text file in the thread (a long ``/diff``), as a Slack snippet."""
        await self.patient_client.files_upload_v2(
            channel=channel_of(thread),
            thread_ts=thread.thread,
            content=redact(content),
            filename=filename,
            title=filename,
            initial_comment=self.render_text(comment),
        )

    async def post_root(self, channel: str, mrkdwn: str) -> str:
        """A new top-level message (a slash command's task); its ts names the thread."""
        return await self._post(channel, mrkdwn, None)

    async def post_approval(self, thread: ThreadKey, view: ApprovalView) -> str:
        """The whole text of a long call as a snippet first, then the question."""
        channel = channel_of(thread)
        if view.clipped and not view.whole_too_long:
            await self.post_file(
                thread, view.filename, view.whole, "The whole call awaiting approval:"
            )
        text = fallback_text(view)
        ts = await self._post(channel, text, thread.thread, blocks=question_blocks(view))
        self.questions.add(Question(channel, ts, text, content_blocks(view)))
        return ts

    async def _post(
        self,
        channel: str,
        mrkdwn: str,
        thread_ts: str | None,
        blocks: list[dict[str, Any]] | None = None,
    ) -> str:
        response = await self.patient_client.chat_postMessage(
            channel=channel,
            thread_ts=thread_ts,
            text=mrkdwn,
            blocks=blocks,
            unfurl_links=False,
            unfurl_media=False,
        )
        ts = str(response["ts"])
        self.threads.remember(channel, ts, thread_ts)
        return ts

    async def react(self, thread: ThreadKey, message_id: str, meaning: str) -> None:
        name = self.REACTIONS.get(meaning)
        if name is None or not message_id:
            return
        channel = channel_of(thread)
        try:
            await self.client.reactions_add(channel=channel, timestamp=message_id, name=name)
        except SlackApiError as error:
            if error.response.get("error") != "already_reacted":
                log.warning("could not react :%s: in %s: %s", name, channel, error.response)
        if meaning == "working" and self._status_available:
            self.spawn(self._show_working(thread), "slack-status")

    async def _show_working(self, thread: ThreadKey) -> None:
        """Slack's "is working on it…" under the thread; it clears when the bot replies."""
        try:
            await self.client.assistant_threads_setStatus(
                channel_id=channel_of(thread), thread_ts=thread.thread, status=WORKING_STATUS
            )
        except SlackApiError as error:
            if error.response.get("error") in STATUS_UNAVAILABLE:
                self._status_available = False
            log.debug("assistant.threads.setStatus: %s", error.response.get("error"))
