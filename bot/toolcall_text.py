"""Recognising tool calls that small models write as text instead of ``tool_calls``.

Two shapes are common: ``<tool_call>{"name": …, "arguments": {…}}</tool_call>``
(Qwen's template leaking through) and a bare JSON object that is the whole
answer. Only names of registered tools count, so ordinary JSON in an answer
is never mistaken for a call.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Collection
from typing import Any

from bot.models.base import ToolCall

_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
_FENCED = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def _as_call(obj: Any, known: Collection[str]) -> ToolCall | None:
    if not isinstance(obj, dict):
        return None
    if "function" in obj and isinstance(obj["function"], dict):
        obj = obj["function"]
    name = obj.get("name")
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            return None
    if not isinstance(name, str) or name not in known or not isinstance(args, dict):
        return None
    return ToolCall(id=f"call_{uuid.uuid4().hex[:8]}", name=name, arguments=args)


def extract_text_tool_calls(content: str, known: Collection[str]) -> tuple[list[ToolCall], str]:
    """Return the tool calls written in ``content`` and the text left around them."""
    if "<tool_call>" in content:
        calls: list[ToolCall] = []
        for block in _TAGGED.findall(content):
            try:
                call = _as_call(json.loads(block), known)
            except json.JSONDecodeError:
                continue
            if call:
                calls.append(call)
        if calls:
            return calls, _TAGGED.sub("", content).strip()
        return [], content
    stripped = content.strip()
    fenced = _FENCED.match(stripped)
    if fenced:
        stripped = fenced.group(1)
    if not (stripped.startswith("{") and stripped.endswith("}")) and not (
        stripped.startswith("[") and stripped.endswith("]")
    ):
        return [], content
    try:
        obj = json.loads(stripped)
    except json.JSONDecodeError:
        return [], content
    items = obj if isinstance(obj, list) else [obj]
    found = [c for c in (_as_call(o, known) for o in items) if c]
    if found and len(found) == len(items):
        return found, ""
    return [], content
