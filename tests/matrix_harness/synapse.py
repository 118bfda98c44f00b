"""A real Synapse homeserver, run as a child process, for threadwright's Matrix tests.

The Matrix adapter is tested against the genuine protocol rather than a fake: each
:class:`SynapseServer` writes a throwaway config into its work directory (SQLite database, fresh
signing key, loopback-only client listener, no federation), starts Synapse from the separate
virtualenv made by ``.ci/install-synapse.sh`` and polls ``/_matrix/client/versions`` until it
answers. Users are created with the shared-secret admin API, which hands back an access token at
once, so tests never log in by password.

Synapse's rate limits would throttle test setup and a streaming bot alike, so by default every
limit is raised far out of reach. ``default_rate_limits=True`` keeps Synapse's own ``rc_message``
(0.2/s, burst 10) so the bot's pacing and its handling of ``M_LIMIT_EXCEEDED`` meet the real thing.

The child is a plain :class:`subprocess.Popen`, not an asyncio subprocess, so a server object is
tied to no event loop: a session-scoped synchronous fixture can start it (``start_blocking``) and
any test's loop can use it. Both the async and the blocking paths only poll, never wait inside a
system call, so the async ones never stall the event loop.
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import hmac
import secrets
import signal
import socket
import subprocess
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_VENV = REPO_ROOT / ".ci" / "synapse-venv"
SERVER_NAME = "localhost"

READY_TIMEOUT_S = 30.0
STOP_GRACE_S = 10.0
POLL_INTERVAL_S = 0.05
LOG_TAIL_LINES = 40

# Out of reach for any test; Synapse treats 0 as "always limited", not "unlimited".
UNLIMITED: dict[str, float] = {"per_second": 10_000, "burst_count": 10_000}

_running: weakref.WeakSet[SynapseServer] = weakref.WeakSet()


class SynapseNotInstalled(RuntimeError):
    """The Synapse virtualenv is missing."""


class SynapseError(RuntimeError):
    """Synapse failed to start, or refused an admin request."""


@dataclass(frozen=True)
class RegisteredUser:
    """A user created on the test homeserver, with a ready access token."""

    user_id: str
    access_token: str
    device_id: str
    password: str
    homeserver: str

    @property
    def localpart(self) -> str:
        return self.user_id[1:].split(":", 1)[0]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def registration_mac(secret: str, nonce: str, username: str, password: str, admin: bool) -> str:
    """The HMAC-SHA1 that Synapse's shared-secret registration expects."""
    mac = hmac.new(secret.encode(), digestmod=hashlib.sha1)
    for part in (nonce, username, password):
        mac.update(part.encode())
        mac.update(b"\x00")
    mac.update(b"admin" if admin else b"notadmin")
    return mac.hexdigest()


def _rate_limits(default_rate_limits: bool) -> dict[str, Any]:
    limits: dict[str, Any] = {
        "rc_login": {"address": UNLIMITED, "account": UNLIMITED, "failed_attempts": UNLIMITED},
        "rc_registration": UNLIMITED,
        "rc_joins": {"local": UNLIMITED, "remote": UNLIMITED},
        "rc_joins_per_room": UNLIMITED,
        "rc_invites": {"per_room": UNLIMITED, "per_user": UNLIMITED, "per_issuer": UNLIMITED},
        "rc_room_creation": UNLIMITED,
        "rc_key_requests": UNLIMITED,
        "rc_admin_redaction": UNLIMITED,
    }
    if not default_rate_limits:
        limits["rc_message"] = UNLIMITED
    return limits


