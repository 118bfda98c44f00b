"""Choosing the model for each step, and remembering why.

:class:`Router` is the process-wide decision function: given a
:class:`StepInfo` it honours, in order, a plugin's ``route_step`` answer, the
command's declared ``model``, an explicit user wish (``--cloud``,
``--local``, "use the big model", ``/model``), escalation after repeated local
failures, then the complexity score (:mod:`bot.complexity`) against
``routing.complexity_threshold``. Whatever it picks passes one guard: a
local-only session never reaches a cloud model, a cloud model that just failed
is replaced by ``routing.fallback_model``, and a used-up cloud budget keeps
the step local. The guard says so in :attr:`RouteDecision.notice`.

:class:`SessionRouting` is one session's side of it: it gathers the signals
(files touched, tools used, failures in a row, request size, the command's
declared complexity, wishes), asks the router, swaps to the fallback model
when the big model fails, counts tokens and cost, and records every decision
in the store.
"""

from __future__ import annotations

import fnmatch
import logging
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from bot.budget import BudgetLedger
from bot.complexity import Signals, Wish, matched_keywords, parse_wish, score
from bot.gpu import ModelSwapper
from bot.models.base import (
    ModelAuthError,
    ModelError,
    ModelOverloadedError,
    ModelTimeoutError,
    ModelUnavailableError,
)
from bot.tokens import TokenCounter

if TYPE_CHECKING:
    from bot.config import Config
    from bot.events import ThreadKey
    from bot.models.base import ToolCall
    from bot.models.registry import ModelRegistry
    from bot.plugins import PluginHost
    from bot.runtime import Runtime
    from bot.store.base import SessionRecord
    from bot.tools.base import ToolResult

log = logging.getLogger(__name__)

# Failures of the big model that send the step to routing.fallback_model.
FALLBACK_ERRORS = (ModelAuthError, ModelOverloadedError, ModelTimeoutError, ModelUnavailableError)
# Tool results that mean the model wrote a bad call rather than that the tool failed.
_MALFORMED_PREFIXES = ("unknown tool", "invalid arguments", "the arguments for ")
_MALFORMED_VERDICTS = frozenset({"unknown tool", "malformed"})
_PATH_TOOLS = frozenset({"read_file", "write_file", "edit_file"})
RECENT_DECISIONS = 50


@dataclass(frozen=True, slots=True)
class StepInfo:
    """What the router may look at for one step."""

    session_id: str
    step: int
    task: str
    command_model: str | None = None
    local_only: bool = False
    signals: Signals = field(default_factory=Signals)
    wish: Wish | None = None
    escalate: str | None = None  # why local failures send this step to the big model
    cloud_down: dict[str, str] = field(default_factory=dict)  # model -> why it is skipped now
    budget_exhausted: str | None = None
    local_only_reason: str = ""


