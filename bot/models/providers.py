"""Built-in model providers: Ollama's native API and OpenAI-compatible servers.

Registered through the same hook third-party providers use. Client modules
are imported inside the factories so start-up pays only for what it uses.
"""

from __future__ import annotations

from collections.abc import Callable

from bot import hookimpl
from bot.config import Config, ModelEndpoint
from bot.models.base import ModelClient


def _api_key(endpoint: ModelEndpoint, config: Config) -> str | None:
    if endpoint.api_key_env:
        return config.secrets.extra.get(endpoint.api_key_env)
    host = endpoint.host or ""
    # OLLAMA_API_KEY belongs to ollama.com; never hand it to another host.
    if "ollama.com" in host:
        return config.secrets.ollama_api_key
    return None


def ollama_factory(endpoint: ModelEndpoint, config: Config) -> ModelClient:
    from bot.models.ollama import OllamaClient

    return OllamaClient(
        endpoint.host or config.ollama_host,
        api_key=_api_key(endpoint, config),
        connect_timeout=config.routing.connect_timeout,
        read_timeout=config.routing.request_timeout,
    )


def openai_factory(endpoint: ModelEndpoint, config: Config) -> ModelClient:
    from bot.models.openai_compat import OpenAICompatClient

    return OpenAICompatClient(
        endpoint.host or config.ollama_host,
        api_key=_api_key(endpoint, config),
        connect_timeout=config.routing.connect_timeout,
        read_timeout=config.routing.request_timeout,
    )


@hookimpl(trylast=True)
def register_model_providers(
    register: Callable[[str, Callable[[ModelEndpoint, Config], ModelClient]], None],
    config: Config,
) -> None:
    register("ollama", ollama_factory)
    register("openai", openai_factory)
