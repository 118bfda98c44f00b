"""The Slack adapter plugin: ``adapters: [slack]`` in the config.

Registered through ``register_adapters`` with a lazy factory, so slack-bolt
and slack_sdk are imported only when Slack is actually enabled. Set-up (app
manifest, tokens, HTTP mode) is in ``docs/slack.md``; ``threadwright
slack-manifest`` prints the manifest.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot import hookimpl
from bot.config import Config


@hookimpl
def register_adapters(register: Callable[..., None], config: Config) -> None:
    def factory(host: Any) -> Any:
        from plugins.slack.adapter import SlackAdapter

        return SlackAdapter(host.config)

    register("slack", factory)
