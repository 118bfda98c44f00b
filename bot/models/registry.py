"""Which client serves which model: one client per endpoint, created once, reused."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from bot.config import Config, ModelEndpoint
from bot.models.base import ModelClient

if TYPE_CHECKING:
    from bot.plugins import PluginHost

ProviderFactory = Callable[[ModelEndpoint, Config], ModelClient]


def is_cloud_model(name: str, endpoint: ModelEndpoint) -> bool:
    """A cloud model sends prompts off this machine: privacy rules depend on it."""
    if endpoint.cloud is not None:
        return endpoint.cloud
    tag = name.rsplit(":", 1)[-1] if ":" in name else ""
    host = endpoint.host or ""
    return tag == "cloud" or tag.endswith("-cloud") or "ollama.com" in host


class ModelRegistry:
    def __init__(self, config: Config, providers: dict[str, ProviderFactory]) -> None:
        self.config = config
        self.providers = providers
        self._clients: dict[tuple[str, str, str], ModelClient] = {}

    @classmethod
    def from_plugins(cls, host: PluginHost, config: Config) -> ModelRegistry:
        providers: dict[str, ProviderFactory] = {}

        for impl in host.implementations("register_model_providers"):

            def register(kind: str, factory: ProviderFactory) -> None:
                providers.setdefault(kind, factory)

            try:
                impl.function(register=register, config=config)
            except Exception as exc:
                host.record_failure(impl.plugin_name, "register_model_providers", exc)
        return cls(config, providers)

    def endpoint_for(self, model: str) -> ModelEndpoint:
        endpoint = self.config.routing.models.get(model)
        if endpoint is None:
            endpoint = ModelEndpoint()
        if endpoint.host is None:
            endpoint = endpoint.model_copy(update={"host": self.config.ollama_host})
        return endpoint

    def is_cloud(self, model: str) -> bool:
        return is_cloud_model(model, self.endpoint_for(model))

    def client_for(self, model: str) -> ModelClient:
        endpoint = self.endpoint_for(model)
        key = (endpoint.kind, endpoint.host or "", endpoint.api_key_env or "")
        client = self._clients.get(key)
        if client is None:
            factory = self.providers.get(endpoint.kind)
            if factory is None:
                raise KeyError(f"no model provider for kind {endpoint.kind!r}")
            client = factory(endpoint, self.config)
            self._clients[key] = client
        return client

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()
