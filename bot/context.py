"""The context window: what of a session's history goes into the next request.

History entries are Ollama-shaped message dicts; keys starting with ``_`` are
private annotations stripped before sending (``_summary``: a one-line
summary of a tool result; ``_reasoning``: a think-tool result). The system
prompt and the first user message are pinned; the newest
``context.retain_tool_results`` tool results stay whole and older ones shrink
to their summary; think-tool traces stay in the scratchpad, out of the
history, when ``context.externalize_reasoning`` is on.
"""

from __future__ import annotations

from typing import Any

from bot.config import ContextConfig

Message = dict[str, Any]

THINK_TOOL = "think"


def public(message: Message) -> Message:
    """The message without private annotations."""
    return {k: v for k, v in message.items() if not k.startswith("_")}


class ContextWindow:
    def __init__(self, config: ContextConfig) -> None:
        self.config = config

    def build(self, system_prompt: str, history: list[Message]) -> list[Message]:
        messages: list[Message] = [{"role": "system", "content": system_prompt}]
        externalize = self.config.externalize_reasoning
        tool_positions = [
            i
            for i, m in enumerate(history)
            if m.get("role") == "tool" and not (externalize and m.get("_reasoning"))
        ]
        retain = self.config.retain_tool_results
        keep_whole = set(tool_positions[-retain:]) if retain else set()
        compress = self.config.window_strategy != "full"
        for i, message in enumerate(history):
            role = message.get("role")
            if role == "tool":
                if externalize and message.get("_reasoning"):
                    continue
                if compress and i not in keep_whole and message.get("_summary"):
                    compact = public(message)
                    compact["content"] = f"[older result, summarised] {message['_summary']}"
                    messages.append(compact)
                    continue
            elif role == "assistant" and externalize and message.get("tool_calls"):
                calls = [c for c in message["tool_calls"] if c["function"]["name"] != THINK_TOOL]
                if len(calls) != len(message["tool_calls"]):
                    if not calls and not message.get("content"):
                        continue
                    trimmed = public(message)
                    if calls:
                        trimmed["tool_calls"] = calls
                    else:
                        trimmed.pop("tool_calls", None)
                    messages.append(trimmed)
                    continue
            messages.append(public(message))
        return messages
