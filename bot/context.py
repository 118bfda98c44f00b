"""The context window: what of a session's history goes into the next request.

History entries are Ollama-shaped message dicts; keys starting with ``_`` are
private annotations stripped before sending (``_summary``: a one-line
summary of a tool result; ``_reasoning``: a think-tool result;
``_compaction``: a summary of earlier steps standing in for them).

:meth:`ContextWindow.build` applies the priorities without a size limit: the
system prompt (persona and project memory) and the first user message (the
original task) are pinned; the newest ``context.retain_tool_results`` tool
results stay whole and older ones shrink to their summary; with
``context.compress_diffs`` an older diff becomes a stat line and older
write/edit arguments shrink to their size; think-tool traces stay in the
scratchpad, out of the history, when ``context.externalize_reasoning`` is on.

:meth:`ContextWindow.fit` also keeps the prompt inside ``num_ctx`` minus
``context.reserve_tokens``: when the compressed history still does not fit,
the oldest steps (an assistant message with its tool results) are left out,
down to a low-water mark so the prompt's prefix — and the server's KV cache —
stays stable for several steps. User messages (the task, follow-ups and
every steering message) are never left out. :meth:`ContextWindow.prepare`
first tries auto-compaction: the steps that would be left out are summarised
by the local model into one message, recorded in the history.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bot.config import ContextConfig
from bot.tokens import TokenCounter, estimate_message, estimate_tools

log = logging.getLogger(__name__)

Message = dict[str, Any]
Summariser = Callable[[list[Message]], Awaitable[str]]

THINK_TOOL = "think"
DIFF_TOOLS_ARGS = {
    "write_file": ("content",),
    "edit_file": ("old_string", "new_string", "old", "new"),
}
LARGE_ARGUMENT = 300  # characters: older write/edit arguments above this shrink to a size
NOTE_TOKENS = 40
LOW_WATER = 0.7  # after leaving steps out, the prompt fills at most this much of its budget
COMPACTION_PREFIX = "[Summary of earlier steps, written to save space]"
_DIFF_FILE = re.compile(r"^(?:diff --git a/\S+ b/(\S+)|\+\+\+ (?:b/)?(\S+))", re.MULTILINE)


def public(message: Message) -> Message:
    """The message without private annotations."""
    return {k: v for k, v in message.items() if not k.startswith("_")}


def diff_stat(text: str) -> str | None:
    """``diff: 2 files, +10 -3 (a.py +8 -1, b.py +2 -2)`` for a unified diff, else None."""
    if "\n@@" not in text and not text.startswith("@@"):
        return None
    files: dict[str, list[int]] = {}
    current = "?"
    for line in text.splitlines():
        match = _DIFF_FILE.match(line)
        if match:
            current = match.group(1) or match.group(2)
            files.setdefault(current, [0, 0])
        elif line.startswith("+") and not line.startswith("+++"):
            files.setdefault(current, [0, 0])[0] += 1
        elif line.startswith("-") and not line.startswith("---"):
            files.setdefault(current, [0, 0])[1] += 1
    if not files:
        return None
    added = sum(a for a, _ in files.values())
    removed = sum(r for _, r in files.values())
    each = ", ".join(f"{name} +{a} -{r}" for name, (a, r) in list(files.items())[:8])
    more = f", … {len(files) - 8} more" if len(files) > 8 else ""
    plural = "s" if len(files) != 1 else ""
    return f"diff: {len(files)} file{plural}, +{added} -{removed} ({each}{more})"


def is_compaction(message: Message) -> bool:
    return "_compaction" in message


@dataclass(slots=True)
class BuiltPrompt:
    messages: list[Message]
    tokens: int  # corrected estimate, tool schemas included
    raw_tokens: int  # uncorrected, for correcting the estimator afterwards
    budget: int  # what the messages and tools may use
    dropped: int = 0  # steps left out to fit
    compaction: Message | None = None  # a new history entry prepare() wants appended


@dataclass(slots=True)
class _Item:
    """One rendered message with where it came from."""

    message: Message
    index: int  # position in the history (-1: the system prompt)
    pinned: bool
    tokens: int
    summary: str | None = None  # a whole tool result's one-line form, for the last resort


class ContextWindow:
    def __init__(self, config: ContextConfig, counter: TokenCounter | None = None) -> None:
        self.config = config
        self.counter = counter or TokenCounter()
        self.last: BuiltPrompt | None = None
        self._cut = 0  # history index before which steps are left out (hysteresis)
        self._skipped = 0  # steps before the cut that the last render skipped
        # The last schemas list estimated, held so its identity cannot be reused, and its size.
        self._tools_estimate: tuple[Sequence[dict[str, Any]] | None, int, int] = (None, -1, 0)

    # -- the priorities ------------------------------------------------------

    def build(self, system_prompt: str, history: list[Message]) -> list[Message]:
        """The prompt by the priorities alone, without a size limit."""
        return [item.message for item in self._render(system_prompt, history)]

    def _render(self, system_prompt: str, history: list[Message]) -> list[_Item]:
        items = [_Item({"role": "system", "content": system_prompt}, -1, True, 0)]
        self._skipped = 0
        externalize = self.config.externalize_reasoning
        compress = self.config.window_strategy != "full"
        compaction_at, compaction = _latest_compaction(history)
        first_user = next((i for i, m in enumerate(history) if m.get("role") == "user"), -1)
        tool_positions = [
            i
            for i, m in enumerate(history)
            if m.get("role") == "tool" and not (externalize and m.get("_reasoning"))
        ]
        retain = self.config.retain_tool_results
        keep_whole = set(tool_positions[-retain:]) if retain else set()
        oldest_whole = min(keep_whole) if keep_whole else len(history)
        for i, message in enumerate(history):
            role = message.get("role")
            if is_compaction(message):
                continue
            if compaction is not None and first_user < i < compaction_at and role != "user":
                continue  # stands behind the summary; user messages are never dropped
            if i < self._cut and role != "user":
                self._skipped += role == "assistant"
                continue  # left out earlier: not worth rendering again
            if role == "user":
                items.append(_Item(public(message), i, True, 0))
                if compaction is not None and i == first_user:
                    items.append(_Item(public(compaction), i, True, 0))
                continue
            older = compress and i < oldest_whole
            if role == "tool":
                if externalize and message.get("_reasoning"):
                    continue
                if compress and i not in keep_whole and message.get("_summary"):
                    compact = public(message)
                    summary = str(message["_summary"])
                    if self.config.compress_diffs:
                        stat = diff_stat(str(message.get("content") or ""))
                        if stat:
                            summary = f"{summary} · {stat}"
                    compact["content"] = f"[older result, summarised] {summary}"
                    items.append(_Item(compact, i, False, 0))
                    continue
            elif role == "assistant" and message.get("tool_calls"):
                trimmed = self._trim_calls(message, externalize, older)
                if trimmed is not None:
                    items.append(_Item(trimmed, i, False, 0))
                continue
            short = str(message["_summary"]) if role == "tool" and "_summary" in message else None
            items.append(_Item(public(message), i, False, 0, short))
        return items

    def _trim_calls(self, message: Message, externalize: bool, older: bool) -> Message | None:
        calls = message["tool_calls"]
        if externalize:
            calls = [c for c in calls if c["function"]["name"] != THINK_TOOL]
            if not calls and not message.get("content"):
                return None
        if older and self.config.compress_diffs:
            calls = [_shrink_call(c) for c in calls]
        trimmed = public(message)
        if calls:
            trimmed["tool_calls"] = calls
        else:
            trimmed.pop("tool_calls", None)
        return trimmed

    # -- the size limit -----------------------------------------------------

    def fit(
        self,
        system_prompt: str,
        history: list[Message],
        *,
        num_ctx: int,
        model: str = "",
        tools: Sequence[dict[str, Any]] = (),
    ) -> BuiltPrompt:
        """The prompt by the priorities, with old steps left out until it fits ``num_ctx``."""
        items = self._render(system_prompt, history)
        for item in items:
            item.tokens = estimate_message(item.message)
        tool_tokens = self._estimate_tools(tools)
        factor = self.counter.factor(model)
        budget = max(0, num_ctx - self.config.reserve_tokens)
        # Room for the "steps were left out" note, so adding it never overflows.
        raw_budget = int(budget / factor) - tool_tokens - NOTE_TOKENS
        total = sum(item.tokens for item in items)
        dropped = 0
        if self.config.window_strategy != "full" and total > raw_budget:
            items, dropped = self._leave_out(items, raw_budget)
        elif self._cut:
            items, dropped = self._apply_cut(items)
        raw = sum(item.tokens for item in items) + tool_tokens
        built = BuiltPrompt(
            [item.message for item in items], int(raw * factor) + 1, raw, budget, dropped
        )
        self.last = built
        return built

    def _estimate_tools(self, tools: Sequence[dict[str, Any]]) -> int:
        """The schemas are one list for a whole turn: estimate them once."""
        last, length, tokens = self._tools_estimate
        if last is not tools or length != len(tools):
            tokens = estimate_tools(tools)
            self._tools_estimate = (tools, len(tools), tokens)
        return tokens

    def _leave_out(self, items: list[_Item], raw_budget: int) -> tuple[list[_Item], int]:
        """Leave out the oldest unpinned steps until the prompt is under the low-water mark."""
        target = int(raw_budget * LOW_WATER)
        cut = self._cut
        pinned = sum(item.tokens for item in items if item.pinned)
        movable = sum(item.tokens for item in items if not item.pinned and item.index >= cut)
        # Past the high-water mark, cut down to the low one; the newest step always stays.
        groups = _step_groups(items)[:-1] if pinned + movable > raw_budget else []
        for start, group in groups:
            if start < cut:
                continue
            if pinned + movable <= target:
                break
            movable -= sum(item.tokens for item in group)
            cut = group[-1].index + 1
        self._cut = cut
        kept, dropped = self._apply_cut(items)
        return _clip_pinned(_summarise_whole(kept, raw_budget), raw_budget), dropped

    def _apply_cut(self, items: list[_Item]) -> tuple[list[_Item], int]:
        kept: list[_Item] = []
        dropped_steps = self._skipped
        for item in items:
            if not item.pinned and 0 <= item.index < self._cut:
                if item.message.get("role") == "assistant":
                    dropped_steps += 1
                continue
            kept.append(item)
        if dropped_steps:
            note = {
                "role": "user",
                "content": f"[{dropped_steps} earlier steps were left out to fit the context "
                "window; their effects on files remain.]",
            }
            first_unpinned = next((n for n, it in enumerate(kept) if not it.pinned), len(kept))
            kept.insert(first_unpinned, _Item(note, -1, True, estimate_message(note)))
        return kept, dropped_steps

    def steps_left_out(self, history: list[Message]) -> list[Message]:
        """History entries behind the current cut that a compaction would summarise."""
        start = _latest_compaction(history)[0]
        begin = 0 if start < 0 else start
        first_user = next((i for i, m in enumerate(history) if m.get("role") == "user"), -1)
        return [
            m
            for i, m in enumerate(history[: self._cut])
            if i > first_user and i >= begin and m.get("role") != "user" and not is_compaction(m)
        ]

    async def prepare(
        self,
        system_prompt: str,
        history: list[Message],
        *,
        num_ctx: int,
        model: str = "",
        tools: Sequence[dict[str, Any]] = (),
        summarise: Summariser | None = None,
    ) -> BuiltPrompt:
        """:meth:`fit`, and when steps must be left out, summarise them first if possible.

        A compaction comes back in :attr:`BuiltPrompt.compaction`: the caller
        appends it to (and persists it with) the history.
        """
        built = self.fit(system_prompt, history, num_ctx=num_ctx, model=model, tools=tools)
        if not built.dropped or summarise is None or not self.config.auto_compact:
            return built
        covered = self.steps_left_out(history)
        if not covered:
            return built
        previous = _latest_compaction(history)[1]
        try:
            summary = await summarise(([previous] if previous else []) + covered)
        except Exception as exc:  # compaction is an optimisation: leaving steps out still fits
            log.warning("auto-compaction failed, leaving old steps out instead: %s", exc)
            return built
        if not summary.strip():
            return built
        entry: Message = {
            "role": "user",
            "content": f"{COMPACTION_PREFIX}\n{summary.strip()}",
            "_compaction": self._cut,
        }
        rebuilt = self.fit(
            system_prompt, [*history, entry], num_ctx=num_ctx, model=model, tools=tools
        )
        log.info("compacted history up to entry %d into %d chars", self._cut, len(summary))
        rebuilt.compaction = entry
        return rebuilt


def _latest_compaction(history: list[Message]) -> tuple[int, Message | None]:
    """(position it stands for, the entry) of the newest compaction, or (-1, None)."""
    for message in reversed(history):
        if is_compaction(message):
            return int(message["_compaction"]), message
    return -1, None


def _step_groups(items: list[_Item]) -> list[tuple[int, list[_Item]]]:
    """Unpinned items grouped by step: an assistant message and the tool results after it."""
    groups: list[tuple[int, list[_Item]]] = []
    for item in items:
        if item.pinned or item.index < 0:
            continue
        if item.message.get("role") == "assistant" or not groups:
            groups.append((item.index, [item]))
        else:
            groups[-1][1].append(item)
    return groups


def _summarise_whole(items: list[_Item], raw_budget: int) -> list[_Item]:
    """When the results kept whole alone overflow, shrink them too, oldest first; the
    newest result stays whole."""
    total = sum(item.tokens for item in items)
    whole = [it for it in items if it.summary and it.message.get("role") == "tool"]
    for item in whole[:-1]:
        if total <= raw_budget:
            break
        item.message = {**item.message, "content": f"[older result, summarised] {item.summary}"}
        before, item.tokens = item.tokens, estimate_message(item.message)
        total -= before - item.tokens
    return items


def _clip_pinned(items: list[_Item], raw_budget: int) -> list[_Item]:
    """Last resort when pinned messages alone overflow: shorten the largest user messages
    in the middle (their head and tail say the most), never removing one."""
    total = sum(item.tokens for item in items)
    while total > raw_budget:
        candidates = [it for it in items if it.pinned and it.index >= 0 and it.tokens > 64]
        if not candidates:
            break
        largest = max(candidates, key=lambda it: it.tokens)
        excess = total - raw_budget
        content = str(largest.message.get("content") or "")
        keep = max(200, int(len(content) * (1 - (excess + 32) / largest.tokens)))
        if keep >= len(content):
            break
        head, tail = content[: keep // 2], content[len(content) - keep // 2 :]
        clipped = f"{head}\n[… {len(content) - keep} characters cut to fit the window …]\n{tail}"
        largest.message = {**largest.message, "content": clipped}
        before = largest.tokens
        largest.tokens = estimate_message(largest.message)
        total -= before - largest.tokens
    return items


def _shrink_call(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function", {})
    keys = DIFF_TOOLS_ARGS.get(function.get("name", ""))
    arguments = function.get("arguments")
    if not keys or not isinstance(arguments, dict):
        return call
    shrunk = dict(arguments)
    changed = False
    for key in keys:
        value = shrunk.get(key)
        if isinstance(value, str) and len(value) > LARGE_ARGUMENT:
            lines = value.count("\n") + 1
            shrunk[key] = f"[{lines} lines, {len(value)} chars; compressed]"
            changed = True
    if not changed:
        return call
    return {**call, "function": {**function, "arguments": shrunk}}


SUMMARY_INSTRUCTIONS = (
    "You compress an agent's working log so it can continue within its context window. "
    "Write a concise summary of the steps below: what was tried, what was found (file "
    "names, functions, errors, test results), what was changed, and what remains. Keep "
    "exact names and numbers. Do not add advice or a preamble."
)
_SUMMARY_ITEM_CHARS = 600


def summarise_request(model: str, messages: list[Message], num_ctx: int, task: str) -> Any:
    """The chat request that asks the local model for a compaction summary."""
    from bot.models.base import ChatRequest

    room = max(2_000, int((num_ctx - 1_500) * 2.5))  # characters that fit with the answer
    lines: list[str] = []
    for message in messages:
        role = message.get("role")
        text = str(message.get("_summary") or message.get("content") or "")
        if len(text) > _SUMMARY_ITEM_CHARS:
            text = text[: _SUMMARY_ITEM_CHARS - 1] + "…"
        if role == "assistant":
            calls = [
                f"{c['function']['name']}({str(c['function'].get('arguments'))[:160]})"
                for c in message.get("tool_calls") or []
            ]
            lines.append(f"assistant: {text} {'; '.join(calls)}".rstrip())
        elif role == "tool":
            lines.append(f"result of {message.get('tool_name', 'tool')}: {text}")
        else:
            lines.append(f"{role}: {text}")
    transcript = "\n".join(lines)
    if len(transcript) > room:
        transcript = "…" + transcript[-room:]  # the newest steps matter most
    return ChatRequest(
        model=model,
        messages=[
            {"role": "system", "content": SUMMARY_INSTRUCTIONS},
            {"role": "user", "content": f"The task: {task[:2000]}\n\nThe log:\n{transcript}"},
        ],
        options={"num_ctx": num_ctx},
    )
