"""The console adapter: ``threadwright chat`` in a terminal, one thread.

Registered like any other adapter. The REPL reads lines without blocking the
loop; a line typed while the agent works becomes steering; Ctrl-C stops the
running step (twice at the prompt exits); approvals are a y/n prompt.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot import hookimpl
from bot.config import Config


@hookimpl
def register_adapters(register: Callable[..., None], config: Config) -> None:
    def factory(host: Any) -> Any:
        from plugins.console.adapter import ConsoleAdapter

        return ConsoleAdapter(host)

    register("console", factory)
