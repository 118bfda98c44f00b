"""Built-in plugin: the health/metrics endpoint and the session metrics feed.

On ``startup`` it serves ``/healthz``, ``/metrics`` and ``/status`` when
``observability.enabled`` is true, or when it is unset and the host runs the
chat adapters (``threadwright run`` sets the host option ``observability``);
``threadwright chat`` leaves it off and never imports the Prometheus client.
While it serves, a small meter plugin is registered for ``session_event`` and
every session event moves the counters; without it the hook has no
implementation and sessions skip the dispatch altogether.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from bot import hookimpl

if TYPE_CHECKING:
    from bot.events import AgentEvent
    from bot.observability.metrics import SessionMeter
    from bot.observability.server import ObservabilityServer

log = logging.getLogger(__name__)

_meter: SessionMeter | None = None
_servers: dict[int, ObservabilityServer] = {}
METER_PLUGIN_NAME = "threadwright.observability.meter"


class _MeterPlugin:
    """The ``session_event`` observer, registered only while an endpoint serves."""

    def __init__(self, meter: SessionMeter) -> None:
        self.meter = meter

    @hookimpl
    def session_event(self, session: Any, event: AgentEvent) -> None:
        self.meter.observe(session, event)


def _enabled(host: Any) -> bool:
    configured = host.config.observability.enabled
    if configured is not None:
        return bool(configured)
    return bool(getattr(host, "options", {}).get("observability"))


@hookimpl
async def startup(host: Any) -> None:
    global _meter
    if not _enabled(host):
        return
    from bot import observability
    from bot.observability.metrics import SessionMeter, process_metrics
    from bot.observability.server import ObservabilityServer

    metrics = process_metrics()
    if _meter is None:
        _meter = SessionMeter(metrics)
    observability.activate(metrics)
    server = ObservabilityServer(host, metrics, host.config.observability)
    try:
        await server.start()
    except OSError as exc:
        cfg = host.config.observability
        log.error(
            "cannot serve health and metrics on %s:%s: %s; set observability.port "
            "(or observability.enabled: false)",
            cfg.host,
            cfg.port,
            exc.strerror or exc,
        )
        return
    _servers[id(host)] = server
    pm = host.runtime.plugins.pm
    if pm.get_plugin(METER_PLUGIN_NAME) is None:
        pm.register(_MeterPlugin(_meter), name=METER_PLUGIN_NAME)


@hookimpl
async def shutdown(host: Any) -> None:
    server = _servers.pop(id(host), None)
    if server is not None:
        await server.stop()
        pm = host.runtime.plugins.pm
        meter = pm.get_plugin(METER_PLUGIN_NAME)
        if meter is not None:
            pm.unregister(meter)
