"""The think tool: a scratchpad outside the main history."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bot.config import Config, load_config
from bot.tools.base import Tool, ToolContext
from plugins.tools import think as think_plugin

THINK = Tool.from_function(think_plugin.think)


def make_config(tmp_path: Path, **reasoning: Any) -> Config:
    file = tmp_path / "agent_config.yaml"
    file.write_text("{}\n")
    overrides = {"tools": {"reasoning": reasoning}} if reasoning else None
    return load_config(file, env={}, overrides=overrides)


def workspace(tmp_path: Path) -> Path:
    return Path(os.path.realpath(tmp_path))


async def test_think_appends_to_the_scratchpad(tmp_path: Path) -> None:
    ctx = ToolContext(workspace=workspace(tmp_path), config=make_config(tmp_path))
    first = await THINK(ctx, {"thought": "read the failing test first"})
    second = await THINK(ctx, {"thought": "then fix the parser"})
    assert first.ok is True and first.stdout == "noted"
    assert second.for_model() == "noted"
    assert ctx.scratchpad == ["read the failing test first", "then fix the parser"]


async def test_long_thoughts_are_cut_with_a_marker(tmp_path: Path) -> None:
    config = make_config(tmp_path, max_trace_length=10)
    ctx = ToolContext(workspace=workspace(tmp_path), config=config)
    result = await THINK(ctx, {"thought": "0123456789" + "x" * 1234})
    assert result.ok is True and result.truncated is True
    assert ctx.scratchpad == ["0123456789 … [1,234 characters cut]"]


async def test_empty_thought_is_refused(tmp_path: Path) -> None:
    ctx = ToolContext(workspace=workspace(tmp_path), config=make_config(tmp_path))
    result = await THINK(ctx, {"thought": "   "})
    assert result.ok is False and ctx.scratchpad == []


def test_register_tools_depends_on_scratchpad_enabled(tmp_path: Path) -> None:
    registered: list[Any] = []
    think_plugin.register_tools(registered.append, make_config(tmp_path))
    assert [fn.__name__ for fn in registered] == ["think"]
    assert Tool.from_function(registered[0]).parameters["required"] == ["thought"]
    disabled: list[Any] = []
    think_plugin.register_tools(disabled.append, make_config(tmp_path, scratchpad_enabled=False))
    assert disabled == []
