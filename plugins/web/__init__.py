"""The browser view: ``adapters: [web]`` serves a single-page terminal over SSE.

Registered like any other adapter, with a lazy factory (aiohttp and the page
load only when ``web`` is enabled). The ``session_event`` hook lets running
web adapters watch sessions of every platform; it imports nothing and costs
one loop over an (almost always empty) list when no browser view runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot import hookimpl
from bot.config import Config

# Callbacks of started web adapters: observe(session, event).
OBSERVERS: list[Callable[[Any, Any], None]] = []


@hookimpl
def register_adapters(register: Callable[..., None], config: Config) -> None:
    def factory(host: Any) -> Any:
        from plugins.web.adapter import WebAdapter

        return WebAdapter(host.config)

    register("web", factory)


@hookimpl
def session_event(session: Any, event: Any) -> None:
    for observe in list(OBSERVERS):
        observe(session, event)
