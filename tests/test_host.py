"""The host's start-up: a missing adapter dependency is a clear error, not a traceback."""

from __future__ import annotations

import logging
import types
from pathlib import Path

import pytest

from bot import hookimpl
from bot.host import Host
from bot.plugins import make_plugin_manager
from bot.testing.harness import make_test_config


async def test_adapter_with_missing_sdk_names_the_extra(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plugin = types.ModuleType("tw_needs_sdk")

    def factory(host: object) -> object:
        raise ModuleNotFoundError("No module named 'fancy_sdk'", name="fancy_sdk")

    @hookimpl
    def register_adapters(register, config):  # type: ignore[no-untyped-def]
        register("fancy", factory)

    plugin.register_adapters = register_adapters  # type: ignore[attr-defined]
    workspace = tmp_path / "ws"
    workspace.mkdir()
    config = make_test_config(workspace, "http://127.0.0.1:9")
    plugins = make_plugin_manager(load_entrypoints=False, extra_plugins=[plugin])
    async with Host(config, plugins=plugins) as host:
        with caplog.at_level(logging.ERROR, logger="bot.host"):
            assert await host.run(["fancy"]) == 1
    assert "adapter fancy needs fancy_sdk" in caplog.text
    assert "pip install 'threadwright[fancy]'" in caplog.text
