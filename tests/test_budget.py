"""Token and cost accounting, and the store's routing-decision contract."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.budget import BudgetLedger, start_of_day
from bot.config import Config, ModelEndpoint
from bot.store.base import SessionRecord, Store, open_store

CLOUD = "big:cloud"
LOCAL = "small:4b"


@pytest.fixture(params=["sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    s = await open_store(tmp_path / "store.db")
    yield s
    await s.close()


def priced_config(**budget: float) -> Config:
    config = Config()
    config.routing.models = {
        CLOUD: ModelEndpoint(price_per_mtok_in=3.0, price_per_mtok_out=15.0),
        LOCAL: ModelEndpoint(),
    }
    for key, value in budget.items():
        setattr(config.budget, key, value)
    return config


def entry(model: str, cloud: bool, prompt: int, completion: int, cost: float, **kw: object):
    return {
        "step": 1,
        "model": model,
        "route": "cloud" if cloud else "local",
        "cloud": cloud,
        "score": 0.5,
        "signals": {"files_touched": 2},
        "reasons": ["because"],
        "latency_ms": 12.5,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cost_usd": cost,
        **kw,
    }


def test_cost_per_million_tokens() -> None:
    ledger = BudgetLedger(priced_config())
    assert ledger.cost(CLOUD, 1_000_000, 0) == 3.0
    assert ledger.cost(CLOUD, 2_000, 1_000) == pytest.approx(0.006 + 0.015)
    assert ledger.cost(LOCAL, 10**9, 10**9) == 0.0
    assert ledger.cost("unlisted:7b", 10**6, 10**6) == 0.0


def test_session_and_daily_limits() -> None:
    ledger = BudgetLedger(priced_config(session_cloud_usd=0.052, daily_cloud_tokens=30_000))
    assert ledger.exhausted("s1") is None
    assert ledger.add("s1", CLOUD, True, 10_000, 1_000) == pytest.approx(0.045)
    ledger.add("s1", LOCAL, False, 50_000, 5_000)  # local tokens never count against a budget
    assert ledger.exhausted("s1") is None
    ledger.add("s1", CLOUD, True, 2_000, 100)
    assert "this session's cloud budget is used up" in (ledger.exhausted("s1") or "")
    # Another session has its own money, but shares the day's tokens.
    assert ledger.exhausted("s2") is None
    ledger.add("s2", CLOUD, True, 17_000, 0)
    assert ledger.exhausted("s2") == "today's cloud token budget is used up (30100 of 30000)"
    assert ledger.per_model[LOCAL].tokens == 55_000 and ledger.per_model[CLOUD].calls == 3


async def test_route_decisions_contract(store: Store) -> None:
    now = time.time()
    await store.create_session(SessionRecord("s1", "t|r|1", "alice", "task", "idle", now, now))
    await store.add_route_decision("s1", entry(LOCAL, False, 100, 10, 0.0))
    await store.add_route_decision("s1", entry(CLOUD, True, 1000, 100, 0.0045, step=2))
    await store.add_route_decision("s2", entry(CLOUD, True, 500, 50, 0.002, ts=now - 3 * 86400))
    decisions = await store.list_route_decisions("s1")
    assert [(d["step"], d["model"], d["cloud"]) for d in decisions] == [
        (1, LOCAL, False),
        (2, CLOUD, True),
    ]
    assert decisions[0]["signals"] == {"files_touched": 2}
    assert decisions[0]["reasons"] == ["because"] and decisions[0]["latency_ms"] == 12.5
    assert await store.list_route_decisions("nobody") == []
    usage = await store.route_usage(session_id="s1")
    assert usage[LOCAL] == {"prompt_tokens": 100, "completion_tokens": 10, "cost_usd": 0.0} | {
        "calls": 1
    }
    assert usage[CLOUD]["cost_usd"] == pytest.approx(0.0045)
    assert set(await store.route_usage(cloud=True)) == {CLOUD}
    assert (await store.route_usage(cloud=True))[CLOUD]["calls"] == 2
    assert (await store.route_usage(since=now - 3600, cloud=True))[CLOUD]["calls"] == 1


async def test_ledger_rebuilds_from_the_store(store: Store) -> None:
    today = start_of_day() + 60
    await store.add_route_decision("s1", entry(CLOUD, True, 10_000, 1_000, 0.045, ts=today))
    await store.add_route_decision("s9", entry(CLOUD, True, 1_000, 0, 0.003, ts=today))
    await store.add_route_decision("s1", entry(LOCAL, False, 99_999, 0, 0.0, ts=today))
    ledger = BudgetLedger(priced_config(session_cloud_usd=0.04, daily_cloud_usd=1.0))
    await ledger.load(store, "s1")
    assert ledger.session_cloud["s1"].tokens == 11_000
    assert ledger.day_cloud.cost_usd == pytest.approx(0.048)
    assert "this session's cloud budget" in (ledger.exhausted("s1") or "")
    await ledger.load(store, "s2")
    assert ledger.exhausted("s2") is None
