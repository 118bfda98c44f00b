"""The host: builds the runtime, creates the enabled adapters, runs until told to stop."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from typing import Any

from bot.adapters import ChatAdapter
from bot.config import Config
from bot.plugins import PluginHost, make_plugin_manager
from bot.runtime import Runtime
from bot.sessions import SessionManager

log = logging.getLogger(__name__)

AdapterFactory = Callable[["Host"], ChatAdapter]


class Host:
    def __init__(
        self,
        config: Config,
        *,
        plugins: PluginHost | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.options = dict(options or {})
        self._plugins = plugins
        self._runtime: Runtime | None = None
        self._sessions: SessionManager | None = None
        self.adapters: list[ChatAdapter] = []
        self._stop = asyncio.Event()

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            raise RuntimeError("host is not started")
        return self._runtime

    @property
    def sessions(self) -> SessionManager:
        if self._sessions is None:
            raise RuntimeError("host is not started")
        return self._sessions

    async def __aenter__(self) -> Host:
        plugins = self._plugins or make_plugin_manager()
        self._runtime = await Runtime.create(self.config, plugins=plugins)
        self._sessions = SessionManager(self._runtime)
        await plugins.acall_each("startup", host=self)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def adapter_factories(self) -> dict[str, AdapterFactory]:
        factories: dict[str, AdapterFactory] = {}
        plugins = self.runtime.plugins
        for impl in plugins.implementations("register_adapters"):

            def register(
                name: str, factory: AdapterFactory, _plugin: str = impl.plugin_name
            ) -> None:
                if name in factories:
                    log.error(
                        "adapter %r from %r clashes with an earlier one; skipped", name, _plugin
                    )
                    return
                factories[name] = factory

            try:
                impl.function(register=register, config=self.config)
            except Exception as exc:
                plugins.record_failure(impl.plugin_name, "register_adapters", exc)
        return factories

    def create_adapter(self, name: str) -> ChatAdapter:
        factories = self.adapter_factories()
        factory = factories.get(name)
        if factory is None:
            known = ", ".join(sorted(factories)) or "none"
            raise KeyError(f"no adapter named {name!r} (available: {known})")
        adapter = factory(self)
        self.adapters.append(adapter)
        return adapter

    async def run(self, names: list[str]) -> int:
        """Start every named adapter and serve until SIGTERM/SIGINT."""
        if not names:
            log.error("no adapters enabled: set `adapters: [slack]` (or matrix, web) in the config")
            return 2
        if not self.config.access.allowed_users:
            log.warning(
                "access.allowed_users is empty: nobody on chat platforms can use the bot "
                "until you list them"
            )
        await self._warn_if_unsandboxed()
        started: list[ChatAdapter] = []
        for name in names:
            try:
                adapter = self.create_adapter(name)
                await adapter.start(self.sessions)
            except ModuleNotFoundError as exc:
                log.error(
                    "adapter %s needs %s, which is not installed: pip install 'threadwright[%s]'",
                    name,
                    exc.name,
                    name,
                )
                for other in started:
                    await other.stop()
                return 1
            except Exception as exc:
                log.error("adapter %s failed to start: %s", name, exc)
                for other in started:
                    await other.stop()
                return 1
            started.append(adapter)
            log.info("adapter %s started", name)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        try:
            from bot.restarts import resume_after_restart

            try:
                await resume_after_restart(self.sessions)
            except Exception:
                log.exception("resuming sessions after a restart failed")
            await self._stop.wait()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            await self.shutdown()
        return 0

    async def _warn_if_unsandboxed(self) -> None:
        from bot.policy.sandbox import sandbox_missing_reason

        # Also probes bwrap once, off the loop, before the first command needs it.
        missing = await asyncio.to_thread(sandbox_missing_reason, self.config)
        if missing is not None:
            log.warning(
                "NO SANDBOX: %s. Every shell command in chat will need an approval "
                "(tools.bash.sandbox: auto fails closed). Run `threadwright doctor` for the fix.",
                missing,
            )

    def request_stop(self) -> None:
        self._stop.set()

    async def shutdown(self) -> None:
        """Pause running sessions at a boundary (bounded), tell their threads, stop adapters."""
        from bot.restarts import pause_for_restart

        await pause_for_restart(self.sessions, self.config.sessions.shutdown_grace)
        for adapter in self.adapters:
            try:
                await adapter.stop()
            except Exception:
                log.exception("adapter %s failed to stop", adapter.name)

    async def close(self) -> None:
        if self._runtime is None:
            return
        plugins = self._runtime.plugins
        try:
            await asyncio.wait_for(plugins.acall_each("shutdown", host=self), timeout=10)
        except TimeoutError:
            log.error("plugin shutdown hooks took longer than 10 s")
        await self._runtime.close()
        self._runtime = None
