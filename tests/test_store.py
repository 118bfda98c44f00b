"""The store contract, run against every implementation."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.store.base import SessionRecord, Store, open_store


@pytest.fixture(params=["sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    s = await open_store(tmp_path / "store.db")
    yield s
    await s.close()


def _record(sid: str, thread: str = "console|local|t1") -> SessionRecord:
    now = time.time()
    return SessionRecord(sid, thread, "alice", "fix it", "idle", now, now)


async def test_session_roundtrip(store: Store) -> None:
    await store.create_session(_record("abc123"))
    await store.update_session("abc123", status="running", stats={"steps": 3})
    got = await store.get_session("abc123")
    assert got is not None and got.status == "running" and got.stats == {"steps": 3}
    assert (await store.find_session_by_thread("console|local|t1")).id == "abc123"  # type: ignore[union-attr]
    assert [r.id for r in await store.find_session_by_prefix("abc")] == ["abc123"]
    assert await store.find_session_by_prefix("zzz") == []
    assert [r.id for r in await store.list_sessions(status="running")] == ["abc123"]


async def test_unknown_update_field_rejected(store: Store) -> None:
    await store.create_session(_record("s1"))
    with pytest.raises(ValueError):
        await store.update_session("s1", colour="red")


async def test_transcript_appends_in_order(store: Store) -> None:
    await store.create_session(_record("s1"))
    await store.append_messages("s1", [{"role": "user", "content": "a"}])
    await store.append_messages(
        "s1", [{"role": "assistant", "content": "b"}, {"role": "tool", "content": "c"}]
    )
    assert [m["content"] for m in await store.load_messages("s1")] == ["a", "b", "c"]


async def test_transcript_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    first = await open_store(path)
    await first.create_session(_record("s1"))
    await first.append_messages("s1", [{"role": "user", "content": "keep me"}])
    await first.close()
    second = await open_store(path)
    try:
        assert await second.load_messages("s1") == [{"role": "user", "content": "keep me"}]
        await second.append_messages("s1", [{"role": "assistant", "content": "next"}])
        assert len(await second.load_messages("s1")) == 2
    finally:
        await second.close()


async def test_steering_pending_and_applied(store: Store) -> None:
    await store.create_session(_record("s1"))
    a = await store.add_steering("s1", "bob", "use argparse", "m1", time.time())
    b = await store.add_steering("s1", "bob", "and tests", "m2", time.time())
    assert [s.text for s in await store.pending_steering("s1")] == ["use argparse", "and tests"]
    await store.mark_steering_applied([a], time.time())
    assert [s.id for s in await store.pending_steering("s1")] == [b]


async def test_seen_events_dedupe(store: Store) -> None:
    assert await store.mark_event_seen("Ev1", time.time()) is True
    assert await store.mark_event_seen("Ev1", time.time()) is False
    await store.check_writable()
