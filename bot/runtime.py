"""The runtime: the shared services every session uses, built once per process."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.config import Config
from bot.models.registry import ModelRegistry
from bot.plugins import PluginHost, make_plugin_manager
from bot.policy import redaction
from bot.routing import Router
from bot.store.base import Store, open_store
from bot.tools.registry import ToolRegistry
from bot.tools.runner import ToolRunner

if TYPE_CHECKING:
    from bot.directives import DirectiveLoader, DirectiveSet

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Runtime:
    config: Config
    plugins: PluginHost
    store: Store
    models: ModelRegistry
    tools: ToolRegistry
    runner: ToolRunner
    router: Router
    directives: DirectiveLoader
    _num_ctx: dict[str, int] = field(default_factory=dict)

    @classmethod
    async def create(
        cls,
        config: Config,
        *,
        plugins: PluginHost | None = None,
        store: Store | None = None,
    ) -> Runtime:
        from bot.directives import DirectiveLoader

        plugins = plugins or make_plugin_manager()
        tools = ToolRegistry.from_plugins(plugins, config)
        models = ModelRegistry.from_plugins(plugins, config)
        if store is None:
            store = await open_store(config.store_path())
        # Read once, at start: the values of secret-looking variables of the bot's
        # own environment are redacted like configured secrets (names logged, never values).
        inherited = redaction.secret_variable_names()
        if inherited:
            log.info(
                "redacting the values of %d environment variables: %s",
                len(inherited),
                ", ".join(inherited),
            )
        redactor = redaction.configure(redaction.held_secrets(config.secrets.values()))
        return cls(
            config=config,
            plugins=plugins,
            store=store,
            models=models,
            tools=tools,
            runner=ToolRunner(tools, plugins, redactor),
            router=Router(config, models, plugins),
            directives=DirectiveLoader(config.workspace_path(), config.agent_dir),
        )

    def current_directives(self) -> DirectiveSet:
        """The directive set, reloaded first if any file changed (cheap fingerprint)."""
        return self.directives.refresh()

    def system_prompt(self, tool_names: list[str], workspace: Path) -> str:
        directives = self.current_directives()
        prompt = directives.system_prompt(tool_names, workspace)
        if directives.agents and "delegate" in tool_names:
            listed = "\n".join(
                f"- {a.name}: {a.description}"
                for a in sorted(directives.agents.values(), key=lambda a: a.name)
            )
            prompt += (
                "\n# Sub-agents\n\nFor a focused sub-task, call `delegate` with one of these "
                f"and a self-contained task:\n\n{listed}\n"
            )
        return prompt

    def num_ctx(self, model: str) -> int:
        """The same ``num_ctx`` for every call to a model: changing it reloads the model."""
        value = self._num_ctx.get(model)
        if value is None:
            endpoint = self.config.routing.models.get(model)
            value = (endpoint.num_ctx if endpoint and endpoint.num_ctx else None) or (
                self.config.context.num_ctx
            )
            self._num_ctx[model] = value
        return value

    async def resolve_num_ctx(self, model: str) -> int:
        """``num_ctx`` for a model, fixed at its first use: the model's own endpoint setting,
        else its trained length (``/api/show``) capped by ``context.num_ctx``."""
        if model in self._num_ctx:
            return self._num_ctx[model]
        endpoint = self.config.routing.models.get(model)
        cap = self.config.context.num_ctx
        value = endpoint.num_ctx if endpoint and endpoint.num_ctx else None
        if value is None and not self.models.is_cloud(model):
            from bot.models.base import ModelError

            try:
                trained = (await self.models.client_for(model).show(model)).get("context_length")
            except ModelError as exc:
                log.info("no context length for %s (%s); using %d", model, exc, cap)
                trained = None
            value = min(int(trained), cap) if trained else None
        return self._num_ctx.setdefault(model, value or cap)

    async def close(self) -> None:
        await self.models.close()
        await self.store.close()

    def describe(self) -> dict[str, Any]:
        return {
            "plugins": self.plugins.plugin_names(),
            "tools": self.tools.names(),
            "local_model": self.config.routing.local_model,
        }
