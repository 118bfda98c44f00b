"""Approvals: asking a person whether a tool call outside policy may run.

An :class:`Approver` is supplied by whatever is in front of the user: the
console asks y/n, a chat adapter posts in the thread and waits for a
reaction or a button, a headless run answers at once. The agent only sees
the :class:`ApprovalDecision`. What a question shows is built by
:mod:`bot.policy.approval_view` (the whole call, every character visible, no
markup), so every adapter shows the same truth.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from bot.policy.approval_view import ApprovalView, approval_view, scope_key

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    session_id: str
    thread: str
    requester: str
    tool: str
    arguments: dict[str, Any]
    reason: str
    summary: str = ""  # what would run, in one line (e.g. the parsed command)


@dataclass(frozen=True, slots=True)
class ApprovalDecision:
    approved: bool
    by: str = ""
    scope: Literal["once", "thread"] = "once"
    reason: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def verdict(self) -> str:
        if self.approved:
            return f"approved by {self.by}" if self.by else "approved"
        return self.reason or "denied"


class Approver(Protocol):
    async def request_approval(self, request: ApprovalRequest) -> ApprovalDecision: ...


class DenyingApprover:
    """For runs with nobody to ask: deny at once and say how to allow."""

    def __init__(self, why: str = "no one is available to approve it") -> None:
        self.why = why

    async def request_approval(self, request: ApprovalRequest) -> ApprovalDecision:
        return ApprovalDecision(approved=False, reason=f"denied: {self.why}")


class AllowingApprover:
    """For runs where the operator explicitly allowed everything (``--yes``)."""

    async def request_approval(self, request: ApprovalRequest) -> ApprovalDecision:
        return ApprovalDecision(approved=True, by="operator (--yes)")


# Reaction names (Slack short names and Matrix emoji) and button values, by answer.
APPROVE_ONCE = frozenset({"white_check_mark", "heavy_check_mark", "✅", "✔️", "approve_once"})
APPROVE_THREAD = frozenset({"repeat", "🔁", "approve_thread"})
DENY = frozenset({"x", "❌", "no_entry", "⛔", "deny"})


def answer_for(choice: str) -> tuple[bool, Literal["once", "thread"]] | None:
    """Map a reaction or button value to (approved, scope); None when it is no answer."""
    if choice in APPROVE_ONCE:
        return True, "once"
    if choice in APPROVE_THREAD:
        return True, "thread"
    if choice in DENY:
        return False, "once"
    return None


@dataclass(slots=True)
class _Pending:
    request: ApprovalRequest
    future: asyncio.Future[ApprovalDecision]
    requester: str


class PendingApprovals:
    """Approval questions posted in threads, waiting for an answer.

    Keyed by (thread, message id of the question). Only someone
    ``may_answer`` accepts counts; other reactions are ignored, so a
    bystander's ✅ cannot approve anything.
    """

    def __init__(self, may_answer: Callable[[str, str, str], bool]) -> None:
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._may_answer = may_answer  # (platform, user, requester) -> bool

    def add(
        self, thread: str, message_id: str, request: ApprovalRequest
    ) -> asyncio.Future[ApprovalDecision]:
        future: asyncio.Future[ApprovalDecision] = asyncio.get_running_loop().create_future()
        self._pending[(thread, message_id)] = _Pending(request, future, request.requester)
        return future

    def discard(self, thread: str, message_id: str) -> None:
        self._pending.pop((thread, message_id), None)

    def is_pending(self, thread: str, message_id: str) -> bool:
        return (thread, message_id) in self._pending

    def answer(self, platform: str, thread: str, message_id: str, user: str, choice: str) -> bool:
        """Resolve a pending question; True when this event was an accepted answer."""
        pending = self._pending.get((thread, message_id))
        parsed = answer_for(choice)
        if pending is None or parsed is None or pending.future.done():
            return False
        if not self._may_answer(platform, user, pending.requester):
            return False
        approved, scope = parsed
        pending.future.set_result(
            ApprovalDecision(
                approved=approved,
                by=user,
                scope=scope,
                reason="" if approved else f"denied by {user}",
            )
        )
        self._pending.pop((thread, message_id), None)
        return True


class ChatApprover:
    """Posts the question in the thread and waits (bounded) for an approver's answer.

    ``post`` posts an :class:`~bot.policy.approval_view.ApprovalView` and returns
    the question's message id. "Allow for the rest of this thread" is
    remembered per exact call: the tool and its exact arguments
    (:func:`~bot.policy.approval_view.scope_key`), never a shortened summary.
    """

    def __init__(
        self,
        thread: str,
        pending: PendingApprovals,
        post: Callable[[ApprovalView], Awaitable[str]],
        *,
        timeout: float,
    ) -> None:
        self.thread = thread
        self.pending = pending
        self.post = post
        self.timeout = timeout
        self.allowed_for_thread: set[str] = set()

    @staticmethod
    def scope_key(request: ApprovalRequest) -> str:
        return scope_key(request)

    async def request_approval(self, request: ApprovalRequest) -> ApprovalDecision:
        key = self.scope_key(request)
        if key in self.allowed_for_thread:
            return ApprovalDecision(approved=True, by="earlier approval", scope="thread")
        try:
            message_id = await self.post(approval_view(request, timeout=self.timeout))
        except Exception as exc:
            # Nobody saw the question: fail closed rather than raise into the loop.
            log.exception("could not post the approval question in %s", self.thread)
            return ApprovalDecision(
                approved=False, reason=f"denied: the question could not be posted ({exc})"
            )
        future = self.pending.add(self.thread, message_id, request)
        try:
            decision = await asyncio.wait_for(future, self.timeout)
        except TimeoutError:
            return ApprovalDecision(
                approved=False, reason=f"no approval within {int(self.timeout)} s (timed out)"
            )
        finally:
            self.pending.discard(self.thread, message_id)
        if decision.approved and decision.scope == "thread":
            self.allowed_for_thread.add(key)
        return decision
