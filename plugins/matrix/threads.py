"""Which thread a Matrix event belongs to, and the newest event of each thread.

Reactions point at one event and say nothing of its thread, yet the core
needs the thread to find the session (stop) or the pending approval. The
index remembers the thread root of every recent event the bot saw or sent;
older ones are looked up on the homeserver by the adapter. It also keeps the
newest event of each thread, which a new thread reply names in
``m.in_reply_to`` (the fallback for clients without thread support).

Bounded: the oldest entries are forgotten first.
"""

from __future__ import annotations

from collections import OrderedDict

DEFAULT_CAPACITY = 20_000


class ThreadIndex:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._roots: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._latest: OrderedDict[tuple[str, str], str] = OrderedDict()

    def record(self, room_id: str, event_id: str, root: str) -> None:
        """``event_id`` in ``room_id`` belongs to the thread rooted at ``root``."""
        self._put(self._roots, (room_id, event_id), root)
        if event_id != root:
            self._put(self._latest, (room_id, root), event_id)
        self._roots.setdefault((room_id, root), root)

    def root_of(self, room_id: str, event_id: str) -> str | None:
        return self._roots.get((room_id, event_id))

    def latest(self, room_id: str, root: str) -> str:
        """The newest known event in the thread (the root when none is known)."""
        return self._latest.get((room_id, root), root)

    def _put(
        self, table: OrderedDict[tuple[str, str], str], key: tuple[str, str], value: str
    ) -> None:
        table[key] = value
        table.move_to_end(key)
        while len(table) > self.capacity:
            table.popitem(last=False)
