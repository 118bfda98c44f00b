"""SQLite store over aiosqlite: one connection, its own thread, WAL journal.

aiosqlite runs every statement on a dedicated thread, so the event loop
never waits on disk. ``synchronous=NORMAL`` under WAL keeps commits cheap
while a crash loses at most the last transaction, never a torn database.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import aiosqlite

from bot.store.base import AuditEntry, SessionRecord, StoredSteering

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    thread_key TEXT NOT NULL,
    requester TEXT NOT NULL,
    task TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    workspace TEXT NOT NULL DEFAULT '',
    stats TEXT NOT NULL DEFAULT '{}',
    scratchpad TEXT NOT NULL DEFAULT '[]',
    meta TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS sessions_thread ON sessions(thread_key);
CREATE INDEX IF NOT EXISTS sessions_status ON sessions(status);
CREATE TABLE IF NOT EXISTS messages (
    session_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    message TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (session_id, seq)
);
CREATE TABLE IF NOT EXISTS steering (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL,
    author TEXT NOT NULL,
    text TEXT NOT NULL,
    message_id TEXT NOT NULL DEFAULT '',
    received_at REAL NOT NULL,
    applied_at REAL
);
CREATE INDEX IF NOT EXISTS steering_pending ON steering(session_id, applied_at);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    session_id TEXT NOT NULL,
    thread TEXT NOT NULL,
    requester TEXT NOT NULL,
    tool TEXT NOT NULL,
    arguments TEXT NOT NULL,
    ran TEXT NOT NULL,
    verdict TEXT NOT NULL,
    ok INTEGER NOT NULL,
    exit_code INTEGER,
    duration_ms REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_ts ON audit(ts);
CREATE TABLE IF NOT EXISTS seen_events (
    event_id TEXT PRIMARY KEY,
    seen_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS route_decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    ts REAL NOT NULL,
    model TEXT NOT NULL,
    route TEXT NOT NULL,
    cloud INTEGER NOT NULL DEFAULT 0,
    score REAL NOT NULL DEFAULT 0,
    signals TEXT NOT NULL DEFAULT '{}',
    reasons TEXT NOT NULL DEFAULT '[]',
    latency_ms REAL NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS route_decisions_session ON route_decisions(session_id, id);
CREATE INDEX IF NOT EXISTS route_decisions_ts ON route_decisions(ts);
"""

_JSON_FIELDS = {"stats", "scratchpad", "meta"}
_SESSION_COLUMNS = (
    "id, thread_key, requester, task, status, created_at, updated_at, workspace, "
    "stats, scratchpad, meta"
)
# Seen-event ids older than this are pruned; platforms stop retrying long before.
SEEN_EVENTS_TTL = 7 * 24 * 3600


def _row_to_session(row: Any) -> SessionRecord:
    return SessionRecord(
        id=row[0],
        thread_key=row[1],
        requester=row[2],
        task=row[3],
        status=row[4],
        created_at=row[5],
        updated_at=row[6],
        workspace=row[7],
        stats=json.loads(row[8]),
        scratchpad=json.loads(row[9]),
        meta=json.loads(row[10]),
    )


class SQLiteStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db: aiosqlite.Connection | None = None
        self._next_seq: dict[str, int] = {}
        # Records nobody waits for (audit, routing decisions) are written behind
        # the loop's back; reads of their tables and close() settle them first.
        self._behind: set[asyncio.Task[None]] = set()

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    async def open(self) -> None:
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(str(self.path))
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute("PRAGMA synchronous=NORMAL")
        await self._db.execute("PRAGMA busy_timeout=5000")
        await self._db.executescript(SCHEMA)
        await self._db.execute(
            "DELETE FROM seen_events WHERE seen_at < ?", (time.time() - SEEN_EVENTS_TTL,)
        )
        await self._db.commit()

    def _write_behind(self, write: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(write)
        self._behind.add(task)
        task.add_done_callback(self._written)

    def _written(self, task: asyncio.Task[None]) -> None:
        self._behind.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a background store write failed", exc_info=task.exception())

    async def _settle(self) -> None:
        while self._behind:
            await asyncio.gather(*list(self._behind), return_exceptions=True)

    async def close(self) -> None:
        await self._settle()
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def create_session(self, record: SessionRecord) -> None:
        await self.db.execute(
            f"INSERT INTO sessions ({_SESSION_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                record.id,
                record.thread_key,
                record.requester,
                record.task,
                record.status,
                record.created_at,
                record.updated_at,
                record.workspace,
                json.dumps(record.stats),
                json.dumps(record.scratchpad),
                json.dumps(record.meta),
            ),
        )
        await self.db.commit()

    async def get_session(self, session_id: str) -> SessionRecord | None:
        async with self.db.execute(
            f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE id = ?", (session_id,)
        ) as cur:
            row = await cur.fetchone()
        return _row_to_session(row) if row else None

    async def find_session_by_thread(self, thread_key: str) -> SessionRecord | None:
        async with self.db.execute(
            f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE thread_key = ? "
            "ORDER BY created_at DESC LIMIT 1",
            (thread_key,),
        ) as cur:
            row = await cur.fetchone()
        return _row_to_session(row) if row else None

    async def find_session_by_prefix(self, prefix: str) -> list[SessionRecord]:
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        async with self.db.execute(
            f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE id LIKE ? ESCAPE '\\' LIMIT 10",
            (escaped + "%",),
        ) as cur:
            rows = await cur.fetchall()
        return [_row_to_session(r) for r in rows]

    async def update_session(self, session_id: str, **fields: Any) -> None:
        if not fields:
            return
        fields.setdefault("updated_at", time.time())
        allowed = set(_SESSION_COLUMNS.replace(" ", "").split(",")) - {"id"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"unknown session fields: {sorted(unknown)}")
        assignments = ", ".join(f"{name} = ?" for name in fields)
        values = [json.dumps(v) if k in _JSON_FIELDS else v for k, v in fields.items()]
        await self.db.execute(
            f"UPDATE sessions SET {assignments} WHERE id = ?", (*values, session_id)
        )
        await self.db.commit()

    async def list_sessions(
        self, *, status: str | None = None, limit: int = 50
    ) -> list[SessionRecord]:
        query = f"SELECT {_SESSION_COLUMNS} FROM sessions"
        params: tuple[Any, ...] = ()
        if status:
            query += " WHERE status = ?"
            params = (status,)
        query += " ORDER BY updated_at DESC LIMIT ?"
        async with self.db.execute(query, (*params, limit)) as cur:
            rows = await cur.fetchall()
        return [_row_to_session(r) for r in rows]

    async def _seq_start(self, session_id: str) -> int:
        if session_id not in self._next_seq:
            async with self.db.execute(
                "SELECT COALESCE(MAX(seq) + 1, 0) FROM messages WHERE session_id = ?",
                (session_id,),
            ) as cur:
                row = await cur.fetchone()
            self._next_seq[session_id] = int(row[0]) if row else 0
        return self._next_seq[session_id]

    async def append_messages(self, session_id: str, messages: list[dict[str, Any]]) -> None:
        if not messages:
            return
        start = await self._seq_start(session_id)
        now = time.time()
        rows = [
            (session_id, start + i, json.dumps(m, ensure_ascii=False), now)
            for i, m in enumerate(messages)
        ]
        self._next_seq[session_id] = start + len(messages)
        await self.db.executemany(
            "INSERT INTO messages (session_id, seq, message, created_at) VALUES (?,?,?,?)", rows
        )
        await self.db.commit()

    async def load_messages(self, session_id: str) -> list[dict[str, Any]]:
        async with self.db.execute(
            "SELECT message FROM messages WHERE session_id = ? ORDER BY seq", (session_id,)
        ) as cur:
            rows = await cur.fetchall()
        return [json.loads(r[0]) for r in rows]

    async def add_steering(
        self, session_id: str, author: str, text: str, message_id: str, received_at: float
    ) -> int:
        cur = await self.db.execute(
            "INSERT INTO steering (session_id, author, text, message_id, received_at) "
            "VALUES (?,?,?,?,?)",
            (session_id, author, text, message_id, received_at),
        )
        await self.db.commit()
        return int(cur.lastrowid or 0)

    async def pending_steering(self, session_id: str) -> list[StoredSteering]:
        async with self.db.execute(
            "SELECT id, session_id, author, text, message_id, received_at, applied_at "
            "FROM steering WHERE session_id = ? AND applied_at IS NULL ORDER BY id",
            (session_id,),
        ) as cur:
            rows = await cur.fetchall()
        return [StoredSteering(*r) for r in rows]

    async def mark_steering_applied(self, ids: list[int], applied_at: float) -> None:
        if not ids:
            return
        await self.db.executemany(
            "UPDATE steering SET applied_at = ? WHERE id = ?", [(applied_at, i) for i in ids]
        )
        await self.db.commit()

    async def mark_event_seen(self, event_id: str, seen_at: float) -> bool:
        cur = await self.db.execute(
            "INSERT OR IGNORE INTO seen_events (event_id, seen_at) VALUES (?, ?)",
            (event_id, seen_at),
        )
        await self.db.commit()
        return cur.rowcount == 1

    async def add_route_decision(self, session_id: str, entry: dict[str, Any]) -> None:
        self._write_behind(self._insert_route_decision(session_id, dict(entry)))

    async def _insert_route_decision(self, session_id: str, entry: dict[str, Any]) -> None:
        await self.db.execute(
            "INSERT INTO route_decisions (session_id, step, ts, model, route, cloud, score, "
            "signals, reasons, latency_ms, prompt_tokens, completion_tokens, cost_usd) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                session_id,
                int(entry.get("step", 0)),
                float(entry.get("ts") or time.time()),
                str(entry["model"]),
                str(entry.get("route", "")),
                1 if entry.get("cloud") else 0,
                float(entry.get("score", 0.0)),
                json.dumps(entry.get("signals") or {}, ensure_ascii=False),
                json.dumps(entry.get("reasons") or [], ensure_ascii=False),
                float(entry.get("latency_ms", 0.0)),
                int(entry.get("prompt_tokens") or 0),
                int(entry.get("completion_tokens") or 0),
                float(entry.get("cost_usd", 0.0)),
            ),
        )
        await self.db.commit()

    async def list_route_decisions(self, session_id: str) -> list[dict[str, Any]]:
        await self._settle()
        async with self.db.execute(
            "SELECT step, ts, model, route, cloud, score, signals, reasons, latency_ms, "
            "prompt_tokens, completion_tokens, cost_usd FROM route_decisions "
            "WHERE session_id = ? ORDER BY id",
            (session_id,),
        ) as cur:
            rows = await cur.fetchall()
        keys = (
            "step", "ts", "model", "route", "cloud", "score", "signals", "reasons",
            "latency_ms", "prompt_tokens", "completion_tokens", "cost_usd",
        )  # fmt: skip
        decisions = []
        for row in rows:
            entry = dict(zip(keys, row, strict=True))
            entry["cloud"] = bool(entry["cloud"])
            entry["signals"] = json.loads(entry["signals"])
            entry["reasons"] = json.loads(entry["reasons"])
            decisions.append(entry)
        return decisions

    async def route_usage(
        self,
        *,
        session_id: str | None = None,
        since: float | None = None,
        cloud: bool | None = None,
    ) -> dict[str, dict[str, float]]:
        await self._settle()
        where: list[str] = []
        params: list[Any] = []
        if session_id is not None:
            where.append("session_id = ?")
            params.append(session_id)
        if since is not None:
            where.append("ts >= ?")
            params.append(since)
        if cloud is not None:
            where.append("cloud = ?")
            params.append(1 if cloud else 0)
        query = (
            "SELECT model, SUM(prompt_tokens), SUM(completion_tokens), SUM(cost_usd), COUNT(*) "
            "FROM route_decisions"
        )
        if where:
            query += " WHERE " + " AND ".join(where)
        async with self.db.execute(query + " GROUP BY model", params) as cur:
            rows = await cur.fetchall()
        return {
            row[0]: {
                "prompt_tokens": int(row[1] or 0),
                "completion_tokens": int(row[2] or 0),
                "cost_usd": float(row[3] or 0.0),
                "calls": int(row[4]),
            }
            for row in rows
        }

    async def add_audit(self, entry: AuditEntry) -> None:
        self._write_behind(self._insert_audit(entry))

    async def _insert_audit(self, entry: AuditEntry) -> None:
        await self.db.execute(
            "INSERT INTO audit (ts, session_id, thread, requester, tool, arguments, ran, verdict, "
            "ok, exit_code, duration_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                entry.ts,
                entry.session_id,
                entry.thread,
                entry.requester,
                entry.tool,
                json.dumps(entry.arguments, ensure_ascii=False),
                entry.ran,
                entry.verdict,
                int(entry.ok),
                entry.exit_code,
                entry.duration_ms,
            ),
        )
        await self.db.commit()

    async def list_audit(
        self,
        *,
        session_id: str | None = None,
        tool: str | None = None,
        verdict: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        await self._settle()
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("session_id", session_id), ("tool", tool)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if verdict is not None:
            clauses.append("verdict LIKE ? ESCAPE '\\'")
            params.append(verdict.replace("%", "\\%").replace("_", "\\_") + "%")
        if since is not None:
            clauses.append("ts >= ?")
            params.append(since)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        async with self.db.execute(
            "SELECT ts, session_id, thread, requester, tool, arguments, ran, verdict, ok, "
            f"exit_code, duration_ms FROM audit{where} ORDER BY id DESC LIMIT ?",
            (*params, limit),
        ) as cur:
            rows = await cur.fetchall()
        return [
            AuditEntry(
                r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], r[7], bool(r[8]), r[9], r[10]
            )
            for r in rows
        ]

    async def check_writable(self) -> None:
        await self.db.execute(
            "INSERT OR REPLACE INTO seen_events (event_id, seen_at) VALUES ('__healthcheck__', ?)",
            (time.time(),),
        )
        await self.db.commit()
