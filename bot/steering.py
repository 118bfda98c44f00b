"""The steering queue: messages typed into a thread while its session runs.

They are applied, in arrival order, as user messages at the next loop
boundary. The queue itself is in memory; the session manager writes each
message to the store before it is queued, so a restart loses none.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class SteeringMessage:
    author: str
    text: str
    message_id: str = ""
    store_id: int | None = None  # row id in the store, to mark it applied
    received_at: float = field(default_factory=time.time)

    def as_user_content(self) -> str:
        """How the model sees it: attributed, so it knows who changed course."""
        return f"[steering from {self.author}] {self.text}"


class SteeringQueue:
    """FIFO of pending steering messages for one session."""

    def __init__(self) -> None:
        self._items: deque[SteeringMessage] = deque()

    def put(self, message: SteeringMessage) -> None:
        self._items.append(message)

    def drain(self) -> list[SteeringMessage]:
        items = list(self._items)
        self._items.clear()
        return items

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)
