"""``threadwright slack-manifest``: the Slack app manifest for this workspace's bot.

Paste the output into api.slack.com → *Create New App* → *From a manifest*.
It asks for what the adapter uses and nothing more: reading mentions, channel,
group and DM messages (thread replies are messages), reactions, posting and
editing its own messages, reacting, slash commands, user names, file uploads
for long output, and the thread status line. Socket Mode is on unless a
public request URL is given (HTTP mode). Every ``.agent/commands`` directive
becomes a slash command, beside the app's own ``/threadwright``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bot.config import Config
from bot.directives import DirectiveLoader, DirectiveSet
from plugins.slack.commands import APP_COMMAND, slash_names

BOT_SCOPES = (
    "app_mentions:read",
    "channels:history",
    "groups:history",
    "im:history",
    "mpim:history",
    "chat:write",
    "reactions:read",
    "reactions:write",
    "commands",
    "users:read",
    "files:write",
)
BOT_EVENTS = (
    "app_mention",
    "message.channels",
    "message.groups",
    "message.im",
    "message.mpim",
    "reaction_added",
)
DESCRIPTION_LIMIT = 2000
USAGE_HINT_LIMIT = 1000


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def slash_commands(directives: DirectiveSet, request_url: str | None) -> list[dict[str, Any]]:
    commands: list[dict[str, Any]] = [
        {
            "command": f"/{APP_COMMAND}",
            "description": "Give threadwright a task, or: help | status | stop",
            "usage_hint": "<task> | /command args | help | status | stop",
            "should_escape": False,
        }
    ]
    for name, directive_name in slash_names(directives).items():
        directive = directives.commands[directive_name]
        entry: dict[str, Any] = {
            "command": f"/{name}",
            "description": _clip(
                directive.description or f"Run the {directive.name} directive", DESCRIPTION_LIMIT
            ),
            "should_escape": False,
        }
        if directive.argument_hint:
            entry["usage_hint"] = _clip(directive.argument_hint, USAGE_HINT_LIMIT)
        commands.append(entry)
    if request_url:
        for entry in commands:
            entry["url"] = request_url
    return commands


def build_manifest(
    directives: DirectiveSet, *, name: str = "threadwright", request_url: str | None = None
) -> dict[str, Any]:
    """The manifest as a dict; ``request_url`` switches Socket Mode off (HTTP mode)."""
    events: dict[str, Any] = {"bot_events": list(BOT_EVENTS)}
    interactivity: dict[str, Any] = {"is_enabled": True}
    if request_url:
        events["request_url"] = request_url
        interactivity["request_url"] = request_url
    return {
        "_metadata": {"major_version": 1, "minor_version": 1},
        "display_information": {
            "name": name,
            "description": "A local-first coding agent that works in your threads",
            "background_color": "#2b2d31",
        },
        "features": {
            "app_home": {
                "home_tab_enabled": False,
                "messages_tab_enabled": True,
                "messages_tab_read_only_enabled": False,
            },
            "bot_user": {"display_name": name, "always_online": True},
            "slash_commands": slash_commands(directives, request_url),
        },
        "oauth_config": {"scopes": {"bot": list(BOT_SCOPES)}},
        "settings": {
            "event_subscriptions": events,
            "interactivity": interactivity,
            "org_deploy_enabled": False,
            "socket_mode_enabled": not request_url,
            "token_rotation_enabled": False,
        },
    }


def render_manifest(
    config: Config,
    *,
    name: str = "threadwright",
    request_url: str | None = None,
    as_json: bool = False,
) -> str:
    directives = DirectiveLoader(Path(config.workspace.root).resolve(), config.agent_dir).load()
    manifest = build_manifest(directives, name=name, request_url=request_url)
    if as_json:
        return json.dumps(manifest, indent=2, ensure_ascii=False)
    import yaml

    return yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True, width=100)
