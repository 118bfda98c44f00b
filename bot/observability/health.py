"""Health: is this process able to do its job right now, and if not, why.

Three checks, each with details an operator can act on: every chat adapter is
connected (``ChatAdapter.connected``), the store accepts a write
(``Store.check_writable``), and the local model's endpoint answers with the
model present. The process is healthy when all three pass and it is not
shutting down.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.host import Host

CHECK_TIMEOUT_S = 3.0


@dataclass(slots=True)
class HealthCheck:
    ok: bool
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class HealthReport:
    accepting: bool
    checks: dict[str, HealthCheck]

    @property
    def ok(self) -> bool:
        return self.accepting and all(c.ok for c in self.checks.values())

    def to_dict(self) -> dict[str, Any]:
        status = "ok" if self.ok else ("stopping" if not self.accepting else "fail")
        return {
            "status": status,
            "accepting": self.accepting,
            "checks": {name: asdict(check) for name, check in self.checks.items()},
        }


def check_adapters(host: Host) -> HealthCheck:
    states = {adapter.name: bool(adapter.connected) for adapter in host.adapters}
    if not states:
        return HealthCheck(True, "no chat adapters started", {"adapters": states})
    down = sorted(name for name, up in states.items() if not up)
    if down:
        return HealthCheck(False, f"not connected: {', '.join(down)}", {"adapters": states})
    return HealthCheck(True, f"connected: {', '.join(sorted(states))}", {"adapters": states})


async def check_store(host: Host, timeout: float = CHECK_TIMEOUT_S) -> HealthCheck:  # noqa: ASYNC109
    path = str(host.config.store_path())
    try:
        async with asyncio.timeout(timeout):
            await host.runtime.store.check_writable()
    except TimeoutError:
        return HealthCheck(False, f"{path}: a write took longer than {timeout:g} s", {"path": path})
    except Exception as exc:
        return HealthCheck(False, f"{path}: {type(exc).__name__}: {exc}", {"path": path})
    return HealthCheck(True, f"{path} writable", {"path": path})


async def check_model(host: Host, timeout: float = CHECK_TIMEOUT_S) -> HealthCheck:  # noqa: ASYNC109
    from bot.models.base import ModelError

    runtime = host.runtime
    model = host.config.routing.local_model
    endpoint = runtime.models.endpoint_for(model).host or host.config.ollama_host
    data: dict[str, Any] = {"endpoint": endpoint, "model": model}
    try:
        async with asyncio.timeout(timeout):
            names = await runtime.models.client_for(model).list_models()
    except TimeoutError:
        return HealthCheck(False, f"{endpoint} did not answer within {timeout:g} s", data)
    except ModelError as exc:
        return HealthCheck(False, exc.user_message, data)
    present = model in names or f"{model}:latest" in names or runtime.models.is_cloud(model)
    data["present"] = present
    if not present:
        return HealthCheck(False, f"{endpoint} reachable, but {model} is not pulled", data)
    return HealthCheck(True, f"{endpoint} reachable, {model} present", data)


async def check_health(host: Host) -> HealthReport:
    store, model = await asyncio.gather(check_store(host), check_model(host))
    try:
        accepting = host.sessions.accepting
    except RuntimeError:
        accepting = False
    return HealthReport(
        accepting, {"adapters": check_adapters(host), "store": store, "model": model}
    )