@dataclass(frozen=True, slots=True)
class RouteDecision:
    model: str
    route: str  # local | cloud | escalated | fallback | plugin | command | wish
    score: float = 0.0
    reasons: list[str] = field(default_factory=list)
    signals: dict[str, Any] = field(default_factory=dict)
    notice: str | None = None  # something the thread should be told (once per notice_key)
    notice_key: str = ""

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
        self.budget = BudgetLedger(config)
        self.tokens = TokenCounter()
        self.gpu = ModelSwapper(config, models)
        self._cloud: dict[str, bool] = {}

    def is_cloud(self, model: str) -> bool:
        """Whether prompts to ``model`` leave this machine (cached: asked several times a step)."""
        cloud = self._cloud.get(model)
        if cloud is None:
            cloud = self._cloud[model] = self.models.is_cloud(model)
        return cloud

    async def decide(self, step: StepInfo) -> RouteDecision:
        routing = self.config.routing
        value, reasons = score(step.signals)
        signals = step.signals.to_dict() | {"wish": step.wish, "escalate": step.escalate}
        base: dict[str, Any] = {"score": value, "signals": signals}
        if self.host.pm.hook.route_step.get_hookimpls():
            for result in await self.host.acall_each("route_step", step=step):
                if isinstance(result.value, str) and result.value:
                    why = [f"chosen by plugin {result.plugin}"]
                    return self._guard(
                        RouteDecision(result.value, "plugin", reasons=why, **base), step
                    )
        if step.command_model:
            decision = RouteDecision(
                step.command_model, "command", reasons=["the command's model"], **base
            )
        elif step.wish == "cloud":
            decision = RouteDecision(
                routing.cloud_model, "wish", reasons=["the user asked for the big model"], **base
            )
        elif step.wish == "local":
            decision = RouteDecision(
                routing.local_model, "wish", reasons=["the user asked for the local model"], **base
            )
        elif step.escalate:
            decision = RouteDecision(
                routing.cloud_model, "escalated", reasons=[step.escalate], **base
            )
        elif value >= routing.complexity_threshold:
            why = [f"score {value:.2f} ≥ threshold {routing.complexity_threshold:.2f}", *reasons]
            decision = RouteDecision(routing.cloud_model, "cloud", reasons=why, **base)
        else:
            why = [f"score {value:.2f} < threshold {routing.complexity_threshold:.2f}", *reasons]
            decision = RouteDecision(routing.local_model, "local", reasons=why, **base)
        return self._guard(decision, step)

    def _guard(self, decision: RouteDecision, step: StepInfo) -> RouteDecision:
        """Privacy first, then availability, then budget."""
        routing = self.config.routing
        local = routing.local_model
        if step.local_only and self.is_cloud(decision.model):
            why = step.local_only_reason or "this session is local-only"
            return replace(
                decision,
                model=local,
                route="local",
                reasons=[f"{decision.model} is a cloud model and {why}", *decision.reasons],
                notice=(
                    f"Step {step.step} would have gone to {decision.model} "
                    f"({decision.reasons[0] if decision.reasons else decision.route}), but "
                    f"{why}: it stays on {local}."
                ),
                notice_key=f"local_only:{step.step}",
            )
        down = step.cloud_down.get(decision.model)
        if down is not None and decision.model != routing.fallback_model:
            fallback = routing.fallback_model
            if step.local_only and self.is_cloud(fallback):
                fallback = local
            return replace(
                decision,
                model=fallback,
                route="fallback",
                reasons=[f"{decision.model} is unavailable ({down})", *decision.reasons],
            )
        if step.budget_exhausted and self.is_cloud(decision.model):
            return replace(
                decision,
                model=local,
                route="local",
                reasons=[step.budget_exhausted, *decision.reasons],
                notice=f"{step.budget_exhausted}: continuing on {local} only.",
                notice_key="budget",
            )
        return decision

    def fallback_for(self, decision: RouteDecision, local_only: bool) -> str | None:
        """The model to retry a failed step on, or None when there is none to try."""
        routing = self.config.routing
        fallback = routing.fallback_model
        if decision.model in (routing.local_model, fallback) or decision.route == "fallback":
            return None
        if local_only and self.is_cloud(fallback):
            return routing.local_model
        return fallback


def room_is_local_only(patterns: list[str], thread: ThreadKey) -> str | None:
    """The ``routing.local_only_rooms`` pattern matching this thread's room, if any."""
    names = (thread.room, f"{thread.platform}:{thread.room}")
    for pattern in patterns:
        if any(fnmatch.fnmatchcase(name, pattern) for name in names):
            return pattern
    return None


def is_malformed(result: ToolResult) -> bool:
    if result.ok:
        return False
    verdict = result.metadata.get("verdict")
    return verdict in _MALFORMED_VERDICTS or (result.error or "").startswith(_MALFORMED_PREFIXES)


@dataclass(slots=True)
class _TurnSettings:
    command_model: str | None = None
    declared: str | None = None
    local_only: bool = False
    local_only_reason: str = ""


