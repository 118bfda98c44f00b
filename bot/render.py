"""Platform-neutral text for what a session does: compact tool lines and the footer.

Chat adapters and the console all describe a tool call the same way
(``bash: pytest -q → exit 0 (12 passed)``) so a user sees one vocabulary
wherever they talk to the bot.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_PRIMARY_ARG = {
    "bash": "command",
    "read_file": "path",
    "write_file": "path",
    "edit_file": "path",
    "grep": "pattern",
    "glob": "pattern",
    "think": "thought",
}


def clip(text: str, limit: int) -> str:
    text = " ".join(text.split()) if "\n" in text else text
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_tool_call(name: str, arguments: Mapping[str, Any], limit: int = 80) -> str:
    """``bash: pytest -q`` / ``read_file: src/a.py:10-40`` / ``tool: k=v``."""
    key = _PRIMARY_ARG.get(name)
    if key and key in arguments:
        detail = str(arguments[key])
        if name == "read_file" and (arguments.get("start_line") or arguments.get("end_line")):
            detail += f":{arguments.get('start_line') or 1}-{arguments.get('end_line') or ''}"
        if name == "grep" and arguments.get("path") not in (None, "."):
            detail += f" in {arguments['path']}"
        return f"{name}: {clip(detail, limit)}"
    if not arguments:
        return name
    args = ", ".join(f"{k}={v!r}" for k, v in arguments.items())
    return f"{name}: {clip(args, limit)}"


def _tokens(n: int) -> str:
    return f"{n / 1000:.1f}k" if n >= 1000 else str(n)


def footer(stats: Mapping[str, Any], *, extra: list[str] | None = None) -> str:
    """``3 local · 1 cloud · 4 steps · 1.2k tokens · 12.3s``."""
    parts: list[str] = []
    routes = stats.get("routes") or {}
    for route in ("local", "cloud", "fallback"):
        if routes.get(route):
            parts.append(f"{routes[route]} {route}")
    steps = int(stats.get("steps", 0))
    parts.append(f"{steps} step" + ("" if steps == 1 else "s"))
    tokens = int(stats.get("prompt_tokens", 0)) + int(stats.get("completion_tokens", 0))
    parts.append(f"{_tokens(tokens)} tokens")
    cost = stats.get("cost_usd")
    if cost:
        parts.append(f"${cost:.4f}")
    parts.append(f"{float(stats.get('duration_s', 0.0)):.1f}s")
    if extra:
        parts.extend(extra)
    return " · ".join(parts)


_STOP_WORDS = {"truncated": "answer cut", "limit_reached": "run stopped"}


def stop_mark(reason: str, setting: str | None) -> str:
    """The footer's mark for a run a limit ended: ``⚠ answer cut by limits.max_step_tokens``."""
    what = _STOP_WORDS.get(reason, "run stopped")
    return f"⚠ {what} by {setting}" if setting else f"⚠ {what}"
