"""The operator's HTTP endpoint: ``/healthz``, ``/metrics``, ``/status``.

aiohttp on loopback by default (``observability.host``/``port``). ``/healthz``
answers 200 when healthy and 503 otherwise, with the details as JSON either
way, so a container health check and a person read the same thing.
``/metrics`` is the Prometheus text format. ``/status`` lists the sessions
running now (``threadwright status`` reads it).

The server also owns the event-loop lag sampler: a task that sleeps a fixed
interval and records how late it woke up.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot.observability.health import check_health

if TYPE_CHECKING:
    from bot.config import ObservabilityConfig
    from bot.host import Host
    from bot.observability.metrics import Metrics

log = logging.getLogger(__name__)

_servers: weakref.WeakKeyDictionary[Host, ObservabilityServer] = weakref.WeakKeyDictionary()


def server_for(host: Host) -> ObservabilityServer | None:
    """The endpoint serving ``host``, when one was started."""
    return _servers.get(host)


class ObservabilityServer:
    def __init__(self, host: Host, metrics: Metrics, config: ObservabilityConfig) -> None:
        self.host = host
        self.metrics = metrics
        self.config = config
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._sampler: asyncio.Task[None] | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/status", self._status)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, self.config.host, self.config.port).start()
        except OSError:
            await self._runner.cleanup()
            self._runner = None
            raise
        address = self._runner.addresses[0]
        host, port = address[0], address[1]
        self.url = f"http://{host}:{port}" if ":" not in host else f"http://[{host}]:{port}"
        self.metrics.bind_host(self.host)
        self._sampler = asyncio.create_task(self._sample_loop_lag(), name="loop-lag-sampler")
        _servers[self.host] = self
        log.info("health and metrics at %s (/healthz, /metrics, /status)", self.url)
        return self.url

    async def stop(self) -> None:
        _servers.pop(self.host, None)
        if self._sampler is not None:
            self._sampler.cancel()
            await asyncio.gather(self._sampler, return_exceptions=True)
            self._sampler = None
        self.metrics.bind_host(None)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _sample_loop_lag(self) -> None:
        interval = self.config.loop_lag_interval
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(interval)
            try:
                self.metrics.sample_loop_lag(max(0.0, loop.time() - started - interval))
            except Exception:  # a metrics bug must not end the sampler silently
                log.exception("event-loop lag sample failed")

    # --- handlers -----------------------------------------------------------------

    async def _healthz(self, request: web.Request) -> web.Response:
        try:
            report = await check_health(self.host)
        except Exception as exc:
            log.exception("health check failed")
            return web.json_response({"status": "fail", "error": str(exc)}, status=503)
        return web.json_response(report.to_dict(), status=200 if report.ok else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return web.Response(
            body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def _status(self, request: web.Request) -> web.Response:
        data = status_snapshot(self.host)
        data.update(await models_snapshot(self.host))
        return web.json_response(data)


async def models_snapshot(host: Host) -> dict[str, Any]:
    """GPU memory, what Ollama has loaded, and today's steps per model and route."""
    try:
        runtime = host.runtime
    except RuntimeError:
        return {}
    swapper = runtime.router.gpu
    data: dict[str, Any] = {}
    try:
        data["gpu"] = (await swapper.snapshot()).describe()
        loaded = await swapper.loaded(runtime.config.routing.local_model)
        data["models_loaded"] = [
            {"name": m.name, "size_mib": m.size // 2**20, "vram_mib": m.size_vram // 2**20}
            for m in loaded
        ]
    except Exception as exc:  # status must answer even when the GPU or Ollama cannot
        data["gpu"] = f"unavailable: {type(exc).__name__}: {exc}"
        data.setdefault("models_loaded", [])
    midnight = datetime.combine(date.today(), datetime.min.time()).timestamp()
    data["routing_today"] = {
        model: {
            "steps": int(t.get("calls", 0)),
            "tokens": int(t.get("prompt_tokens", 0) + t.get("completion_tokens", 0)),
            "cost_usd": t.get("cost_usd", 0.0),
        }
        for model, t in (await runtime.store.route_usage(since=midnight)).items()
    }
    return data


def status_snapshot(host: Host) -> dict[str, Any]:
    """The running sessions, as ``/status`` and ``threadwright status`` show them."""
    try:
        sessions = host.sessions
    except RuntimeError:
        return {"accepting": False, "sessions": []}
    now = time.time()
    active = []
    for session in sessions.active_sessions():
        record = session.record
        active.append(
            {
                "id": session.id,
                "thread": str(session.thread),
                "requester": record.requester,
                "task": record.task[:200],
                "status": record.status,
                "steps_before_this_turn": int(record.stats.get("steps", 0)),
                "age_s": round(now - record.created_at, 1),
            }
        )
    return {
        "accepting": sessions.accepting,
        "adapters": {a.name: bool(a.connected) for a in host.adapters},
        "sessions": active,
    }
