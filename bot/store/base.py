"""The store interface. SQLite is the embedded default (:mod:`bot.store.sqlite`).

Every method is a coroutine; implementations keep blocking I/O off the event
loop. One contract test suite (``tests/test_store.py``) runs against every
implementation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass(slots=True)
class SessionRecord:
    id: str
    thread_key: str
    requester: str
    task: str
    status: str  # running | idle | completed | cancelled | failed | interrupted
    created_at: float
    updated_at: float
    workspace: str = ""
    stats: dict[str, Any] = field(default_factory=dict)
    scratchpad: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class StoredSteering:
    id: int
    session_id: str
    author: str
    text: str
    message_id: str
    received_at: float
    applied_at: float | None


@dataclass(slots=True)
class AuditEntry:
    """One tool call as the audit log keeps it: who, where, what ran, the verdict."""

    ts: float
    session_id: str
    thread: str
    requester: str
    tool: str
    arguments: dict[str, Any]
    ran: str  # what would run, after parsing (for bash: the programs)
    verdict: str
    ok: bool
    exit_code: int | None
    duration_ms: float


class Store(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...

    async def create_session(self, record: SessionRecord) -> None: ...
    async def get_session(self, session_id: str) -> SessionRecord | None: ...
    async def find_session_by_thread(self, thread_key: str) -> SessionRecord | None: ...
    async def find_session_by_prefix(self, prefix: str) -> list[SessionRecord]: ...
    async def update_session(self, session_id: str, **fields: Any) -> None: ...
    async def list_sessions(
        self, *, status: str | None = None, limit: int = 50
    ) -> list[SessionRecord]: ...

    async def append_messages(self, session_id: str, messages: list[dict[str, Any]]) -> None: ...
    async def load_messages(self, session_id: str) -> list[dict[str, Any]]: ...

    async def add_steering(
        self, session_id: str, author: str, text: str, message_id: str, received_at: float
    ) -> int: ...
    async def pending_steering(self, session_id: str) -> list[StoredSteering]: ...
    async def mark_steering_applied(self, ids: list[int], applied_at: float) -> None: ...

    async def mark_event_seen(self, event_id: str, seen_at: float) -> bool:
        """Record a delivery id; False when it was seen before (a duplicate)."""
        ...

    async def add_audit(self, entry: AuditEntry) -> None:
        """Record one tool call and its verdict (allowed, approved by X, denied, …)."""
        ...

    async def list_audit(
        self,
        *,
        session_id: str | None = None,
        tool: str | None = None,
        verdict: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        """Newest first; ``verdict`` matches as a prefix (``approved`` finds every approver)."""
        ...

    async def check_writable(self) -> None: ...

    async def add_route_decision(self, session_id: str, entry: dict[str, Any]) -> None:
        """Record one routing decision: ``step``, ``model``, ``route``, ``cloud``, ``score``,
        ``signals``, ``reasons``, ``latency_ms``, ``prompt_tokens``, ``completion_tokens``,
        ``cost_usd`` (``ts`` defaults to now)."""
        ...

    async def list_route_decisions(self, session_id: str) -> list[dict[str, Any]]:
        """A session's decisions in the order they were made."""
        ...

    async def route_usage(
        self,
        *,
        session_id: str | None = None,
        since: float | None = None,
        cloud: bool | None = None,
    ) -> dict[str, dict[str, float]]:
        """Totals per model (``prompt_tokens``, ``completion_tokens``, ``cost_usd``, ``calls``)."""
        ...


async def open_store(path: str | Path) -> Store:
    from bot.store.sqlite import SQLiteStore

    store = SQLiteStore(path)
    await store.open()
    return store
