"""The tool registry: every tool registered by plugins, by unique name."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator
from typing import TYPE_CHECKING, Any

from bot.tools.base import Tool

if TYPE_CHECKING:
    from bot.config import Config
    from bot.plugins import PluginHost

log = logging.getLogger(__name__)


class ToolRegistry:
    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}

    def add(self, item: Any, *, plugin: str = "") -> Tool | None:
        """Add a tool (a :class:`Tool` or an async function). A name clash keeps the first."""
        tool = item if isinstance(item, Tool) else Tool.from_function(item)
        tool.plugin = plugin
        existing = self._tools.get(tool.name)
        if existing is not None:
            log.error(
                "tool %r from plugin %r clashes with the one from plugin %r; keeping the first",
                tool.name,
                plugin,
                existing.plugin,
            )
            return None
        self._tools[tool.name] = tool
        return tool

    @classmethod
    def from_plugins(cls, host: PluginHost, config: Config) -> ToolRegistry:
        registry = cls()
        disabled = set(config.tools.disabled)
        for impl in host.implementations("register_tools"):
            plugin = impl.plugin_name

            def register(item: Any, _plugin: str = plugin) -> None:
                name = item.name if isinstance(item, Tool) else getattr(item, "__name__", "")
                if name in disabled:
                    return
                try:
                    registry.add(item, plugin=_plugin)
                except Exception as exc:  # a malformed tool is the plugin's bug, not ours
                    host.record_failure(_plugin, "register_tools", exc)

            try:
                impl.function(register=register, config=config)
            except Exception as exc:
                host.record_failure(plugin, "register_tools", exc)
        return registry

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def names(self) -> list[str]:
        return sorted(self._tools)

    def schemas(self, allowed: Collection[str] | None = None) -> list[dict[str, Any]]:
        return [t.schema() for n, t in self._tools.items() if allowed is None or n in allowed]

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)
