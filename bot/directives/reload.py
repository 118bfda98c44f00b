"""Hot reload: notice directive edits and hand the host a fresh set.

The watcher wakes on file events from ``watchfiles`` (inotify and friends,
debounced) in the workspace's ``.agent/`` and ``.claude/commands/`` folders,
and also every ``poll_interval`` seconds. Each wake-up runs the loader's cheap
fingerprint check (a scan and a ``stat`` per file, in a worker thread), so
events are only a hint: changes the watcher cannot see (AGENTS.md at the root,
a folder created after the watch began, the packaged defaults) are still
picked up within a poll interval, and when the watched folders appear or
vanish the watcher restarts on the new list. Without ``watchfiles`` (or with
``backend="poll"``) the same check simply runs every ``poll_interval``.

Nothing here raises because of a file: broken files become problems in the
new set, and a failing ``on_change`` or watcher is logged and watching goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Literal

from bot.directives.directive_set import DirectiveSet

if TYPE_CHECKING:
    from bot.directives.loader import DirectiveLoader

log = logging.getLogger(__name__)

OnChange = Callable[[DirectiveSet], Awaitable[None] | None]


def _watchfiles() -> ModuleType | None:
    try:
        import watchfiles
    except ImportError:
        return None
    return watchfiles


async def watch_directives(
    loader: DirectiveLoader,
    on_change: OnChange,
    *,
    stop: asyncio.Event,
    debounce_ms: int = 200,
    poll_interval: float = 1.0,
    backend: Literal["auto", "watchfiles", "poll"] = "auto",
) -> None:
    """Call ``on_change(new_set)`` after every change until ``stop`` is set."""
    watchfiles = _watchfiles() if backend != "poll" else None
    if backend == "watchfiles" and watchfiles is None:
        log.warning("watchfiles is not installed; polling directive files instead")
    if not loader.has_loaded:
        await asyncio.to_thread(loader.load)
    while not stop.is_set():
        directories = await asyncio.to_thread(loader.watched_directories)
        if watchfiles is not None and directories:
            await _watch_events(
                watchfiles, loader, directories, on_change, stop, debounce_ms, poll_interval
            )
        else:
            await _sleep_unless_stopped(stop, poll_interval)
            await _reload_and_notify(loader, on_change)


async def _watch_events(
    watchfiles: ModuleType,
    loader: DirectiveLoader,
    directories: list[Path],
    on_change: OnChange,
    stop: asyncio.Event,
    debounce_ms: int,
    poll_interval: float,
) -> None:
    events = watchfiles.awatch(
        *directories,
        stop_event=stop,
        debounce=debounce_ms,
        step=50,
        rust_timeout=max(int(poll_interval * 1000), 1),
        yield_on_timeout=True,
    )
    try:
        async with contextlib.aclosing(events):
            async for _changes in events:
                await _reload_and_notify(loader, on_change)
                if await asyncio.to_thread(loader.watched_directories) != directories:
                    return
    except Exception:
        log.exception("directive file watcher failed; checking by polling for a while")
        await _sleep_unless_stopped(stop, poll_interval)


async def _reload_and_notify(loader: DirectiveLoader, on_change: OnChange) -> None:
    try:
        new_set = await asyncio.to_thread(loader.reload_if_changed)
    except Exception:
        log.exception("reloading directives failed")
        return
    if new_set is None:
        return
    try:
        result = on_change(new_set)
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.exception("directive change callback failed")


async def _sleep_unless_stopped(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
