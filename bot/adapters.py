"""The chat-adapter contract: adapters translate, the host decides.

An adapter owns its platform's transport and identity. It turns platform
events into :class:`bot.events.ChatEvent` and hands them to
:meth:`bot.sessions.SessionManager.handle`; it renders a session's
:class:`bot.events.AgentEvent` stream through a :class:`TurnRenderer`.
No agent logic lives in an adapter.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Protocol

from bot.policy.approvals import Approver, DenyingApprover

if TYPE_CHECKING:
    from bot.agent import AgentSession
    from bot.events import AgentEvent, ChatEvent, ThreadKey
    from bot.policy.approval_view import ApprovalView
    from bot.sessions import SessionManager


class TurnRenderer(Protocol):
    """Renders one turn's events into the thread (a growing message, a terminal…)."""

    async def __call__(self, event: AgentEvent) -> None: ...

    async def close(self) -> None:
        """The turn ended (DONE was delivered, or the session was torn down)."""
        ...


class ChatAdapter(ABC):
    """One chat platform. ``name`` is the key used in ``adapters:`` of the config."""

    name: str = ""
    # True when approvals can be asked in the thread (the adapter delivers
    # reactions and/or button actions on the question message).
    approvals_in_thread: bool = False
    # Reactions the host asks for, by meaning; adapters map them to their platform.
    REACTIONS = {
        "working": "eyes",
        "queued": "inbox_tray",
        "applied": "white_check_mark",
        "stopped": "octagonal_sign",
    }

    @abstractmethod
    async def start(self, sessions: SessionManager) -> None:
        """Connect and begin delivering events to ``sessions.handle``."""

    @abstractmethod
    async def stop(self) -> None:
        """Disconnect; pending renders are flushed by their renderers' ``close``."""

    @abstractmethod
    def renderer(self, session: AgentSession, trigger: ChatEvent | None) -> TurnRenderer:
        """A renderer for the turn ``trigger`` started (None for a resumed turn)."""

    @abstractmethod
    async def post_message(self, thread: ThreadKey, text: str) -> str:
        """Post a standalone Markdown message into the thread; return its id."""

    async def post_notice(self, thread: ThreadKey, text: str) -> None:
        """Post a short standalone message into the thread."""
        await self.post_message(thread, text)

    async def post_approval(self, thread: ThreadKey, view: ApprovalView) -> str:
        """Post an approval question; return its id. Adapters may add buttons whose
        presses come back as ACTION events with ``action_value`` approve_once /
        approve_thread / deny, and format ``view`` their own way, but must show
        all of it. The default posts the whole text of a long call first, then
        the question as Markdown."""
        for chunk in view.whole_markdown():
            await self.post_message(thread, chunk)
        return await self.post_message(thread, view.markdown())

    async def react(self, thread: ThreadKey, message_id: str, meaning: str) -> None:  # noqa: B027
        """Acknowledge a message (``meaning`` is a key of :attr:`REACTIONS`). Optional."""

    def approver(self, session: AgentSession) -> Approver:
        """Who answers approval requests in this thread. Default: nobody (deny)."""
        return DenyingApprover("approvals are not available on this platform")

    @property
    def connected(self) -> bool:
        return True