class SynapseServer:
    """One Synapse process serving the client API on ``127.0.0.1:port``."""

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        default_rate_limits: bool = False,
        venv: Path = DEFAULT_VENV,
    ) -> None:
        self.workdir = Path(workdir)
        self.port = port if port is not None else free_port()
        self.default_rate_limits = default_rate_limits
        self.venv = Path(venv)
        self.server_name = SERVER_NAME
        self.url = f"http://127.0.0.1:{self.port}"
        self.registration_secret = secrets.token_hex(16)
        self.config_path = self.workdir / "homeserver.yaml"
        self.log_path = self.workdir / "homeserver.log"
        self.startup_seconds: float | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Launch Synapse and return once it answers client requests."""
        started = self._launch()
        async with httpx.AsyncClient(timeout=2.0) as http:
            while True:
                self._raise_if_exited()
                try:
                    response = await http.get(self._versions_url)
                    if response.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() - started > READY_TIMEOUT_S:
                    await self.stop()
                    raise self._startup_failure(f"not ready after {READY_TIMEOUT_S:.0f}s")
                await asyncio.sleep(POLL_INTERVAL_S)
        self.startup_seconds = time.monotonic() - started

    def start_blocking(self) -> None:
        """:meth:`start` for synchronous callers, such as session-scoped pytest fixtures."""
        started = self._launch()
        with httpx.Client(timeout=2.0) as http:
            while True:
                self._raise_if_exited()
                try:
                    if http.get(self._versions_url).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() - started > READY_TIMEOUT_S:
                    self.stop_blocking()
                    raise self._startup_failure(f"not ready after {READY_TIMEOUT_S:.0f}s")
                time.sleep(POLL_INTERVAL_S)
        self.startup_seconds = time.monotonic() - started

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after a grace period. Safe to call more than once."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(process.wait, STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait)
        self._forget_process()

    def stop_blocking(self) -> None:
        """:meth:`stop` for synchronous callers."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._forget_process()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def __aenter__(self) -> SynapseServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- users -----------------------------------------------------------------------------

    async def register(self, username: str, password: str, admin: bool = False) -> RegisteredUser:
        """Create a user through the shared-secret admin API and return its fresh login."""
        endpoint = f"{self.url}/_synapse/admin/v1/register"
        async with httpx.AsyncClient(timeout=10.0) as http:
            nonce_response = await http.get(endpoint)
            _raise_for_admin_error(nonce_response, "registration nonce")
            nonce = nonce_response.json()["nonce"]
            body = {
                "nonce": nonce,
                "username": username,
                "password": password,
                "admin": admin,
                "mac": registration_mac(self.registration_secret, nonce, username, password, admin),
            }
            response = await http.post(endpoint, json=body)
            _raise_for_admin_error(response, f"registering {username!r}")
        data = response.json()
        return RegisteredUser(
            user_id=data["user_id"],
            access_token=data["access_token"],
            device_id=data["device_id"],
            password=password,
            homeserver=self.url,
        )

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log written)"
        return "\n".join(text.splitlines()[-lines:])

    # -- internals -------------------------------------------------------------------------

    @property
    def _versions_url(self) -> str:
        return f"{self.url}/_matrix/client/versions"

    @property
    def _python(self) -> Path:
        return self.venv / "bin" / "python"

    def _launch(self) -> float:
        if self._process is not None:
            raise SynapseError("this SynapseServer was already started")
        if not self._python.exists():
            raise SynapseNotInstalled(
                f"Synapse is not installed: run .ci/install-synapse.sh (no {self._python})"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        self._log_file = self.log_path.open("ab")
        started = time.monotonic()
        self._process = subprocess.Popen(
            [str(self._python), "-m", "synapse.app.homeserver", "-c", str(self.config_path)],
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        _running.add(self)
        return started

    def _forget_process(self) -> None:
        self._process = None
        _running.discard(self)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def _raise_if_exited(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            code = self._process.returncode
            self._forget_process()
            raise self._startup_failure(f"exited with status {code}")

    def _startup_failure(self, reason: str) -> SynapseError:
        return SynapseError(
            f"Synapse on port {self.port} {reason}; last lines of {self.log_path}:\n"
            f"{self.log_tail()}"
        )

    def _write_config(self) -> None:
        log_config_path = self.workdir / "log_config.yaml"
        log_config_path.write_text(yaml.safe_dump(_log_config()))
        config: dict[str, Any] = {
            "server_name": self.server_name,
            "report_stats": False,
            "listeners": [
                {
                    "port": self.port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    "resources": [{"names": ["client"], "compress": False}],
                }
            ],
            "database": {
                "name": "sqlite3",
                "args": {"database": str(self.workdir / "homeserver.db")},
            },
            "log_config": str(log_config_path),
            "media_store_path": str(self.workdir / "media_store"),
            "signing_key_path": str(self.workdir / "signing.key"),
            "registration_shared_secret": self.registration_secret,
            "macaroon_secret_key": secrets.token_hex(16),
            "form_secret": secrets.token_hex(16),
            "enable_registration": False,
            # Password hashing dominates registration time; tests need no real cost factor.
            "bcrypt_rounds": 4,
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "enable_metrics": False,
            "url_preview_enabled": False,
            "presence": {"enabled": False},
            "user_directory": {"enabled": False},
            **_rate_limits(self.default_rate_limits),
        }
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))


def _log_config() -> dict[str, Any]:
    """Synapse's logging: INFO to stdout (our log file), SQL chatter suppressed."""
    return {
        "version": 1,
        "formatters": {
            "precise": {
                "format": "%(asctime)s %(name)s:%(lineno)d %(levelname)s %(request)s %(message)s"
            }
        },
        "filters": {"context": {"()": "synapse.logging.context.LoggingContextFilter"}},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "formatter": "precise",
                "filters": ["context"],
            }
        },
        "loggers": {"synapse.storage.SQL": {"level": "WARNING"}},
        "root": {"level": "INFO", "handlers": ["console"]},
        "disable_existing_loggers": False,
    }


def _raise_for_admin_error(response: httpx.Response, action: str) -> None:
    if response.status_code != 200:
        raise SynapseError(f"{action} failed: HTTP {response.status_code} {response.text}")


@atexit.register
def _kill_leftover_servers() -> None:
    # A test run that dies before fixture teardown must not leave homeservers behind.
    for server in list(_running):
        server.stop_blocking()
