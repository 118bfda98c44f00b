"""Logging the bot in: credentials from the environment, a reused device, a nio client.

``MATRIX_HOMESERVER`` and ``MATRIX_USER_ID`` name the account;
``MATRIX_ACCESS_TOKEN`` or ``MATRIX_PASSWORD`` proves it. The device id and
access token from the last run are reused (see :mod:`plugins.matrix.login_state`),
so a restart creates no new device; a password login happens only the first
time, or when the saved token stopped working, and then asks for the saved
device id again.

The nio client never retries a 429 by itself (``max_limit_exceeded=0``): the
bot owns its pacing. A request that times out is retried a few times with the
same transaction id, which the homeserver deduplicates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiohttp import ClientError
from nio import AsyncClient, AsyncClientConfig, LoginResponse, WhoamiResponse

from bot.config import Config
from plugins.matrix.login_state import LoginState, LoginStateFile

log = logging.getLogger(__name__)

MAX_TIMEOUTS = 3
REQUEST_TIMEOUT_S = 30.0

_ENV_HELP = (
    "set MATRIX_HOMESERVER (e.g. https://matrix.example.org), MATRIX_USER_ID "
    "(e.g. @threadwright:example.org) and MATRIX_PASSWORD or MATRIX_ACCESS_TOKEN"
)


class MatrixSetupError(Exception):
    """The bot cannot log in; the message says what the operator should do."""


@dataclass(frozen=True, slots=True)
class MatrixCredentials:
    homeserver: str
    user_id: str
    password: str | None
    access_token: str | None

    @classmethod
    def from_config(cls, config: Config) -> MatrixCredentials:
        missing = [
            name
            for name, value in (
                ("MATRIX_HOMESERVER", config.matrix_homeserver),
                ("MATRIX_USER_ID", config.matrix_user_id),
            )
            if not value
        ]
        secrets = config.secrets
        if not (secrets.matrix_password or secrets.matrix_access_token):
            missing.append("MATRIX_PASSWORD or MATRIX_ACCESS_TOKEN")
        if missing:
            raise MatrixSetupError(
                f"Matrix is not configured: missing {', '.join(missing)}; {_ENV_HELP}"
            )
        assert config.matrix_homeserver and config.matrix_user_id
        user_id = config.matrix_user_id.strip()
        if not (user_id.startswith("@") and ":" in user_id):
            raise MatrixSetupError(
                f"MATRIX_USER_ID must be a full user id like @bot:example.org, not {user_id!r}"
            )
        return cls(
            homeserver=config.matrix_homeserver.strip().rstrip("/"),
            user_id=user_id,
            password=secrets.matrix_password,
            access_token=secrets.matrix_access_token,
        )


def client_config(*, encryption: bool) -> AsyncClientConfig:
    return AsyncClientConfig(
        max_limit_exceeded=0,
        max_timeouts=MAX_TIMEOUTS,
        request_timeout=REQUEST_TIMEOUT_S,
        encryption_enabled=encryption,
        store_sync_tokens=False,  # the sync token lives in LoginState
    )


async def log_in(
    credentials: MatrixCredentials,
    state_file: LoginStateFile,
    *,
    encryption: bool,
    device_name: str,
) -> tuple[AsyncClient, LoginState]:
    """A logged-in client and the login state to persist (saved already)."""
    saved = await state_file.load()
    if saved is not None and (
        saved.homeserver != credentials.homeserver or saved.user_id != credentials.user_id
    ):
        saved = None
    client = AsyncClient(
        credentials.homeserver,
        credentials.user_id,
        # nio keeps the Olm account and room keys there (user_device.db).
        store_path=str(state_file.directory) if encryption else "",
        config=client_config(encryption=encryption),
    )
    try:
        state = await _authenticate(client, credentials, saved, device_name)
    except BaseException:
        await client.close()
        raise
    if saved is not None and saved.device_id == state.device_id and saved.next_batch:
        state = state.with_next_batch(saved.next_batch)
    await state_file.save(state)
    return client, state


async def _authenticate(
    client: AsyncClient,
    credentials: MatrixCredentials,
    saved: LoginState | None,
    device_name: str,
) -> LoginState:
    try:
        if credentials.access_token:
            token = credentials.access_token
            known = saved.device_id if saved and saved.access_token == token else None
            device_id = known or await _whoami_device(client, credentials, token)
            if device_id is None:
                raise MatrixSetupError("MATRIX_ACCESS_TOKEN is not valid for MATRIX_USER_ID")
            return _restore(client, credentials, device_id, token)
        if saved is not None:
            if await _whoami_device(client, credentials, saved.access_token) == saved.device_id:
                return _restore(client, credentials, saved.device_id, saved.access_token)
            log.info("saved Matrix access token no longer works; logging in again")
        return await _password_login(client, credentials, saved, device_name)
    except ClientError as exc:
        raise MatrixSetupError(
            f"cannot reach the homeserver at MATRIX_HOMESERVER={credentials.homeserver}: {exc}"
        ) from exc


async def _whoami_device(
    client: AsyncClient, credentials: MatrixCredentials, token: str
) -> str | None:
    """The device behind ``token``, or None when the token is not this user's."""
    client.access_token = token
    response = await client.whoami()
    client.access_token = ""
    if not isinstance(response, WhoamiResponse):
        return None
    if response.user_id != credentials.user_id:
        raise MatrixSetupError(
            f"the access token belongs to {response.user_id}, "
            f"not MATRIX_USER_ID={credentials.user_id}"
        )
    return response.device_id


def _restore(
    client: AsyncClient, credentials: MatrixCredentials, device_id: str, token: str
) -> LoginState:
    client.restore_login(credentials.user_id, device_id, token)
    return LoginState(credentials.homeserver, credentials.user_id, device_id, token)


async def _password_login(
    client: AsyncClient,
    credentials: MatrixCredentials,
    saved: LoginState | None,
    device_name: str,
) -> LoginState:
    if not credentials.password:
        raise MatrixSetupError(
            "the saved Matrix login expired; set MATRIX_PASSWORD to log in again"
        )
    if saved is not None:
        client.device_id = saved.device_id  # log in to the same device, not a new one
    response = await client.login(credentials.password, device_name=device_name)
    if not isinstance(response, LoginResponse):
        raise MatrixSetupError(
            f"login as {credentials.user_id} failed ({response}); check MATRIX_PASSWORD"
        )
    return LoginState(
        credentials.homeserver, credentials.user_id, response.device_id, response.access_token
    )
