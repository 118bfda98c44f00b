"""Approvals: asking a person whether a tool call outside policy may run.

An :class:`Approver` is supplied by whatever is in front of the user: the
console asks y/n, a chat adapter posts in the thread and waits for a
reaction or a button, a headless run answers at once. The agent only sees
the :class:`ApprovalDecision`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol


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