class SessionRouting:
    """One session's routing state: signals in, decisions out, everything recorded."""

    def __init__(self, runtime: Runtime, record: SessionRecord, thread: ThreadKey) -> None:
        self.runtime = runtime
        self.session = record
        self.thread = thread
        self.files: set[str] = set()
        self.tools: set[str] = set()
        self.tool_failures_in_row = 0
        self.malformed_in_row = 0
        self.wish: Wish | None = parse_wish(record.task)
        self.cloud_down: dict[str, tuple[float, str]] = {}  # model -> (until, why)
        self.turn = _TurnSettings()
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_DECISIONS)
        self.routes: dict[str, int] = {}
        self._notified: set[str] = set()

    @property
    def router(self) -> Router:
        return self.runtime.router

    async def begin_turn(
        self,
        text: str,
        *,
        command_model: str | None,
        declared: str | None,
        local_only: bool,
    ) -> None:
        config = self.runtime.config
        self.observe_text(text)
        reason = ""
        if local_only:
            reason = "the command is local-only"
        else:
            pattern = room_is_local_only(config.routing.local_only_rooms, self.thread)
            if pattern is not None:
                reason = f"this room is local-only (routing.local_only_rooms: {pattern!r})"
        self.turn = _TurnSettings(command_model, declared, bool(reason), reason)
        await self.router.budget.load(self.runtime.store, self.session.id)

    def observe_text(self, text: str) -> None:
        """A task, follow-up or steering message: it may state a wish."""
        wish = parse_wish(text)
        if wish is not None:
            self.wish = wish

    def model_command(self, arguments: str) -> str:
        """``/model cloud|local|auto`` in the thread: the answer to post."""
        routing = self.runtime.config.routing
        choice = arguments.strip().lower()
        if choice in ("cloud", "big"):
            self.wish = "cloud"
            return f"Next steps use the big model ({routing.cloud_model})."
        if choice in ("local", "small"):
            self.wish = "local"
            return f"Next steps use the local model ({routing.local_model})."
        if choice in ("auto", "score"):
            self.wish = None
            return "Next steps are routed by their complexity score again."
        now = {"cloud": routing.cloud_model, "local": routing.local_model}.get(
            self.wish or "", "chosen per step by the complexity score"
        )
        return f"Model: {now}. Reply `/model cloud`, `/model local` or `/model auto`."

    def observe_tool(self, call: ToolCall, result: ToolResult) -> None:
        self.tools.add(call.name)
        if call.name in _PATH_TOOLS and isinstance(call.arguments.get("path"), str):
            self.files.add(call.arguments["path"])
        if result.ok:
            self.tool_failures_in_row = self.malformed_in_row = 0
        elif is_malformed(result):
            self.malformed_in_row += 1
        else:
            self.tool_failures_in_row += 1

    def escalation(self) -> str | None:
        routing = self.runtime.config.routing
        if self.malformed_in_row >= routing.escalate_after_malformed:
            return f"{self.malformed_in_row} malformed tool calls in a row"
        if self.tool_failures_in_row >= routing.escalate_after_tool_failures:
            return f"{self.tool_failures_in_row} failed tools in a row"
        return None

    def signals(self, context_tokens: int, num_ctx: int) -> Signals:
        task = self.session.task
        return Signals(
            files_touched=len(self.files),
            distinct_tools=len(self.tools),
            tool_failures_in_row=self.tool_failures_in_row,
            malformed_in_row=self.malformed_in_row,
            request_chars=len(task),
            context_tokens=context_tokens,
            num_ctx=num_ctx,
            keywords=matched_keywords(task),
            declared=self.turn.declared,
        )

    async def decide(self, step: int, context_tokens: int = 0, num_ctx: int = 0) -> RouteDecision:
        now = time.monotonic()
        down = {m: why for m, (until, why) in self.cloud_down.items() if until > now}
        info = StepInfo(
            session_id=self.session.id,
            step=step,
            task=self.session.task,
            command_model=self.turn.command_model,
            local_only=self.turn.local_only,
            signals=self.signals(context_tokens, num_ctx),
            wish=self.wish,
            escalate=self.escalation(),
            cloud_down=down,
            budget_exhausted=self.router.budget.exhausted(self.session.id),
            local_only_reason=self.turn.local_only_reason,
        )
        return await self.router.decide(info)

    def fallback_for(self, decision: RouteDecision, error: ModelError) -> RouteDecision | None:
        """After ``decision``'s model failed: the decision to retry the step with, or None."""
        if not isinstance(error, FALLBACK_ERRORS):
            return None
        model = self.router.fallback_for(decision, self.turn.local_only)
        if model is None:
            return None
        config = self.runtime.config.routing
        # A refused sign-in will not fix itself within the session; busy servers may.
        pause = float("inf") if isinstance(error, ModelAuthError) else config.cloud_retry_after_s
        why = type(error).__name__.removeprefix("Model").removesuffix("Error").lower()
        self.cloud_down[decision.model] = (time.monotonic() + pause, why)
        signin = getattr(error, "signin_url", None)
        hint = f" Sign in at {signin} to use it." if signin else ""
        return replace(
            decision,
            model=model,
            route="fallback",
            reasons=[f"{decision.model} failed: {why}", *decision.reasons],
            notice=f"{decision.model} is not available ({error.user_message}); "
            f"using {model} instead.{hint}",
            notice_key=f"fallback:{decision.model}:{why}",
        )

    def notice_for(self, decision: RouteDecision) -> str | None:
        """The decision's notice the first time its key is seen in this session."""
        if not decision.notice or decision.notice_key in self._notified:
            return None
        if decision.notice_key.startswith("local_only:"):
            # One local-only notice per turn is enough.
            if "local_only" in self._notified:
                return None
            self._notified.add("local_only")
        self._notified.add(decision.notice_key)
        return decision.notice

    def end_turn(self) -> None:
        self._notified.discard("local_only")

    def route_key(self, decision: RouteDecision) -> str:
        """The footer's bucket: local, cloud or fallback."""
        if decision.route == "fallback":
            return "fallback"
        return "cloud" if self.router.is_cloud(decision.model) else "local"

    async def record(
        self,
        decision: RouteDecision,
        step: int,
        *,
        latency_ms: float,
        prompt_tokens: int,
        completion_tokens: int,
        error: str | None = None,
    ) -> float:
        """Count and store one model call; returns its cost."""
        cloud = self.router.is_cloud(decision.model)
        cost = self.router.budget.add(
            self.session.id, decision.model, cloud, prompt_tokens, completion_tokens
        )
        key = self.route_key(decision)
        if error is None:
            self.routes[key] = self.routes.get(key, 0) + 1
        entry = decision.to_dict() | {
            "step": step,
            "ts": time.time(),
            "cloud": cloud,
            "latency_ms": round(latency_ms, 1),
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "cost_usd": cost,
        }
        if error is not None:
            entry["reasons"] = [f"failed: {error}", *entry["reasons"]]
        self.recent.append(entry)
        try:
            await self.runtime.store.add_route_decision(self.session.id, entry)
        except Exception:  # the record is for people; losing one must not end the session
            log.exception("session %s: could not store a routing decision", self.session.id)
        return cost

    def status_lines(self, limit: int = 5) -> list[str]:
        """For /status: the counts and the last few decisions."""
        if not self.recent:
            return []
        counts = " · ".join(f"{n} {k}" for k, n in sorted(self.routes.items()))
        lines = [f"Routing: {counts or 'no completed steps'}"]
        for entry in list(self.recent)[-limit:]:
            lines.append(format_decision(entry))
        gpu = self.router.gpu.status_line()
        if gpu:
            lines.append(gpu)
        return lines


def format_decision(entry: dict[str, Any]) -> str:
    """One line per decision: ``step 3 → qwen3:4b (local, score 0.10, 812 ms, 1.2k tok): why``."""
    tokens = int(entry.get("prompt_tokens", 0)) + int(entry.get("completion_tokens", 0))
    reasons = "; ".join(entry.get("reasons") or [])
    cost = float(entry.get("cost_usd") or 0.0)
    money = f", ${cost:.4f}" if cost else ""
    return (
        f"step {entry.get('step')} → {entry.get('model')} ({entry.get('route')}, "
        f"score {float(entry.get('score', 0.0)):.2f}, {float(entry.get('latency_ms', 0)):.0f} ms, "
        f"{tokens} tok{money}): {reasons}"
    )
