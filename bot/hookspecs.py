"""The plugin contract: every hook threadwright calls, documented.

A plugin is a module or object with functions decorated by
``bot.hookimpl`` whose names match the hooks below. Built-in adapters and
tools use exactly these hooks, registered after entry-point plugins.

Pluggy calls hooks synchronously. Hooks that may be implemented as
``async def`` (``startup``, ``shutdown``, ``before_tool_call``,
``after_tool_call``, ``session_event``) never use ``firstresult``: the host
collects every result and awaits the awaitable ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bot import hookspec

if TYPE_CHECKING:
    from bot.config import Config


# --- registration ---------------------------------------------------------


@hookspec
def register_tools(register: Callable[..., None], config: Config) -> None:
    """Register model-callable tools.

    Call ``register(fn_or_tool)`` once per tool, where ``fn_or_tool`` is an
    ``async def name(ctx, ...)`` function (schema from its signature and
    docstring) or a :class:`bot.tools.Tool`. Names must be unique across
    plugins; a clash is reported with both plugins' names and the later one
    is skipped.
    """


@hookspec
def register_adapters(register: Callable[..., None], config: Config) -> None:
    """Register chat adapters.

    Call ``register(name, factory)``; ``factory(host)`` returns an object
    implementing :class:`bot.adapters.ChatAdapter`. It is called only when
    ``name`` is enabled (``adapters:`` in the config, or ``chat`` for the
    console), so heavy imports belong inside the factory.
    """


@hookspec
def register_model_providers(register: Callable[..., None], config: Config) -> None:
    """Register model-client kinds.

    Call ``register(kind, factory)``; ``factory(endpoint, config)`` returns a
    :class:`bot.models.ModelClient`. Built-ins provide ``ollama`` and ``openai``.
    """


# --- lifecycle ------------------------------------------------------------


@hookspec
def startup(host: Any) -> Any:
    """The host has started (store open, adapters about to connect). May be async."""


@hookspec
def shutdown(host: Any) -> Any:
    """The host is stopping. May be async; awaited with a bounded wait."""


# --- the loop -------------------------------------------------------------


@hookspec
def before_tool_call(call: Any, session: Any) -> Any:
    """A tool call is about to run.

    Return ``None`` (no opinion), ``"allow"``, ``"deny"`` or ``"ask"``, or
    a ``(verdict, reason)`` tuple. May be async. Any ``"deny"`` wins, then
    ``"ask"``; the built-in policy is one such implementation.
    """


@hookspec
def after_tool_call(call: Any, result: Any, session: Any) -> Any:
    """A tool call finished with ``result`` (a :class:`bot.tools.ToolResult`). May be async."""


@hookspec
def session_event(session: Any, event: Any) -> Any:
    """Every :class:`bot.events.AgentEvent` a session emits. May be async.

    Observers only (metrics, audit, the browser view): slow work belongs in
    a task the plugin owns.
    """


@hookspec
def route_step(step: Any) -> Any:
    """Optionally pick the model for one step.

    Return a model name, or ``None`` to leave the choice to the router. May
    be async. When several plugins answer, the first registered wins.
    """
