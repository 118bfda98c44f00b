"""Approval questions as Block Kit: the question, three buttons, and what became of it.

The host decides (``bot.policy.approvals``) and says what the question shows
(:class:`bot.policy.approval_view.ApprovalView`); this module only shapes the
message. The call text and the reason go into a ``rich_text`` block as
``text`` elements, which Slack shows literally: no backtick, ``<…|…>``,
``<!here>`` or ``*`` in a command can end a code span, make a link or ping
anyone. Only our own sentences are mrkdwn, with ``&<>`` escaped. The message's
fallback ``text`` (notifications) names the tool, never the call.

Buttons carry the values the host understands (``approve_once``,
``approve_thread``, ``deny``) and reactions (✅ 🔁 ❌) keep working beside
them. Once someone allowed to answer has answered, the buttons are replaced
by a line saying who decided what, so nobody clicks a stale question.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.policy.approvals import answer_for
from plugins.slack.formatting import escape

if TYPE_CHECKING:
    from bot.policy.approval_view import ApprovalView

ACTION_PREFIX = "threadwright_"
BUTTONS = (
    ("approve_once", "Allow once", "primary"),
    ("approve_thread", "Allow for this thread", None),
    ("deny", "Deny", "danger"),
)
REMEMBERED_QUESTIONS = 1_000
WHERE_WHOLE = "in the file posted just above"


def _text(text: str, **style: bool) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "text", "text": text}
    if style:
        element["style"] = style
    return element


def content_blocks(view: ApprovalView) -> list[dict[str, Any]]:
    """The question without its buttons: what runs (literal), then our own sentences."""
    call: list[dict[str, Any]] = [
        {"type": "rich_text_section", "elements": [_text(view.headline(), bold=True)]},
        {"type": "rich_text_preformatted", "elements": [_text(view.parts[0])]},
    ]
    if view.clipped:
        call += [
            {"type": "rich_text_section", "elements": [_text(view.gap_line(), italic=True)]},
            {"type": "rich_text_preformatted", "elements": [_text(view.parts[1])]},
        ]
    sentences = view.sentences(WHERE_WHOLE)
    call.append({"type": "rich_text_section", "elements": [_text(sentences[0])]})
    notes = "\n".join(escape(line) for line in [*sentences[1:], view.answer_line()])
    return [
        {"type": "rich_text", "elements": call},
        {"type": "section", "text": {"type": "mrkdwn", "text": notes}},
    ]


def fallback_text(view: ApprovalView) -> str:
    """The message's ``text``: shown in notifications, so it names the tool only."""
    return escape(f"🔐 Approval needed: I want to run {view.tool} (see the question). ") + escape(
        view.answer_line()
    )


def question_blocks(view: ApprovalView) -> list[dict[str, Any]]:
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
        *content_blocks(view),
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


def answered_blocks(blocks: list[dict[str, Any]], outcome: str) -> list[dict[str, Any]]:
    return [
        *blocks,
        {"type": "context", "elements": [{"type": "mrkdwn", "text": outcome}]},
    ]


@dataclass(frozen=True, slots=True)
class Question:
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]  # the question without its buttons


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
