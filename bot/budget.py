"""Token and cost accounting: per model, per session and per day.

Prices come from ``routing.models.<name>.price_per_mtok_in/out`` (US dollars
per million tokens; zero, the default, for local models). Totals live in
memory and are rebuilt from the store's routing decisions when a session or
a day is first seen, so a restart does not reset a budget.

When a cloud budget (``budget.session_cloud_*`` or ``budget.daily_cloud_*``)
is reached, the session does not stop or fail: it continues on local models
only and says so once in the thread. We chose this over pausing to ask,
because a paused session holds its thread while nobody may be watching, and
the local model is free; anyone who wants the big model back raises the limit
or starts a new session tomorrow.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.config import Config
    from bot.store.base import Store


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    calls: int = 0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, prompt_tokens: int, completion_tokens: int, cost_usd: float) -> None:
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.cost_usd += cost_usd
        self.calls += 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": round(self.cost_usd, 6),
            "calls": self.calls,
        }


def start_of_day(now: float | None = None) -> float:
    """Local midnight before ``now``: daily budgets follow the operator's clock."""
    moment = datetime.fromtimestamp(time.time() if now is None else now)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


class BudgetLedger:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.per_model: dict[str, Usage] = {}
        self.session_cloud: dict[str, Usage] = {}
        self._day_start = 0.0
        self.day_cloud = Usage()

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        endpoint = self.config.routing.models.get(model)
        if endpoint is None:
            return 0.0
        return (
            prompt_tokens * endpoint.price_per_mtok_in
            + completion_tokens * endpoint.price_per_mtok_out
        ) / 1_000_000

    async def load(self, store: Store, session_id: str) -> None:
        """Rebuild today's and this session's cloud totals from the store, once each."""
        day = start_of_day()
        if day != self._day_start:
            self._day_start = day
            self.day_cloud = _sum(await store.route_usage(since=day, cloud=True))
        if session_id not in self.session_cloud:
            self.session_cloud[session_id] = _sum(
                await store.route_usage(session_id=session_id, cloud=True)
            )

    def add(
        self, session_id: str, model: str, cloud: bool, prompt_tokens: int, completion_tokens: int
    ) -> float:
        """Count one call; returns its cost."""
        cost = self.cost(model, prompt_tokens, completion_tokens)
        self.per_model.setdefault(model, Usage()).add(prompt_tokens, completion_tokens, cost)
        if cloud:
            if start_of_day() != self._day_start:
                self._day_start, self.day_cloud = start_of_day(), Usage()
            self.day_cloud.add(prompt_tokens, completion_tokens, cost)
            self.session_cloud.setdefault(session_id, Usage()).add(
                prompt_tokens, completion_tokens, cost
            )
        return cost

    def exhausted(self, session_id: str) -> str | None:
        """Why cloud calls must stop now, or None while every budget has room."""
        limits = self.config.budget
        session = self.session_cloud.get(session_id, Usage())
        checks = [
            (limits.session_cloud_usd, session.cost_usd, "this session's cloud budget", "$"),
            (limits.daily_cloud_usd, self.day_cloud.cost_usd, "today's cloud budget", "$"),
            (limits.session_cloud_tokens, session.tokens, "this session's cloud token budget", ""),
            (limits.daily_cloud_tokens, self.day_cloud.tokens, "today's cloud token budget", ""),
        ]
        for limit, used, what, unit in checks:
            if limit is not None and used >= limit:
                shown = f"${used:.4f} of ${limit:.4f}" if unit else f"{used} of {limit}"
                return f"{what} is used up ({shown})"
        return None


def _sum(rows: dict[str, dict[str, float]]) -> Usage:
    usage = Usage()
    for row in rows.values():
        usage.prompt_tokens += int(row.get("prompt_tokens", 0))
        usage.completion_tokens += int(row.get("completion_tokens", 0))
        usage.cost_usd += float(row.get("cost_usd", 0.0))
        usage.calls += int(row.get("calls", 0))
    return usage
