"""Test harness for threadwright and its plugin authors.

:class:`ScriptedOllama` is a loopback server speaking Ollama's native and
OpenAI-compatible APIs with scripted :class:`Reply` answers; the pytest plugin
(``bot.testing.pytest_plugin``) offers it as the ``scripted_ollama`` fixture.

Exports load lazily: pytest imports this package for the plugin in every run,
and aiohttp should load only when a test uses the server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.testing.ollama_server import RecordedRequest, Reply, ScriptedOllama, tool_call

__all__ = ["RecordedRequest", "Reply", "ScriptedOllama", "tool_call"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from bot.testing import ollama_server

        return getattr(ollama_server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
