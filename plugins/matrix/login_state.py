"""The bot's persisted Matrix login: device id, access token and sync position.

A restart reuses the saved device (no new entry in the account's device list,
and in encrypted rooms the same Olm identity) and resumes sync from the saved
``next_batch``, so a restart never replays history. Kept as JSON in
``<matrix.store_path>/login.json``: the directory is created 0700 and the file
written 0600 (it holds an access token), atomically, so a crash never leaves
half a file.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

log = logging.getLogger(__name__)

FILE_NAME = "login.json"


@dataclass(frozen=True, slots=True)
class LoginState:
    homeserver: str
    user_id: str
    device_id: str
    access_token: str
    next_batch: str | None = None

    def with_next_batch(self, next_batch: str) -> LoginState:
        return replace(self, next_batch=next_batch)


class LoginStateFile:
    """Loads and saves a :class:`LoginState`; file I/O runs off the event loop."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / FILE_NAME

    @classmethod
    async def prepare(cls, directory: str) -> LoginStateFile:
        """The state file in ``directory`` (``~`` expanded), created 0700 if missing."""

        def make() -> Path:
            path = Path(directory).expanduser()
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            return path

        return cls(await asyncio.to_thread(make))

    async def load(self) -> LoginState | None:
        return await asyncio.to_thread(self._load)

    async def save(self, state: LoginState) -> None:
        await asyncio.to_thread(self._save, state)

    def _load(self) -> LoginState | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return LoginState(
                homeserver=str(data["homeserver"]),
                user_id=str(data["user_id"]),
                device_id=str(data["device_id"]),
                access_token=str(data["access_token"]),
                next_batch=data.get("next_batch") or None,
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # A damaged file costs one fresh login, not a bot that cannot start.
            log.warning("ignoring unreadable Matrix login state %s: %s", self.path, exc)
            return None

    def _save(self, state: LoginState) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{FILE_NAME}.{os.getpid()}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                json.dump(asdict(state), handle)
            os.chmod(temporary, 0o600)  # O_CREAT's mode is masked by the umask only downwards
            os.replace(temporary, self.path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
