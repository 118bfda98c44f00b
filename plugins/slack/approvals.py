"""Approval questions as Block Kit: the question, three buttons, and what became of it.

The host decides (``bot.policy.approvals``); this module only shapes the
message. Buttons carry the values the host understands (``approve_once``,
``approve_thread``, ``deny``) and reactions (✅ 🔁 ❌) keep working beside
them. Once someone allowed to answer has answered, the buttons are replaced
by a line saying who decided what, so nobody clicks a stale question.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from bot.policy.approvals import answer_for

ACTION_PREFIX = "threadwright_"
BUTTONS = (
    ("approve_once", "Allow once", "primary"),
    ("approve_thread", "Allow for this thread", None),
    ("deny", "Deny", "danger"),
)
SECTION_LIMIT = 3000
REMEMBERED_QUESTIONS = 1_000


def question_blocks(mrkdwn: str) -> list[dict[str, Any]]:
    buttons: list[dict[str, Any]] = []
    for value, label, style in BUTTONS:
        button: dict[str, Any] = {
            "type": "button",
            "action_id": ACTION_PREFIX + value,
            "text": {"type": "plain_text", "text": label, "emoji": True},
            "value": value,
        }
        if style:
            button["style"] = style
        buttons.append(button)
    return [
        _section(mrkdwn),
        {"type": "actions", "block_id": "threadwright_approval", "elements": buttons},
    ]


def outcome_line(choice: str, user: str) -> str:
    parsed = answer_for(choice)
    if parsed is None:
        return "No longer waiting for an answer."
    approved, scope = parsed
    if not approved:
        return f"❌ Denied by <@{user}>."
    if scope == "thread":
        return f"🔁 Allowed for the rest of this thread by <@{user}>."
    return f"✅ Allowed once by <@{user}>."


def answered_blocks(mrkdwn: str, outcome: str) -> list[dict[str, Any]]:
    return [
        _section(mrkdwn),
        {"type": "context", "elements": [{"type": "mrkdwn", "text": outcome}]},
    ]


def _section(mrkdwn: str) -> dict[str, Any]:
    text = mrkdwn if len(mrkdwn) <= SECTION_LIMIT else mrkdwn[: SECTION_LIMIT - 1] + "…"
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


@dataclass(frozen=True, slots=True)
class Question:
    channel: str
    ts: str
    mrkdwn: str


class ApprovalQuestions:
    """The approval questions this adapter posted, by (channel, ts)."""

    def __init__(self) -> None:
        self._questions: OrderedDict[tuple[str, str], Question] = OrderedDict()

    def add(self, question: Question) -> None:
        self._questions[(question.channel, question.ts)] = question
        while len(self._questions) > REMEMBERED_QUESTIONS:
            self._questions.popitem(last=False)

    def get(self, channel: str, ts: str) -> Question | None:
        return self._questions.get((channel, ts))

    def settle(self, channel: str, ts: str) -> Question | None:
        """Forget a question that needs no more updates; returns it if it was known."""
        return self._questions.pop((channel, ts), None)
