"""The Matrix test harness against a real Synapse: server lifecycle, human clients, rate limits."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.matrix_harness.fixtures import HumanFactory
from tests.matrix_harness.human import HumanClient, MatrixRequestError, relation
from tests.matrix_harness.synapse import SynapseNotInstalled, SynapseServer


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def _raw_event(user_token: str, server: SynapseServer, room_id: str, event_id: str) -> dict:
    """The event exactly as the homeserver stores it, bypassing nio's decryption."""
    path = f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/event/{quote(event_id, safe='')}"
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.get(path, headers={"Authorization": f"Bearer {user_token}"})
    response.raise_for_status()
    data: dict = response.json()
    return data


async def _shared_room(alice: HumanClient, bob: HumanClient, *, encrypted: bool = False) -> str:
    room_id = await alice.create_room(name="harness", invite=[bob.user_id], encrypted=encrypted)
    await bob.join(room_id)
    await alice.wait_for_join(room_id, bob.user_id)
    return room_id


async def test_server_starts_registers_and_stops_cleanly(tmp_path: Path) -> None:
    async with SynapseServer(tmp_path / "hs") as server:
        assert server.running
        pid = server.pid
        assert pid is not None
        assert server.startup_seconds is not None and server.startup_seconds < 30
        user = await server.register("carol", "s3cret-pass")
        assert user.user_id == "@carol:localhost"
        assert user.access_token and user.device_id

        async with httpx.AsyncClient(base_url=server.url) as http:
            whoami = await http.get(
                "/_matrix/client/v3/account/whoami",
                headers={"Authorization": f"Bearer {user.access_token}"},
            )
        assert whoami.json()["user_id"] == "@carol:localhost"

        # A password login (a new device) works too, which proves the password was set.
        by_password = await HumanClient.login(server.url, user.user_id, "s3cret-pass")
        try:
            assert by_password.user.device_id != user.device_id
        finally:
            await by_password.close()

    assert not server.running
    assert not _process_exists(pid)
    await server.stop()  # idempotent
    assert "Received SIGTERM" in server.log_tail()


async def test_missing_venv_gives_the_install_command(tmp_path: Path) -> None:
    server = SynapseServer(tmp_path / "hs", venv=tmp_path / "no-such-venv")
    with pytest.raises(SynapseNotInstalled, match=r"run \.ci/install-synapse\.sh"):
        await server.start()
    assert not server.running


async def test_conversation_with_mentions_threads_edits_reactions_redactions(
    human: HumanFactory,
) -> None:
    alice = await human("alice")
    bob = await human("bob")
    room_id = await _shared_room(alice, bob)

    root_id = await alice.send_text(
        room_id, "bob: can you look at this?", mentions=[bob.user_id], html="<b>bob</b>: look"
    )
    root = await bob.wait_for(lambda e: e["event_id"] == root_id)
    assert root["sender"] == alice.user_id
    assert root["content"]["m.mentions"] == {"user_ids": [bob.user_id]}
    assert root["content"]["formatted_body"] == "<b>bob</b>: look"
    assert isinstance(root["origin_server_ts"], int)

    first_reply = await bob.send_text(room_id, "on it", thread_root=root_id)
    seen_reply = await alice.wait_for(lambda e: e["event_id"] == first_reply)
    assert relation(seen_reply) == {
        "rel_type": "m.thread",
        "event_id": root_id,
        "is_falling_back": True,
        "m.in_reply_to": {"event_id": root_id},
    }
    # The next thread reply answers the newest thread event, not the root.
    second_reply = await alice.send_text(room_id, "thanks", thread_root=root_id)
    seen_second = await bob.wait_for(lambda e: e["event_id"] == second_reply)
    assert relation(seen_second)["m.in_reply_to"] == {"event_id": first_reply}
    assert [e["event_id"] for e in await bob.thread_events(room_id, root_id)] == [
        first_reply,
        second_reply,
    ]

    assert await bob.latest_text(room_id, root_id) == "bob: can you look at this?"
    await alice.edit(room_id, root_id, "bob: please look at this")
    last_edit = await alice.edit(room_id, root_id, "bob: never mind")
    await bob.wait_for_latest_text(room_id, root_id, "bob: never mind")
    assert await bob.latest_text(room_id, root_id) == "bob: never mind"
    edit_event = await bob.wait_for(lambda e: e["event_id"] == last_edit)
    assert edit_event["content"]["body"] == "* bob: never mind"
    assert relation(edit_event) == {"rel_type": "m.replace", "event_id": root_id}
    # Edits are not thread replies.
    assert len(await bob.thread_events(room_id, root_id)) == 2

    reaction_id = await bob.react(room_id, root_id, "✅")
    reaction = await alice.wait_for(lambda e: e["event_id"] == reaction_id)
    assert reaction["type"] == "m.reaction"
    assert relation(reaction) == {"rel_type": "m.annotation", "event_id": root_id, "key": "✅"}

    redaction_id = await bob.redact(room_id, first_reply, reason="wrong thread")
    redaction = await alice.wait_for(lambda e: e["event_id"] == redaction_id)
    assert redaction["type"] == "m.room.redaction"
    assert redaction.get("redacts", redaction["content"].get("redacts")) == first_reply


