"""The plugin host: a pluggy PluginManager built by a factory, with failure isolation.

Entry-point plugins (group ``threadwright``) load first, then the built-ins in
:data:`DEFAULT_PLUGINS` that are not already registered (an installed
threadwright exposes its built-ins as entry points too). Hooks are called one
implementation at a time through :meth:`PluginHost.call_each`, so a plugin
that raises is logged with its name and skipped instead of taking the host
down.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pluggy

from bot import PROJECT_NAME, hookspecs

log = logging.getLogger(__name__)

DEFAULT_PLUGINS: tuple[str, ...] = (
    "plugins.tools.bash",
    "plugins.tools.files",
    "plugins.tools.search",
    "plugins.tools.think",
    "plugins.tools.directives",
    "plugins.console",
    "plugins.policy",
    "plugins.audit",
    "plugins.web",
    "plugins.observability",
    "plugins.slack",
    "plugins.matrix",
    "bot.models.providers",
)

_BUILTIN_NAMES = frozenset(DEFAULT_PLUGINS)

# Comma-separated entry-point names to load; unset loads all, "" loads none.
ALLOW_ENV = "THREADWRIGHT_PLUGINS"


async def await_me_maybe(value: Any) -> Any:
    """Await ``value`` if it is awaitable: pluggy hooks may be sync or async."""
    if inspect.isawaitable(value):
        return await value
    return value


@dataclass(slots=True)
class HookResult:
    plugin: str
    value: Any


class PluginHost:
    """The PluginManager plus the host's way of calling it safely."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self.failures: list[tuple[str, str, str]] = []  # (plugin, hook, error)

    def plugin_names(self) -> list[str]:
        return sorted(name for name, _ in self.pm.list_name_plugin() if name)

    def implementations(self, hook_name: str) -> list[Any]:
        """A hook's implementations in calling order: third-party plugins before
        built-ins (built-ins are overridable defaults), otherwise as pluggy
        would call them (tryfirst first, trylast last, later-registered first)."""
        # On the per-token path (session_event): keep it to one pass, no new sets.
        impls = getattr(self.pm.hook, hook_name).get_hookimpls()
        third_party = [i for i in reversed(impls) if i.plugin_name not in _BUILTIN_NAMES]
        if len(third_party) == len(impls):
            return third_party
        return third_party + [i for i in reversed(impls) if i.plugin_name in _BUILTIN_NAMES]

    def call_each(self, hook_name: str, **kwargs: Any) -> list[HookResult]:
        """Call every implementation of a hook; a raising plugin is logged and skipped."""
        results: list[HookResult] = []
        for impl in self.implementations(hook_name):
            try:
                args = {name: kwargs[name] for name in impl.argnames}
                value = impl.function(**args)
            except Exception as exc:
                self.record_failure(impl.plugin_name, hook_name, exc)
                continue
            results.append(HookResult(impl.plugin_name, value))
        return results

    async def acall_each(self, hook_name: str, **kwargs: Any) -> list[HookResult]:
        """Like :meth:`call_each`, awaiting async implementations; failures isolated."""
        results: list[HookResult] = []
        for item in self.call_each(hook_name, **kwargs):
            try:
                value = await await_me_maybe(item.value)
            except Exception as exc:
                self.record_failure(item.plugin, hook_name, exc)
                continue
            results.append(HookResult(item.plugin, value))
        return results

    def record_failure(self, plugin: str, hook: str, exc: BaseException) -> None:
        log.error(
            "plugin %r failed in hook %s: %s: %s",
            plugin,
            hook,
            type(exc).__name__,
            exc,
            exc_info=exc,
        )
        self.failures.append((plugin, hook, f"{type(exc).__name__}: {exc}"))


def make_plugin_manager(
    *,
    load_entrypoints: bool = True,
    builtins: Iterable[str] = DEFAULT_PLUGINS,
    extra_plugins: Iterable[object] = (),
    env: dict[str, str] | None = None,
) -> PluginHost:
    """Build the plugin host. Never called at import time.

    ``THREADWRIGHT_PLUGINS`` (comma-separated entry-point names) restricts
    which entry-point plugins load; set it to an empty string to load none.
    A built-in that fails to import is logged and skipped.
    """
    env = dict(os.environ) if env is None else env
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    host = PluginHost(pm)
    if load_entrypoints:
        _load_entrypoints(host, env.get(ALLOW_ENV))
    for plugin in extra_plugins:
        pm.register(plugin, name=getattr(plugin, "__name__", None))
    for module_name in builtins:
        if pm.get_plugin(module_name) is not None:
            continue
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            host.record_failure(module_name, "import", exc)
            continue
        if not pm.is_registered(module):
            pm.register(module, name=module_name)
    pm.check_pending()
    return host


def _load_entrypoints(host: PluginHost, allow: str | None) -> None:
    from importlib.metadata import entry_points

    allowed = None if allow is None else {n.strip() for n in allow.split(",") if n.strip()}
    for ep in entry_points(group=PROJECT_NAME):
        if allowed is not None and ep.name not in allowed:
            continue
        try:
            plugin = ep.load()
        except Exception as exc:
            host.record_failure(ep.name, "load", exc)
            continue
        if host.pm.is_registered(plugin):
            continue
        # Register under the module's dotted name so built-ins exposed as entry
        # points are recognised and not registered twice.
        name = getattr(plugin, "__name__", ep.name)
        if host.pm.get_plugin(name) is not None:
            continue
        try:
            host.pm.register(plugin, name=name)
        except Exception as exc:
            host.record_failure(ep.name, "register", exc)
