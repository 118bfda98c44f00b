"""Observability: health, Prometheus metrics, and the API adapters report chat traffic to.

The HTTP endpoint (:mod:`bot.observability.server`) serves ``/healthz``,
``/metrics`` and ``/status`` on loopback by default (config section
``observability``). Session metrics are fed by the built-in plugin
``plugins.observability`` from the ``session_event`` hook, so the loop knows
nothing about them.

Adapters report what only they can see, through the functions below. They are
cheap no-ops until the endpoint is enabled (``threadwright chat`` never loads
the Prometheus client)::

    from bot import observability

    observability.chat_post("slack")          # a new message was posted
    observability.chat_edit("slack")          # an existing message was edited
    observability.chat_rate_limited("slack")  # the platform answered 429 / M_LIMIT_EXCEEDED
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.observability.metrics import Metrics

_active: Metrics | None = None


def activate(metrics: Metrics | None) -> None:
    """Make ``metrics`` the sink of the functions below (None turns them off)."""
    global _active
    _active = metrics


def active_metrics() -> Metrics | None:
    return _active


def chat_post(platform: str) -> None:
    """An adapter posted a new message (a reply, a notice, an approval question)."""
    if _active is not None:
        _active.chat_post(platform)


def chat_edit(platform: str) -> None:
    """An adapter edited one of its messages (streaming a growing reply)."""
    if _active is not None:
        _active.chat_edit(platform)


def chat_rate_limited(platform: str, retry_after: float | None = None) -> None:
    """The platform refused a call for now (HTTP 429, Matrix ``M_LIMIT_EXCEEDED``)."""
    if _active is not None:
        _active.chat_rate_limited(platform, retry_after)


__all__ = ["activate", "active_metrics", "chat_edit", "chat_post", "chat_rate_limited"]