async def test_message_without_intentional_mentions_omits_the_key(human: HumanFactory) -> None:
    alice = await human("alice")
    bob = await human("bob")
    room_id = await _shared_room(alice, bob)
    event_id = await alice.send_text(room_id, "hello bob", intentional_mentions=False)
    seen = await bob.wait_for(lambda e: e["event_id"] == event_id)
    assert "m.mentions" not in seen["content"]
    assert seen["content"]["body"] == "hello bob"


async def test_typing_notification_reaches_the_other_client(human: HumanFactory) -> None:
    alice = await human("alice")
    bob = await human("bob")
    room_id = await _shared_room(alice, bob)
    await bob.set_typing(room_id, True, timeout_ms=5_000)
    assert bob.user_id in await alice.wait_for_typing(bob.user_id)
    assert (room_id, {bob.user_id}) in alice.typing_by_room


async def test_wait_for_fails_loudly_when_nothing_arrives(human: HumanFactory) -> None:
    alice = await human("alice")
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"no matching event within 0\.3s"):
        await alice.wait_for(lambda e: e.get("type") == "m.never", timeout=0.3)
    assert time.monotonic() - started < 2
    with pytest.raises(LookupError):
        await alice.latest_text("!nowhere:localhost", "$missing")


async def test_default_message_rate_limit_fails_fast_with_retry_after(
    human: HumanFactory, synapse_default_limits: SynapseServer
) -> None:
    alice = await human("alice", server=synapse_default_limits, sync=False)
    room_id = await alice.create_room(name="throttled")
    sent = 0
    started = time.monotonic()
    with pytest.raises(MatrixRequestError) as raised:
        for _ in range(30):
            await alice.send_text(room_id, f"update {sent}")
            sent += 1
    # Default rc_message is a burst of 10 at 0.2/s: nio must hand the 429 back, not sleep on it.
    assert raised.value.status_code == "M_LIMIT_EXCEEDED"
    assert raised.value.retry_after_ms is not None and raised.value.retry_after_ms > 0
    assert 5 <= sent <= 12
    assert time.monotonic() - started < 5


async def test_encrypted_room_round_trip(human: HumanFactory, synapse: SynapseServer) -> None:
    alice = await human("alice", e2e=True)
    bob = await human("bob", e2e=True)
    assert alice.client.olm is not None and bob.client.olm is not None
    room_id = await _shared_room(alice, bob, encrypted=True)

    secret_id = await alice.send_text(room_id, "the secret is 42")
    seen = await bob.wait_for(lambda e: e["event_id"] == secret_id)
    assert seen.get("decrypted") is True
    assert seen["type"] == "m.room.message"
    assert seen["content"]["body"] == "the secret is 42"
    assert seen["sender"] == alice.user_id

    on_server = await _raw_event(bob.user.access_token, synapse, room_id, secret_id)
    assert on_server["type"] == "m.room.encrypted"
    assert on_server["content"]["algorithm"] == "m.megolm.v1.aes-sha2"
    assert "secret is 42" not in json.dumps(on_server)

    reply_id = await bob.send_text(room_id, "got it", thread_root=secret_id)
    reply = await alice.wait_for(lambda e: e["event_id"] == reply_id)
    assert reply.get("decrypted") is True
    assert reply["content"]["body"] == "got it"
    assert relation(reply)["rel_type"] == "m.thread"
