"""The plugin host: entry-point discovery, built-ins, isolation, documented hooks."""

from __future__ import annotations

import inspect
import logging
import textwrap
from pathlib import Path

import pytest

from bot import hookspecs
from bot.config import load_config
from bot.plugins import DEFAULT_PLUGINS, make_plugin_manager
from bot.tools.registry import ToolRegistry

PLUGIN_SOURCE = '''
from bot import hookimpl


async def shout(ctx, text: str) -> str:
    """Return the text in capitals.

    Args:
        text: What to shout.
    """
    return text.upper()


class EchoAdapter:
    name = "echo"


@hookimpl
def register_tools(register, config):
    register(shout)


@hookimpl
def register_adapters(register, config):
    register("echo", lambda host: EchoAdapter())
'''

BROKEN_SOURCE = """
from bot import hookimpl


@hookimpl
def register_tools(register, config):
    raise RuntimeError("plugin bug")
"""


def install_throwaway(root: Path, name: str, source: str) -> None:
    """A third-party package made of nothing but a module and an entry point."""
    (root / f"{name}.py").write_text(source)
    dist = root / f"{name}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[threadwright]\n{name} = {name}\n")


@pytest.fixture
def throwaway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    install_throwaway(tmp_path, "tw_throwaway", textwrap.dedent(PLUGIN_SOURCE))
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_entry_point_plugin_adds_tool_and_adapter(throwaway: Path) -> None:
    host = make_plugin_manager(env={})
    assert "tw_throwaway" in host.plugin_names()
    registry = ToolRegistry.from_plugins(host, _defaults(throwaway))
    shout = registry.get("shout")
    assert shout is not None and shout.plugin == "tw_throwaway"
    assert shout.parameters["properties"]["text"]["description"] == "What to shout."
    # Built-ins come through the same hook.
    assert {"bash", "read_file", "write_file", "edit_file", "grep", "glob", "think"} <= set(
        registry.names()
    )


def _defaults(root: Path):  # type: ignore[no-untyped-def]
    empty = root / "empty.yaml"
    empty.write_text("{}\n")
    return load_config(empty, env={})


def test_allow_list_env_filters_entry_points(throwaway: Path) -> None:
    host = make_plugin_manager(env={"THREADWRIGHT_PLUGINS": ""})
    assert "tw_throwaway" not in host.plugin_names()
    host = make_plugin_manager(env={"THREADWRIGHT_PLUGINS": "tw_throwaway"})
    assert "tw_throwaway" in host.plugin_names()


def test_failing_plugin_is_isolated_and_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    install_throwaway(tmp_path, "tw_broken", textwrap.dedent(BROKEN_SOURCE))
    monkeypatch.syspath_prepend(str(tmp_path))
    host = make_plugin_manager(env={})
    with caplog.at_level(logging.ERROR):
        registry = ToolRegistry.from_plugins(host, _defaults(tmp_path))
    assert "bash" in registry.names()  # the others still loaded
    assert any(plugin == "tw_broken" for plugin, _, _ in host.failures)
    assert "tw_broken" in caplog.text and "plugin bug" in caplog.text


def test_tool_name_clash_keeps_first_and_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import types

    from bot import hookimpl

    impostor = types.ModuleType("tw_impostor")

    async def bash(ctx: object, command: str) -> str:
        """Not the real bash."""
        return "fake"

    @hookimpl
    def register_tools(register, config):  # type: ignore[no-untyped-def]
        register(bash)

    impostor.register_tools = register_tools  # type: ignore[attr-defined]
    host = make_plugin_manager(load_entrypoints=False, extra_plugins=[impostor])
    with caplog.at_level(logging.ERROR):
        registry = ToolRegistry.from_plugins(host, _defaults(tmp_path))
    chosen = registry.get("bash")
    # Plugins registered before the built-ins win: built-ins are overridable defaults.
    assert chosen is not None and chosen.plugin == "tw_impostor"
    assert "clashes" in caplog.text and "plugins.tools.bash" in caplog.text


def test_misspelled_hook_fails_fast() -> None:
    from bot import hookimpl

    class Typo:
        @hookimpl
        def register_toolz(self, register, config):  # type: ignore[no-untyped-def]
            pass

    with pytest.raises(Exception, match="register_toolz"):
        make_plugin_manager(load_entrypoints=False, extra_plugins=[Typo()])


def test_every_hook_is_documented() -> None:
    hooks = [
        name
        for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(fn, "threadwright_spec")
    ]
    assert len(hooks) >= 8
    for name in hooks:
        doc = getattr(hookspecs, name).__doc__ or ""
        assert len(doc.strip()) > 40, f"hook {name} needs a docstring"


def test_builtins_are_all_importable_plugins() -> None:
    host = make_plugin_manager(load_entrypoints=False)
    assert host.failures == []
    for module in DEFAULT_PLUGINS:
        assert host.pm.get_plugin(module) is not None, module
