"""Running threadwright's Matrix bot against the test Synapse, for the Matrix journey tests.

:func:`matrix_bot` builds a real :class:`bot.host.Host` (entry points off,
optional extra plugins), creates the ``matrix`` adapter through the plugin hook,
logs it in with a password as an operator would (``MATRIX_*`` environment) and
yields it running; leaving the block shuts the host down as ``threadwright run``
does. :func:`bot_thread` is a room with the bot in it, made the way a person
does: create, invite, wait for the bot to join.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.config import Config, load_config
from bot.host import Host
from bot.plugins import make_plugin_manager
from plugins.matrix.adapter import MatrixAdapter
from tests.matrix_harness.human import EventDict, HumanClient, relation
from tests.matrix_harness.synapse import RegisteredUser, SynapseServer

EMPTY_CONFIG = Path(__file__).resolve().parents[1] / "bot" / "testing" / "empty_config.yaml"

# Fresh users get random suffixes (matrix_user fixture); access rules are globs.
ACCESS = {
    "allowed_users": ["@alice-*:localhost", "@bob-*:localhost"],
    "approvers": ["@carol-*:localhost"],
    "approval_timeout": 20,
}


def bot_config(
    server: SynapseServer,
    bot_user: RegisteredUser,
    workspace: Path,
    model_url: str,
    store_path: Path,
    **overrides: Any,
) -> Config:
    data: dict[str, Any] = {
        "workspace": {"root": str(workspace)},
        "store": {"path": str(workspace.parent / f"{workspace.name}-store.db")},
        "routing": {"local_model": "qwen3:4b", "request_timeout": 30},
        "access": dict(ACCESS),
        "tools": {"bash": {"allowed_commands": ["ls", "cat", "echo", "sleep", "python"]}},
        "matrix": {"store_path": str(store_path), "edit_interval": 0.3},
        "adapters": ["matrix"],
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    env = {
        "OLLAMA_HOST": model_url,
        "MATRIX_HOMESERVER": server.url,
        "MATRIX_USER_ID": bot_user.user_id,
        "MATRIX_PASSWORD": bot_user.password,
    }
    return load_config(EMPTY_CONFIG, env=env, overrides=data)


@dataclass
class RunningBot:
    host: Host
    adapter: MatrixAdapter
    config: Config

    @property
    def user_id(self) -> str:
        return self.adapter.user_id


@asynccontextmanager
async def matrix_bot(
    config: Config, *, extra_plugins: tuple[object, ...] = ()
) -> AsyncIterator[RunningBot]:
    plugins = make_plugin_manager(load_entrypoints=False, extra_plugins=extra_plugins)
    async with Host(config, plugins=plugins) as host:
        adapter = host.create_adapter("matrix")
        assert isinstance(adapter, MatrixAdapter)
        try:
            await adapter.start(host.sessions)
            yield RunningBot(host, adapter, config)
        finally:
            await host.shutdown()


async def room_with_bot(
    person: HumanClient, bot: RunningBot, *, encrypted: bool = False, invite: tuple[str, ...] = ()
) -> str:
    room_id = await person.create_room(
        name="work", invite=[bot.user_id, *invite], encrypted=encrypted
    )
    await person.wait_for_join(room_id, bot.user_id, timeout=15)
    return room_id


def is_bot_reply(bot: RunningBot, room_id: str, root: str) -> Any:
    def check(event: EventDict) -> bool:
        return (
            event.get("room_id") == room_id
            and event.get("sender") == bot.user_id
            and event.get("type") == "m.room.message"
            and relation(event).get("rel_type") == "m.thread"
            and relation(event).get("event_id") == root
        )

    return check


FOOTER_MARK = "— _"


async def final_reply(
    person: HumanClient,
    bot: RunningBot,
    room_id: str,
    root: str,
    *,
    skip: Collection[str] = (),
    within: float = 20.0,
) -> tuple[str, str]:
    """Wait until the bot's answer in the thread shows its footer; ``(event id, text)``.

    ``skip`` names earlier answers in the thread, to wait for the next one.
    """
    answer = is_answer(bot, room_id, root)
    reply = await person.wait_for(lambda e: answer(e) and e["event_id"] not in skip, within)
    reply_id = reply["event_id"]

    def shows_footer(event: EventDict) -> bool:
        if event["event_id"] == reply_id:
            return FOOTER_MARK in event["content"].get("body", "")
        return (
            relation(event).get("rel_type") == "m.replace"
            and relation(event).get("event_id") == reply_id
            and FOOTER_MARK in event["content"].get("m.new_content", {}).get("body", "")
        )

    await person.wait_for(shows_footer, within)
    return reply_id, await person.latest_text(room_id, reply_id)


def is_answer(bot: RunningBot, room_id: str, root: str) -> Any:
    """The bot's streamed answer (an m.text thread reply that is not an approval question)."""
    in_thread = is_bot_reply(bot, room_id, root)

    def check(event: EventDict) -> bool:
        content = event.get("content", {})
        return (
            in_thread(event)
            and content.get("msgtype") == "m.text"
            and not content.get("body", "").startswith("🔐")
        )

    return check


def reactions_on(person: HumanClient, sender: str, target: str) -> list[str]:
    return [
        relation(e)["key"]
        for e in person.events
        if e.get("type") == "m.reaction"
        and e.get("sender") == sender
        and relation(e).get("event_id") == target
    ]
