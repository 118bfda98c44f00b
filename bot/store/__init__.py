"""Persistence: what must survive a restart (sessions, transcripts, steering, dedupe)."""

from bot.store.base import SessionRecord, Store, StoredSteering, open_store

__all__ = ["SessionRecord", "Store", "StoredSteering", "open_store"]
