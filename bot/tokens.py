"""Cheap token estimates, corrected by what the server reports.

No tokenizer is downloaded at run time: a message costs about one token per
``CHARS_PER_TOKEN`` characters of its text plus a few tokens of chat-template
framing. That guess is deliberately a little high for English and code. After
each call, Ollama's ``prompt_eval_count`` tells how many tokens the prompt
really had; the ratio (actual / estimated) becomes a per-model correction
factor, smoothed so one odd reading cannot swing it.

Ollama reuses the KV cache of a prompt prefix it has seen, and then counts only
the new tokens in ``prompt_eval_count``. A reading far below the estimate is
therefore ambiguous (a cache hit, not a smaller prompt) and only readings at
or above ``CACHE_HIT_RATIO`` times the estimate adjust the factor.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

CHARS_PER_TOKEN = 3.5
MESSAGE_OVERHEAD = 4  # role markers and separators of the chat template
CACHE_HIT_RATIO = 0.6
MIN_FACTOR, MAX_FACTOR = 0.5, 3.0
SMOOTHING = 0.3  # weight of the newest reading


def estimate_text(text: str) -> int:
    """Tokens in ``text`` by the character rule (uncorrected)."""
    if not text:
        return 0
    return int(len(text) / CHARS_PER_TOKEN) + 1


def estimate_message(message: Mapping[str, Any]) -> int:
    """Tokens one chat message costs, tool calls included (uncorrected)."""
    total = MESSAGE_OVERHEAD + estimate_text(str(message.get("content") or ""))
    for call in message.get("tool_calls") or ():
        function = call.get("function", {})
        total += 3 + estimate_text(str(function.get("name", "")))
        arguments = function.get("arguments")
        total += estimate_text(
            arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
        )
    return total


def estimate_tools(schemas: Iterable[Mapping[str, Any]]) -> int:
    """Tokens the tool schemas add to every prompt (uncorrected)."""
    return sum(estimate_text(json.dumps(s, separators=(",", ":"))) for s in schemas)


class TokenCounter:
    """Estimates per model, corrected from the server's counts."""

    def __init__(self) -> None:
        self._factor: dict[str, float] = {}

    def factor(self, model: str) -> float:
        return self._factor.get(model, 1.0)

    def estimate(
        self,
        messages: Iterable[Mapping[str, Any]],
        model: str = "",
        tools: Iterable[Mapping[str, Any]] = (),
    ) -> int:
        raw = sum(estimate_message(m) for m in messages) + estimate_tools(tools)
        return int(raw * self.factor(model)) + 1

    def scale(self, raw: int, model: str = "") -> int:
        """A raw (uncorrected) estimate in this model's corrected units."""
        return int(raw * self.factor(model)) + 1

    def observe(self, model: str, raw_estimate: int, prompt_eval_count: int | None) -> None:
        """Feed one server reading for a prompt whose uncorrected estimate was ``raw_estimate``."""
        if not prompt_eval_count or raw_estimate <= 0:
            return
        ratio = prompt_eval_count / raw_estimate
        current = self.factor(model)
        if ratio < CACHE_HIT_RATIO * current:
            return  # most likely a KV-cache hit: the count covers only the new suffix
        ratio = min(MAX_FACTOR, max(MIN_FACTOR, ratio))
        self._factor[model] = current + SMOOTHING * (ratio - current)
