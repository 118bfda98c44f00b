"""A threadwright Slack bot under test: the real host and slack-bolt against the emulator.

``slack_bot(...)`` starts the Slack emulator's workspace (alice and bob and
carol allowed, alice the approver, mallory not allowed), a real
:class:`bot.host.Host` with the Slack adapter created through the plugin hook
and connected over Socket Mode, and the scripted Ollama server as the model.
Tests play the people with the emulator and read what the bot did from it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.config import Config, Secrets, merge_settings
from bot.host import Host
from bot.plugins import make_plugin_manager
from bot.store.base import SessionRecord, open_store
from bot.testing import ScriptedOllama, tool_call
from bot.testing.harness import make_test_config
from plugins.slack.adapter import SlackAdapter
from tests.emulators.slack import SlackEmulator, SlackMessage

CHANNEL = "C1"
ALICE, BOB, CAROL, MALLORY = "U1", "U2", "U3", "U9"
FOOTER = re.compile(r"— _.*\d+ steps? · .*tokens · [\d.]+s_")
CURSOR = "▍"
SIGNING_SECRET = "http-secret"


call = tool_call  # the shared helper, under the short name these tests use


def user_messages(request: dict[str, Any]) -> list[str]:
    return [str(m["content"]) for m in request["messages"] if m["role"] == "user"]


def slack_config(tmp_path: Path, ollama_url: str, emu: SlackEmulator, **overrides: Any) -> Config:
    workspace = tmp_path / "ws"
    workspace.mkdir(exist_ok=True)
    settings: dict[str, Any] = {
        "access": {"allowed_users": [ALICE, BOB, CAROL], "approvers": [ALICE]},
        "slack": {"edit_interval": 0.2},
        "adapters": ["slack"],
    }
    config = make_test_config(workspace, ollama_url, **merge_settings(settings, overrides))
    config.slack_api_url = emu.api_url
    config.secrets = Secrets(
        slack_bot_token=emu.bot_token,
        slack_app_token=emu.app_token,
        slack_signing_secret=SIGNING_SECRET,
    )
    return config


@asynccontextmanager
async def slack_workspace(ack_timeout: float = 3.0) -> AsyncIterator[SlackEmulator]:
    async with SlackEmulator(ack_timeout=ack_timeout) as emu:
        emu.add_user(ALICE, "alice")
        emu.add_user(BOB, "bob")
        emu.add_user(CAROL, "carol")
        emu.add_user(MALLORY, "mallory")
        emu.add_channel(CHANNEL, "dev", members=[ALICE, BOB, CAROL, MALLORY])
        yield emu


@dataclass
class SlackBot:
    emu: SlackEmulator
    ollama: ScriptedOllama
    host: Host
    adapter: SlackAdapter
    workspace: Path

    async def mention(self, text: str, user: str = ALICE, thread_ts: str | None = None) -> str:
        return await self.emu.user_posts(
            CHANNEL, user, f"<@{self.emu.bot_user_id}> {text}", thread_ts=thread_ts
        )

    async def say(self, text: str, thread_ts: str, user: str = ALICE) -> str:
        return await self.emu.user_posts(CHANNEL, user, text, thread_ts=thread_ts)

    def replies(self, root: str) -> list[SlackMessage]:
        return self.emu.bot_replies(CHANNEL, root)

    def text(self, root: str) -> str:
        return "\n".join(m.text for m in self.replies(root))

    def finished_replies(self, root: str) -> list[SlackMessage]:
        """Bot replies in the thread whose text ends with a footer (finished turns)."""
        return [m for m in self.replies(root) if FOOTER.search(m.text) and CURSOR not in m.text]

    async def wait_finished(self, root: str, count: int = 1, timeout: float = 10.0) -> str:  # noqa: ASYNC109
        """Wait until ``count`` turns finished in the thread; return all bot text there."""
        await self.emu.wait_for(
            lambda: len(self.finished_replies(root)) >= count and not self.running(),
            timeout=timeout,
        )
        return self.text(root)

    async def settled(self, quiet: float = 0.15) -> None:
        """Every envelope is acked and handed to the host, no turn runs, and nothing new
        was sent for ``quiet`` seconds."""
        emu = self.emu
        while True:
            await emu.wait_for(
                lambda: (
                    {e.envelope["envelope_id"] for e in emu.envelopes}
                    <= {a.envelope_id for a in emu.acks}
                    and self.adapter.deliveries_in_flight == 0
                )
            )
            sent = len(emu.envelopes)
            await asyncio.sleep(quiet)
            if len(emu.envelopes) == sent and self.adapter.deliveries_in_flight == 0:
                return

    def running(self) -> bool:
        return bool(self.host.sessions.active_sessions())

    def reactions(self, ts: str) -> dict[str, list[str]]:
        return self.emu.reactions(CHANNEL, ts)


@asynccontextmanager
async def slack_bot(
    emu: SlackEmulator,
    ollama: ScriptedOllama,
    tmp_path: Path,
    *,
    extra_plugins: tuple[object, ...] = (),
    **overrides: Any,
) -> AsyncIterator[SlackBot]:
    config = slack_config(tmp_path, ollama.url, emu, **overrides)
    plugins = make_plugin_manager(load_entrypoints=False, extra_plugins=extra_plugins)
    async with Host(config, plugins=plugins) as host:
        adapter = host.create_adapter("slack")
        assert isinstance(adapter, SlackAdapter)
        await adapter.start(host.sessions)
        try:
            yield SlackBot(emu, ollama, host, adapter, config.workspace_path())
        finally:
            await host.shutdown()


async def stored_sessions(tmp_path: Path) -> list[SessionRecord]:
    """The sessions the bot stored (the store path make_test_config picks)."""
    store = await open_store(tmp_path / "ws-store.db")
    try:
        return await store.list_sessions(limit=100)
    finally:
        await store.close()


async def settled(bot: SlackBot) -> None:
    """Everything sent so far was handled and no turn is running."""
    await bot.settled()
    await bot.emu.wait_for(lambda: not bot.running())
