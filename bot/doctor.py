"""``threadwright doctor``: check a set-up, one line per check, each failure with its fix."""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.config import Config


@dataclass(slots=True)
class Check:
    name: str
    ok: bool
    detail: str
    warning: bool = False

    def line(self) -> str:
        mark = "OK  " if self.ok else ("WARN" if self.warning else "FAIL")
        return f"[{mark}] {self.name}: {self.detail}"


async def _check_models(config: Config) -> list[Check]:
    from bot.models.base import ModelError
    from bot.models.registry import ModelRegistry
    from bot.plugins import make_plugin_manager

    checks: list[Check] = []
    registry = ModelRegistry.from_plugins(make_plugin_manager(), config)
    try:
        routing = config.routing
        wanted = [
            ("local_model", routing.local_model),
            ("fallback_model", routing.fallback_model),
            ("cloud_model", routing.cloud_model),
        ]
        listed: dict[str, list[str] | None] = {}
        for role, model in wanted:
            endpoint = registry.endpoint_for(model)
            client = registry.client_for(model)
            host = endpoint.host or config.ollama_host
            if host not in listed:
                try:
                    listed[host] = await client.list_models()
                    checks.append(Check(f"endpoint {host}", True, "reachable"))
                except ModelError as exc:
                    listed[host] = None
                    checks.append(Check(f"endpoint {host}", False, exc.user_message))
            names = listed[host]
            if names is None:
                continue
            cloud = registry.is_cloud(model)
            present = model in names or f"{model}:latest" in names
            if not present and not cloud:
                checks.append(
                    Check(f"{role} {model}", False, f"not present: run `ollama pull {model}`")
                )
                continue
            try:
                info = await client.show(model)
            except ModelError as exc:
                checks.append(Check(f"{role} {model}", cloud, exc.user_message, warning=cloud))
                continue
            caps = info.get("capabilities") or []
            if "tools" not in caps:
                checks.append(
                    Check(
                        f"{role} {model}",
                        False,
                        "present but does not support tools; pick a tool-capable model",
                    )
                )
            else:
                checks.append(
                    Check(
                        f"{role} {model}",
                        True,
                        f"present, tools supported, context {info.get('context_length')}",
                    )
                )
    finally:
        await registry.close()
    return checks


async def run_doctor(config: Config) -> int:
    from bot.store.base import open_store

    checks = [Check("config", True, config.source or "defaults (no agent_config.yaml)")]
    checks.extend(await _check_models(config))
    try:
        store = await open_store(config.store_path())
        try:
            await store.check_writable()
        finally:
            await store.close()
        checks.append(Check("store", True, f"{config.store_path()} writable"))
    except Exception as exc:
        checks.append(
            Check("store", False, f"{config.store_path()}: {exc}; check the path's permissions")
        )
    bwrap = shutil.which("bwrap")
    checks.append(
        Check(
            "sandbox",
            bool(bwrap),
            bwrap or "bubblewrap not found: `apt-get install bubblewrap`",
            warning=not bwrap,
        )
    )
    failed = False
    for check in checks:
        print(check.line())
        if not check.ok and not check.warning:
            failed = True
    print("some checks failed" if failed else "all checks passed", file=sys.stderr)
    return 1 if failed else 0
