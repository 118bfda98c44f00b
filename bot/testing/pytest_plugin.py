"""Pytest fixtures for testing threadwright plugins against a scripted model.

Registered through the ``pytest11`` entry point, so installing threadwright
makes ``scripted_ollama`` available everywhere; it stays import-light (the
server module loads only when a test asks for the fixture) because pytest
imports this module in every run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from bot.testing.ollama_server import ScriptedOllama

try:
    import pytest_asyncio

    # pytest_asyncio.fixture works in both its strict and auto modes.
    _async_fixture: Any = pytest_asyncio.fixture
except ImportError:  # without pytest-asyncio no async test could use it anyway
    _async_fixture = pytest.fixture


@_async_fixture
async def scripted_ollama() -> AsyncIterator[ScriptedOllama]:
    """A started :class:`~bot.testing.ScriptedOllama` (any model name is known);
    script it with ``.script(Reply(...))`` and point a client at ``.url``."""
    from bot.testing.ollama_server import ScriptedOllama

    server = ScriptedOllama()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
