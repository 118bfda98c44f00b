"""End-to-end encryption housekeeping, for ``matrix.encryption: true``.

matrix-nio (with its ``e2e`` extra, vodozemac) does the cryptography and keeps
the Olm account, Megolm sessions and known devices in an SQLite store under
``matrix.store_path``; that store must persist, or every restart is a new
identity and old messages cannot be read. What nio leaves to its caller is
the key traffic between syncs: uploading our one-time keys, querying the
device lists of the people we share rooms with, claiming keys for new Olm
sessions and flushing queued to-device messages. :class:`KeyMaintenance`
does that after every sync and, because a reply may race the sync loop, once
more before anything is sent into an encrypted room.

Trust, as a bot does it: the bot cannot take part in interactive device
verification, so it does not verify anyone. It shares its room keys with every
device of every room member (``ignore_unverified_devices``) and reads messages
from unverified devices. Who may *use* the bot is decided by
``access.allowed_users`` on the sender's user id, which the homeserver
authenticates; encryption keeps the conversation from the homeserver's
operator and the network, not from the room's members.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nio import AsyncClient, ErrorResponse, LocalProtocolError

log = logging.getLogger(__name__)


class KeyMaintenance:
    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self._lock = asyncio.Lock()

    @property
    def enabled(self) -> bool:
        return self.client.olm is not None

    async def settle(self) -> None:
        """Upload, query and claim whatever keys the last sync made necessary."""
        if not self.enabled:
            return
        client = self.client
        async with self._lock:
            # LocalProtocolError: nio's own room_send got there first; nothing left to do.
            with contextlib.suppress(LocalProtocolError):
                if client.should_upload_keys:
                    self._log_error("key upload", await client.keys_upload())
            with contextlib.suppress(LocalProtocolError):
                if client.should_query_keys:
                    self._log_error("key query", await client.keys_query())
            with contextlib.suppress(LocalProtocolError):
                if client.should_claim_keys:
                    users = client.get_users_for_key_claiming()
                    self._log_error("key claim", await client.keys_claim(users))
            for response in await client.send_to_device_messages():
                self._log_error("to-device message", response)

    async def before_send(self, room_id: str) -> None:
        """Make sure the room's devices are known before a room key is shared."""
        room = self.client.rooms.get(room_id)
        if self.enabled and room is not None and room.encrypted and self.client.should_query_keys:
            await self.settle()

    @staticmethod
    def _log_error(what: str, response: object) -> None:
        if isinstance(response, ErrorResponse):
            log.warning("Matrix %s failed: %s", what, response)
