"""The host's value types: what comes in from chat, and what a session emits.

Adapters translate platform events into :class:`ChatEvent` and render
:class:`AgentEvent` back; nothing platform-specific crosses this line.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


@dataclass(frozen=True, slots=True)
class ThreadKey:
    """Identifies one conversation thread on one platform.

    Slack: ``("slack", "<team>/<channel>", thread_ts)``; Matrix:
    ``("matrix", room_id, thread_root_event_id)``; console: ``("console",
    "local", session id)``.
    """

    platform: str
    room: str
    thread: str

    def __str__(self) -> str:
        return f"{self.platform}|{self.room}|{self.thread}"

    @classmethod
    def parse(cls, text: str) -> ThreadKey:
        platform, room, thread = text.split("|", 2)
        return cls(platform, room, thread)


class ChatEventKind(StrEnum):
    MESSAGE = "message"
    REACTION = "reaction"
    COMMAND = "command"
    ACTION = "action"  # a button press (approval buttons)


@dataclass(frozen=True, slots=True)
class ChatEvent:
    """One normalized input from a chat platform.

    ``event_id`` is the platform's delivery identity (Slack ``event_id``,
    Matrix event id) and ``message_id`` the identity of the message itself
    (Slack ``ts``); the session manager dedupes on both.
    """

    kind: ChatEventKind
    thread: ThreadKey
    user: str
    text: str = ""
    event_id: str = ""
    message_id: str = ""
    mentions_bot: bool = False
    user_name: str | None = None
    reaction: str | None = None  # normalized short name: "x", "white_check_mark"
    target_message_id: str | None = None  # the message a reaction/action points at
    command: str | None = None  # command name without "/" or "!"
    action_value: str | None = None
    received_at: float = field(default_factory=time.time)
    raw: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def author(self) -> str:
        return self.user_name or self.user


class AgentEventKind(StrEnum):
    STEP = "step"  # a model step begins: data = route decision
    TOKEN = "token"
    THINKING = "thinking"
    TOOL_CALL = "tool_call"
    TOOL_RESULT = "tool_result"
    STEERING = "steering"  # a steering message was applied to the next request
    NOTICE = "notice"  # something the user should know (fallback, iteration cap)
    APPROVAL = "approval"  # a tool call waits for (or got) an approval
    ERROR = "error"
    DONE = "done"


class DoneReason(StrEnum):
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    MAX_ITERATIONS = "max_iterations"
    TRUNCATED = "truncated"  # a limit (or the server) cut the model's answer short
    LIMIT_REACHED = "limit_reached"  # the run used up its tokens or time (``limits.*``)
    ERROR = "error"
    INTERRUPTED = "interrupted"  # the bot is shutting down; the session will resume


@dataclass(frozen=True, slots=True)
class AgentEvent:
    """One thing a running session emits, in order (``seq`` increases per session)."""

    kind: AgentEventKind
    session_id: str
    text: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)
    seq: int = 0
    ts: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "session_id": self.session_id,
            "seq": self.seq,
            "ts": self.ts,
            "text": self.text,
            "data": dict(self.data),
        }
