"""Choosing the model for each step.

The router records, for every step, which model it picked and why. In the
core it honours, in order: a plugin's ``route_step`` answer, the command's
declared ``model``, then ``routing.local_model``. The complexity score and
escalation are layered on top of this decision record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.config import Config
    from bot.models.registry import ModelRegistry
    from bot.plugins import PluginHost


@dataclass(frozen=True, slots=True)
class StepInfo:
    """What the router may look at for one step."""

    session_id: str
    step: int
    task: str
    command_model: str | None = None
    local_only: bool = False


@dataclass(frozen=True, slots=True)
class RouteDecision:
    model: str
    route: str  # local | cloud | fallback | plugin | command
    score: float = 0.0
    reasons: list[str] = field(default_factory=list)
    signals: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "route": self.route,
            "score": self.score,
            "reasons": list(self.reasons),
            "signals": dict(self.signals),
        }


class Router:
    def __init__(self, config: Config, models: ModelRegistry, host: PluginHost) -> None:
        self.config = config
        self.models = models
        self.host = host

    async def decide(self, step: StepInfo) -> RouteDecision:
        local = self.config.routing.local_model
        if self.host.pm.hook.route_step.get_hookimpls():
            for result in await self.host.acall_each("route_step", step=step):
                if isinstance(result.value, str) and result.value:
                    return self._guard(
                        RouteDecision(
                            result.value, "plugin", reasons=[f"chosen by plugin {result.plugin}"]
                        ),
                        step,
                    )
        if step.command_model:
            return self._guard(
                RouteDecision(step.command_model, "command", reasons=["the command's model"]),
                step,
            )
        return RouteDecision(local, "local", reasons=["routing.local_model"])

    def _guard(self, decision: RouteDecision, step: StepInfo) -> RouteDecision:
        """Never send a local-only session to a cloud model, whoever asked."""
        if step.local_only and self.models.is_cloud(decision.model):
            return RouteDecision(
                self.config.routing.local_model,
                "local",
                reasons=[f"{decision.model} is a cloud model and this session is local-only"],
            )
        return decision
