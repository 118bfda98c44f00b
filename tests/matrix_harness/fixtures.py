"""pytest fixtures for tests against a real Synapse: servers, users and scripted humans.

Import them into a conftest (``from tests.matrix_harness.fixtures import *``).

The servers are session-scoped but started by *synchronous* fixtures (``start_blocking``): a
Synapse child process belongs to no event loop, so every test keeps its own function-scoped loop
(``asyncio_default_fixture_loop_scope = "function"``) and needs no ``loop_scope`` marks, while
paying Synapse's start-up (about 2 s) once per session. Everything loop-bound (nio clients, HTTP
clients) is created per test, inside the test's loop.

A missing Synapse virtualenv fails the tests that need it, with the command that fixes it.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from tests.matrix_harness.human import HumanClient
from tests.matrix_harness.synapse import RegisteredUser, SynapseServer

__all__ = ["human", "matrix_user", "synapse", "synapse_default_limits"]

MatrixUserFactory = Callable[..., Awaitable[RegisteredUser]]
HumanFactory = Callable[..., Awaitable[HumanClient]]


def _serve(workdir: Path, *, default_rate_limits: bool) -> Iterator[SynapseServer]:
    server = SynapseServer(workdir, default_rate_limits=default_rate_limits)
    server.start_blocking()
    try:
        yield server
    finally:
        server.stop_blocking()


@pytest.fixture(scope="session")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
    """A Synapse with every rate limit out of reach, shared by the whole session."""
    yield from _serve(tmp_path_factory.mktemp("synapse"), default_rate_limits=False)


@pytest.fixture(scope="session")
def synapse_default_limits(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
    """A second Synapse that keeps Synapse's default ``rc_message`` (0.2/s, burst 10)."""
    yield from _serve(tmp_path_factory.mktemp("synapse-default-limits"), default_rate_limits=True)


@pytest.fixture
def matrix_user(request: pytest.FixtureRequest) -> MatrixUserFactory:
    """``await matrix_user("alice", server=None, admin=False)``: a new user with a unique name.

    The random suffix keeps tests sharing one server apart; ``server`` defaults to ``synapse``.
    """

    async def register(
        name: str, *, server: SynapseServer | None = None, admin: bool = False
    ) -> RegisteredUser:
        target: SynapseServer = server or request.getfixturevalue("synapse")
        username = f"{name.lower()}-{secrets.token_hex(4)}"
        return await target.register(username, secrets.token_urlsafe(12), admin=admin)

    return register


@pytest.fixture
async def human(matrix_user: MatrixUserFactory, tmp_path: Path) -> AsyncIterator[HumanFactory]:
    """``await human("alice", server=None, e2e=False, sync=True)``: a syncing :class:`HumanClient`.

    Pass a name to register a fresh user, or a :class:`RegisteredUser` to drive an existing one.
    ``e2e=True`` gives the client a key store under ``tmp_path`` (needs ``matrix-nio[e2e]``).
    Every client is closed when the test ends.
    """
    clients: list[HumanClient] = []

    async def make(
        who: str | RegisteredUser,
        *,
        server: SynapseServer | None = None,
        e2e: bool = False,
        sync: bool = True,
    ) -> HumanClient:
        user = who if isinstance(who, RegisteredUser) else await matrix_user(who, server=server)
        store_path = tmp_path / f"nio-store-{user.localpart}-{len(clients)}" if e2e else None
        client = HumanClient(user, store_path=store_path)
        clients.append(client)
        if sync:
            await client.start_sync()
        return client

    yield make
    for client in clients:
        await client.close()
