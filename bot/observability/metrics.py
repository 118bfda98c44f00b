"""The Prometheus metrics of one process, and the meter that reads them off session events.

:class:`Metrics` owns a private :class:`prometheus_client.CollectorRegistry`
(so tests and embedders never collide with the client's global one) holding
every series threadwright exports. :class:`SessionMeter` turns the
:class:`bot.events.AgentEvent` stream into those series: model latency is the
time from a ``step`` event to the end of that step's stream (its first tool
call, the next step, or the end of the turn), so nothing in the loop has to
time itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from bot.events import AgentEvent, AgentEventKind

if TYPE_CHECKING:
    from collections.abc import Iterable

    from prometheus_client import Metric

    from bot.host import Host

PREFIX = "threadwright"
# Model steps take from a fraction of a second (short answers on a warm GPU)
# to minutes (a cold load of a big model on CPU).
MODEL_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320)
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class _HostCollector(Collector):
    """Values read from the running host at scrape time (never stale)."""

    def __init__(self) -> None:
        self.host: Host | None = None

    def collect(self) -> Iterable[Metric]:
        host = self.host
        sessions = GaugeMetricFamily(
            f"{PREFIX}_active_sessions", "Sessions with a turn running now", labels=["platform"]
        )
        adapters = GaugeMetricFamily(
            f"{PREFIX}_adapter_connected",
            "1 when the chat adapter is connected to its platform",
            labels=["adapter"],
        )
        accepting = GaugeMetricFamily(
            f"{PREFIX}_accepting_work", "0 while the bot is shutting down"
        )
        if host is not None:
            counts: dict[str, int] = {}
            try:
                active = host.sessions.active_sessions()
                accepting.add_metric([], 1.0 if host.sessions.accepting else 0.0)
            except RuntimeError:  # the host is not started (or already closed)
                active = []
            for session in active:
                counts[session.thread.platform] = counts.get(session.thread.platform, 0) + 1
            for adapter in host.adapters:
                counts.setdefault(adapter.name, 0)
                adapters.add_metric([adapter.name], 1.0 if adapter.connected else 0.0)
            for platform, count in sorted(counts.items()):
                sessions.add_metric([platform], float(count))
        yield sessions
        yield adapters
        yield accepting


class Metrics:
    """Every series threadwright exports, in one registry."""

    def __init__(self) -> None:
        from bot import __version__

        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._host_collector = _HostCollector()
        r.register(self._host_collector)
        Info(f"{PREFIX}_build", "threadwright version", registry=r).info({"version": __version__})
        self.steps = Counter(
            f"{PREFIX}_steps",
            "Model steps by route (local, cloud, fallback…)",
            ["route"],
            registry=r,
        )
        self.turns = Counter(
            f"{PREFIX}_turns", "Finished turns by how they ended", ["reason"], registry=r
        )
        self.model_latency = Histogram(
            f"{PREFIX}_model_step_seconds",
            "Time from a step's request to the end of the model's answer",
            ["model"],
            buckets=MODEL_BUCKETS,
            registry=r,
        )
        self.first_token = Histogram(
            f"{PREFIX}_model_first_output_seconds",
            "Time from a step's request to the model's first output",
            ["model"],
            buckets=MODEL_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            f"{PREFIX}_model_tokens",
            "Tokens the model reported, by kind (prompt, completion)",
            ["model", "kind"],
            registry=r,
        )
        self.tool_calls = Counter(
            f"{PREFIX}_tool_calls",
            "Tool calls by tool and policy verdict",
            ["tool", "verdict"],
            registry=r,
        )
        self.steering = Counter(
            f"{PREFIX}_steering_messages",
            "Steering messages applied to a running session",
            ["platform"],
            registry=r,
        )
        self.chat_posts = Counter(
            f"{PREFIX}_chat_posts", "Messages posted to a chat platform", ["platform"], registry=r
        )
        self.chat_edits = Counter(
            f"{PREFIX}_chat_edits", "Edits of the bot's own messages", ["platform"], registry=r
        )
        self.chat_429s = Counter(
            f"{PREFIX}_chat_rate_limited",
            "Calls a chat platform refused with a rate limit (HTTP 429)",
            ["platform"],
            registry=r,
        )
        self.loop_lag = Histogram(
            f"{PREFIX}_event_loop_lag_seconds",
            "How late the event loop ran a timer (a blocked loop delays everything)",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.loop_lag_last = Gauge(
            f"{PREFIX}_event_loop_lag_last_seconds",
            "The latest event-loop lag sample",
            registry=r,
        )

    def bind_host(self, host: Host | None) -> None:
        """Read active sessions and adapter states from ``host`` at each scrape."""
        self._host_collector.host = host

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # --- the adapter API (see bot.observability) -------------------------------

    def chat_post(self, platform: str) -> None:
        self.chat_posts.labels(platform).inc()

    def chat_edit(self, platform: str) -> None:
        self.chat_edits.labels(platform).inc()

    def chat_rate_limited(self, platform: str, retry_after: float | None = None) -> None:
        self.chat_429s.labels(platform).inc()

    def sample_loop_lag(self, lag: float) -> None:
        self.loop_lag.observe(lag)
        self.loop_lag_last.set(lag)


@dataclass(slots=True)
class _OpenStep:
    model: str
    started: float
    first_output: bool = False


_OUTPUT = frozenset({AgentEventKind.TOKEN, AgentEventKind.THINKING, AgentEventKind.TOOL_CALL})
# Events that mean the model's stream for the current step has ended.
_STEP_END = frozenset({AgentEventKind.TOOL_CALL, AgentEventKind.STEP, AgentEventKind.DONE})


class SessionMeter:
    """Feeds :class:`Metrics` from session events (the ``session_event`` hook)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._open: dict[str, _OpenStep] = {}

    def observe(self, session: Any, event: AgentEvent) -> None:
        kind = event.kind
        now = time.perf_counter()
        step = self._open.get(event.session_id)
        if step is not None:
            if kind in _OUTPUT and not step.first_output:
                step.first_output = True
                self.metrics.first_token.labels(step.model).observe(now - step.started)
            if kind in _STEP_END or (kind is AgentEventKind.ERROR and not _recoverable(event)):
                self.metrics.model_latency.labels(step.model).observe(now - step.started)
                del self._open[event.session_id]
        if kind is AgentEventKind.STEP:
            model = str(event.data.get("model", "unknown"))
            self.metrics.steps.labels(str(event.data.get("route", "local"))).inc()
            self._open[event.session_id] = _OpenStep(model, now)
        elif kind is AgentEventKind.TOOL_RESULT:
            self._tool_result(session, event)
        elif kind is AgentEventKind.STEERING:
            self.metrics.steering.labels(_platform(session)).inc()
        elif kind is AgentEventKind.DONE:
            self._done(event)

    def _tool_result(self, session: Any, event: AgentEvent) -> None:
        result = event.data.get("result") or {}
        metadata = result.get("metadata") or {}
        verdict = _verdict_label(metadata.get("verdict"))
        name = str(event.data.get("name", ""))
        try:
            known = name in session.runtime.tools.names()
        except AttributeError:
            known = True
        # Names a model invents must not grow the label set without bound.
        self.metrics.tool_calls.labels(name if known else "unknown", verdict).inc()

    def _done(self, event: AgentEvent) -> None:
        self._open.pop(event.session_id, None)
        self.metrics.turns.labels(str(event.data.get("reason", "completed"))).inc()
        stats = event.data.get("stats") or {}
        models = list((stats.get("models") or {}).keys())
        model = models[0] if len(models) == 1 else ("mixed" if models else "unknown")
        for kind in ("prompt", "completion"):
            count = int(stats.get(f"{kind}_tokens") or 0)
            if count:
                self.metrics.tokens.labels(model, kind).inc(count)


def _verdict_label(verdict: Any) -> str:
    """allowed | approved | denied | invalid (never ran: unknown tool, bad arguments).

    Verdicts may carry who approved or why a request was refused; those are in
    the transcript, and free text must not become label values."""
    text = str(verdict or "").strip().lower()
    if not text or text.startswith(("unknown", "malformed", "invalid")):
        return "invalid"
    if text == "allowed":
        return "allowed"
    if text.startswith("approved"):
        return "approved"
    return "denied"


def _recoverable(event: AgentEvent) -> bool:
    return bool(event.data.get("recoverable"))


def _platform(session: Any) -> str:
    thread = getattr(session, "thread", None)
    return str(getattr(thread, "platform", "unknown"))


_metrics: Metrics | None = None


def process_metrics() -> Metrics:
    """The process's one :class:`Metrics` (created on first use)."""
    global _metrics
    if _metrics is None:
        _metrics = Metrics()
    return _metrics
