"""``threadwright status``: what is running now.

Asks the running bot first (its ``/status`` endpoint); when nothing answers
there, reads the store, which knows which sessions a stop left behind and
will resume on the next start. Exit code 0 when the bot answered, 3 when it
is not running (as ``systemctl status`` does).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.config import Config

NOT_RUNNING = 3


def endpoint_url(config: Config) -> str:
    cfg = config.observability
    host = cfg.host
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{cfg.port}"


async def fetch_status(url: str, timeout: float = 2.0) -> dict[str, Any] | None:  # noqa: ASYNC109
    import httpx

    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            response = await client.get(f"{url}/status")
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    data = response.json()
    return data if isinstance(data, dict) else None


async def run_status(config: Config) -> int:
    url = endpoint_url(config)
    live = None
    if config.observability.enabled is not False and config.observability.port:
        live = await fetch_status(url)
    if live is not None:
        print(_format_live(url, live))
        return 0
    print(f"threadwright is not running (nothing answers at {url}/status)")
    print(await _format_stored(config))
    return NOT_RUNNING


def _format_live(url: str, data: dict[str, Any]) -> str:
    state = "accepting work" if data.get("accepting") else "shutting down"
    lines = [f"threadwright is running ({state}) — {url}"]
    adapters = data.get("adapters") or {}
    if adapters:
        parts = [f"{name} {'connected' if up else 'DISCONNECTED'}" for name, up in adapters.items()]
        lines.append("adapters: " + ", ".join(parts))
    if data.get("gpu"):
        lines.append(f"gpu: {data['gpu']}")
    for model in data.get("models_loaded") or []:
        vram, size = model["vram_mib"], model["size_mib"]
        lines.append(f"  loaded: {model['name']} ({vram} MiB in VRAM of {size} MiB)")
    for name, usage in (data.get("routing_today") or {}).items():
        lines.append(
            f"today: {name}: {usage['steps']} steps, {usage['tokens']} tokens"
            + (f", ${usage['cost_usd']:.4f}" if usage.get("cost_usd") else "")
        )
    sessions = data.get("sessions") or []
    lines.append(f"active sessions: {len(sessions)}")
    for s in sessions:
        lines.append(
            f"  {s.get('id')}  {s.get('thread')}  {s.get('requester')}  {str(s.get('task'))[:60]!r}"
        )
    return "\n".join(lines)


async def _format_stored(config: Config) -> str:
    from bot.store.base import open_store

    path = config.store_path()
    if not path.exists():
        return f"no store at {path} yet"
    store = await open_store(path)
    try:
        left = [
            *await store.list_sessions(status="running", limit=100),
            *await store.list_sessions(status="interrupted", limit=100),
        ]
    finally:
        await store.close()
    left = [r for r in left if not r.meta.get("parent")]  # sub-agents resume with their parent
    if not left:
        return "no sessions were left running"
    lines = [f"{len(left)} session(s) stopped mid-task; they resume when the bot starts:"]
    for r in left:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.updated_at))
        lines.append(f"  {r.id}  {when}  {r.status:<11} {r.thread_key}  {r.task[:60]!r}")
    return "\n".join(lines)
