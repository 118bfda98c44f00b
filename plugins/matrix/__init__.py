"""The Matrix adapter: threadwright as a Matrix bot on matrix-nio.

A mention (``m.mentions``, a pill, or the bot's name at the start of the
message) starts a session answered in an ``m.thread`` rooted at the mention;
the answer grows through ``m.replace`` edits with HTML rendered from the
model's Markdown. Thread replies steer, ``stop`` or a ❌ reaction stops,
``!name args`` / ``/name args`` run ``.agent/commands``. The bot joins rooms
it is invited to by allowed users. Encryption is optional
(``matrix.encryption: true``).

Registered lazily: nio is imported only when ``matrix`` is enabled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot import hookimpl
from bot.config import Config


@hookimpl
def register_adapters(register: Callable[..., None], config: Config) -> None:
    def factory(host: Any) -> Any:
        from plugins.matrix.adapter import MatrixAdapter

        return MatrixAdapter(host)

    register("matrix", factory)
