"""The complexity score: how hard the next step looks, from 0.0 to 1.0.

Computed before every model call from signals anyone can observe in the
session; each contributes a documented amount and the sum is clipped to
[0, 1]. ``routing.complexity_threshold`` (0.75 by default) splits local from
big. The weights were chosen so that no single mechanical signal crosses the
default threshold alone, but a declared ``complexity: high`` does, and two or
three together (a multi-file refactor that keeps failing) do.

- files touched so far (read/write/edit paths): 0.05 per file after the
  first, at most 0.25;
- distinct tools used: 0.03 per tool after the second, at most 0.10;
- failed tools in a row: 0.10 each, at most 0.30;
- malformed tool calls in a row (unknown tool, invalid arguments): 0.15
  each, at most 0.30;
- size of the request (characters of the task): nothing below 1,000, 0.15
  at 6,000 and above, linear between;
- workspace slice in play (estimated prompt tokens / num_ctx): up to 0.10
  once the prompt fills more than a quarter of the window;
- task keywords (architecture, refactor across, multi-file, …): 0.20 for the
  first, 0.10 for each further one, at most 0.35;
- the command's declared complexity: low -0.20, medium +0.25, high +0.80.

An explicit wish (``--cloud``, ``--local``, "use the big model", a ``/model``
reply) is not weighed: it decides, and the score is recorded beside it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

Wish = Literal["cloud", "local"]

WEIGHTS: dict[str, float] = {
    "file": 0.05,
    "files_max": 0.25,
    "tool": 0.03,
    "tools_max": 0.10,
    "tool_failure": 0.10,
    "tool_failures_max": 0.30,
    "malformed": 0.15,
    "malformed_max": 0.30,
    "request_max": 0.15,
    "context_max": 0.10,
    "keyword_first": 0.20,
    "keyword_next": 0.10,
    "keywords_max": 0.35,
}
REQUEST_LOW_CHARS, REQUEST_HIGH_CHARS = 1_000, 6_000
DECLARED: dict[str, float] = {"low": -0.20, "medium": 0.25, "high": 0.80}

KEYWORDS = (
    "architecture",
    "architect",
    "redesign",
    "refactor across",
    "across the codebase",
    "across modules",
    "multi-file",
    "multiple files",
    "migrate",
    "migration",
    "concurrency",
    "race condition",
    "deadlock",
    "security audit",
    "performance",
    "design a",
)

_CLOUD_WISH = re.compile(
    r"(?:^|\s)--(?:cloud|big)\b|\buse (?:the )?(?:big|cloud|large|bigger) model\b"
    r"|^\s*[/!]model\s+(?:cloud|big)\b",
    re.IGNORECASE | re.MULTILINE,
)
_LOCAL_WISH = re.compile(
    r"(?:^|\s)--local\b|\buse (?:the )?(?:local|small) model\b"
    r"|^\s*[/!]model\s+(?:local|small)\b",
    re.IGNORECASE | re.MULTILINE,
)


def parse_wish(text: str) -> Wish | None:
    """The model a message asks for explicitly; the later mention wins when both appear."""
    cloud = [m.start() for m in _CLOUD_WISH.finditer(text)]
    local = [m.start() for m in _LOCAL_WISH.finditer(text)]
    if not cloud and not local:
        return None
    if not local:
        return "cloud"
    if not cloud:
        return "local"
    return "cloud" if max(cloud) > max(local) else "local"


def matched_keywords(text: str) -> list[str]:
    lowered = text.lower()
    return [k for k in KEYWORDS if k in lowered]


@dataclass(slots=True)
class Signals:
    """What the score looks at for one step."""

    files_touched: int = 0
    distinct_tools: int = 0
    tool_failures_in_row: int = 0
    malformed_in_row: int = 0
    request_chars: int = 0
    context_tokens: int = 0
    num_ctx: int = 0
    keywords: list[str] = field(default_factory=list)
    declared: str | None = None  # the command's complexity: low | medium | high

    def to_dict(self) -> dict[str, Any]:
        return {
            "files_touched": self.files_touched,
            "distinct_tools": self.distinct_tools,
            "tool_failures_in_row": self.tool_failures_in_row,
            "malformed_in_row": self.malformed_in_row,
            "request_chars": self.request_chars,
            "context_tokens": self.context_tokens,
            "num_ctx": self.num_ctx,
            "keywords": list(self.keywords),
            "declared": self.declared,
        }


def score(signals: Signals) -> tuple[float, list[str]]:
    """The score and, for every signal that contributed, why."""
    w = WEIGHTS
    parts: list[tuple[float, str]] = []
    if signals.files_touched > 1:
        value = min(w["files_max"], w["file"] * (signals.files_touched - 1))
        parts.append((value, f"{signals.files_touched} files touched"))
    if signals.distinct_tools > 2:
        value = min(w["tools_max"], w["tool"] * (signals.distinct_tools - 2))
        parts.append((value, f"{signals.distinct_tools} distinct tools"))
    if signals.tool_failures_in_row:
        value = min(w["tool_failures_max"], w["tool_failure"] * signals.tool_failures_in_row)
        parts.append((value, f"{signals.tool_failures_in_row} failed tools in a row"))
    if signals.malformed_in_row:
        value = min(w["malformed_max"], w["malformed"] * signals.malformed_in_row)
        parts.append((value, f"{signals.malformed_in_row} malformed tool calls in a row"))
    if signals.request_chars > REQUEST_LOW_CHARS:
        span = REQUEST_HIGH_CHARS - REQUEST_LOW_CHARS
        fraction = min(1.0, (signals.request_chars - REQUEST_LOW_CHARS) / span)
        parts.append((w["request_max"] * fraction, f"request of {signals.request_chars} chars"))
    if signals.num_ctx and signals.context_tokens:
        fraction = min(1.0, signals.context_tokens / signals.num_ctx)
        if fraction > 0.25:
            parts.append((w["context_max"] * fraction, f"prompt fills {fraction:.0%} of window"))
    if signals.keywords:
        n = len(signals.keywords)
        value = min(w["keywords_max"], w["keyword_first"] + w["keyword_next"] * (n - 1))
        parts.append((value, "keywords: " + ", ".join(signals.keywords)))
    if signals.declared in DECLARED:
        parts.append((DECLARED[signals.declared], f"command declares {signals.declared}"))
    total = sum(value for value, _ in parts)
    reasons = [f"{reason} ({value:+.2f})" for value, reason in parts if value]
    return round(min(1.0, max(0.0, total)), 3), reasons
