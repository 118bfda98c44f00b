"""The Slack emulator, proven against the real slack_sdk and slack_bolt.

Every test drives the emulator through the production client libraries over
loopback (or, where a library would hide the detail under test, through a raw
aiohttp client), so a pass means those libraries cannot tell it from Slack.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from tests.emulators.slack import SlackEmulator

# Raw-socket tests shorten the ack window to see redeliveries quickly; Bolt tests keep
# a roomier one so that a slow machine cannot turn a prompt ack into a retry.
ACK_TIMEOUT = 0.3
BOLT_ACK_TIMEOUT = 1.5


@pytest.fixture
async def emu() -> AsyncIterator[SlackEmulator]:
    async with SlackEmulator(ack_timeout=BOLT_ACK_TIMEOUT) as emulator:
        emulator.add_user("U1", "alice")
        emulator.add_user("U2", "bob")
        emulator.add_channel("C1", "general", members=["U1", "U2"])
        emulator.add_channel("C2", "random", members=["U1"], bot_member=False)
        emulator.add_channel("D1", "dm-alice", members=["U1"])
        yield emulator


@pytest.fixture
def client(emu: SlackEmulator) -> AsyncWebClient:
    return AsyncWebClient(token=emu.bot_token, base_url=emu.api_url)


async def api_error(call: Awaitable[Any]) -> SlackApiError:
    with pytest.raises(SlackApiError) as raised:
        await call
    return raised.value


# ------------------------------------------------------------------ Web API


async def test_auth_test_reports_user_and_bot_identity(emu: SlackEmulator, client: AsyncWebClient):
    response = await client.auth_test()
    assert response["user_id"] == "UBOT"
    assert response["bot_id"] == "BBOT"
    assert response["team_id"] == "T0001"
    assert response["user"] == "threadwright"
    assert response["team"] == "Threadwright Test"
    assert response["url"].startswith("https://")
    assert emu.calls_to("auth.test")[0].status == 200


async def test_tokens_are_checked(emu: SlackEmulator):
    wrong = AsyncWebClient(token="xoxb-wrong", base_url=emu.api_url)
    assert (await api_error(wrong.auth_test())).response["error"] == "invalid_auth"
    app_level = AsyncWebClient(token=emu.app_token, base_url=emu.api_url)
    error = await api_error(app_level.chat_postMessage(channel="C1", text="x"))
    assert error.response["error"] == "not_allowed_token_type"
    anonymous = AsyncWebClient(base_url=emu.api_url)
    assert (await api_error(anonymous.auth_test())).response["error"] == "not_authed"
    bot = AsyncWebClient(token=emu.bot_token, base_url=emu.api_url)
    error = await api_error(bot.apps_connections_open(app_token=emu.bot_token))
    assert error.response["error"] == "not_allowed_token_type"
    assert [c.error for c in emu.calls] == [
        "invalid_auth",
        "not_allowed_token_type",
        "not_authed",
        "not_allowed_token_type",
    ]
    assert all(c.status == 200 for c in emu.calls)


async def test_unknown_method(client: AsyncWebClient):
    error = await api_error(client.api_call("chat.teleport", json={"channel": "C1"}))
    assert error.response.status_code == 200
    assert error.response["error"] == "unknown_method"


async def test_post_message_in_thread_with_blocks(emu: SlackEmulator, client: AsyncWebClient):
    root = await emu.user_posts("C1", "U1", "please help")
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*working*"}}]
    response = await client.chat_postMessage(
        channel="C1", thread_ts=root, text="working", blocks=blocks, mrkdwn=False
    )
    assert response["channel"] == "C1"
    message = response["message"]
    assert message["bot_id"] == "BBOT"
    assert message["user"] == "UBOT"
    assert message["thread_ts"] == root
    assert message["blocks"] == blocks
    assert "subtype" not in message
    assert emu.calls_to("chat.postMessage")[0].encoding == "json"

    thread = emu.thread("C1", root)
    assert [m.ts for m in thread] == [root, response["ts"]]
    assert thread[0].reply_count == 1
    assert thread[1].text == "working" and thread[1].mrkdwn is False
    assert emu.bot_replies("C1", root) == [thread[1]]
    # A reply to a reply lands in the same thread, as in Slack.
    again = await client.chat_postMessage(channel="C1", thread_ts=response["ts"], text="more")
    assert again["message"]["thread_ts"] == root
    assert float(again["ts"]) > float(response["ts"])


async def test_username_override_is_a_bot_message(client: AsyncWebClient):
    response = await client.chat_postMessage(channel="C1", text="hi", username="helper")
    assert response["message"]["subtype"] == "bot_message"
    assert response["message"]["username"] == "helper"
    assert response["message"]["bot_id"] == "BBOT"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"channel": "C404", "text": "x"}, "channel_not_found"),
        ({"channel": "C1"}, "no_text"),
        ({"channel": "C1", "text": "x" * 4001}, "msg_too_long"),
        ({"channel": "C2", "text": "x"}, "not_in_channel"),
        ({"channel": "C1", "text": "x", "thread_ts": "1.000001"}, "thread_not_found"),
        ({"channel": "C1", "blocks": [{"type": "divider"}] * 51}, "invalid_blocks"),
    ],
)
async def test_post_message_errors(client: AsyncWebClient, kwargs: dict[str, Any], error: str):
    # api_call, because chat_postMessage itself warns before sending a message without text.
    raised = await api_error(client.api_call("chat.postMessage", json=kwargs))
    assert raised.response["error"] == error
    assert raised.response.status_code == 200


async def test_form_and_query_bodies_are_read(emu: SlackEmulator, client: AsyncWebClient):
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}]
    form = {"channel": "C1", "text": "from a form", "blocks": json.dumps(blocks)}
    posted = await client.api_call("chat.postMessage", data=form)
    assert emu.message("C1", posted["ts"]).blocks == blocks  # type: ignore[union-attr]
    assert emu.calls_to("chat.postMessage")[-1].encoding == "form"

    # `token` as a form field instead of a header, sent with a plain HTTP client.
    async with aiohttp.ClientSession() as session:
        url = f"{emu.api_url}chat.postMessage"
        async with session.post(url, data={"token": emu.bot_token, "channel": "C1"}) as resp:
            assert await resp.json() == {"ok": False, "error": "no_text"}
        async with session.get(f"{emu.api_url}auth.test?token={emu.bot_token}") as resp:
            assert (await resp.json())["user_id"] == "UBOT"

    history = await client.conversations_history(channel="C1")
    assert emu.calls_to("conversations.history")[0].http_method == "GET"
    assert emu.calls_to("conversations.history")[0].encoding == "query"
    assert history["messages"][0]["text"] == "from a form"


async def test_update_and_delete(emu: SlackEmulator, client: AsyncWebClient):
    root = await emu.user_posts("C1", "U1", "task")
    posted = await client.chat_postMessage(channel="C1", thread_ts=root, text="step 1")
    updated = await client.chat_update(channel="C1", ts=posted["ts"], text="step 1, step 2")
    assert updated["ts"] == posted["ts"]
    assert updated["text"] == "step 1, step 2"
    assert updated["message"]["edited"]["user"] == "UBOT"
    message = emu.message("C1", posted["ts"])
    assert message is not None and message.text == "step 1, step 2"
    assert [e.text for e in message.edits] == ["step 1"]

    not_found = await api_error(client.chat_update(channel="C1", ts="1.000002", text="x"))
    assert not_found.response["error"] == "message_not_found"
    not_ours = await api_error(client.chat_update(channel="C1", ts=root, text="x"))
    assert not_ours.response["error"] == "cant_update_message"
    too_long = await api_error(client.chat_update(channel="C1", ts=posted["ts"], text="y" * 4001))
    assert too_long.response["error"] == "msg_too_long"

    cant = await api_error(client.chat_delete(channel="C1", ts=root))
    assert cant.response["error"] == "cant_delete_message"
    await client.chat_delete(channel="C1", ts=posted["ts"])
    assert emu.message("C1", posted["ts"]) is None
    assert emu.thread("C1", root)[0].reply_count == 0


async def test_permalink(emu: SlackEmulator, client: AsyncWebClient):
    root = await emu.user_posts("C1", "U1", "root")
    link = await client.chat_getPermalink(channel="C1", message_ts=root)
    assert link["permalink"].endswith(f"/archives/C1/p{root.replace('.', '')}")


async def test_post_ephemeral(emu: SlackEmulator, client: AsyncWebClient):
    response = await client.chat_postEphemeral(channel="C1", user="U2", text="only you")
    assert response["message_ts"]
    assert emu.ephemerals[0].user == "U2" and emu.ephemerals[0].text == "only you"
    error = await api_error(client.chat_postEphemeral(channel="D1", user="U2", text="x"))
    assert error.response["error"] == "user_not_in_channel"


async def test_native_streaming_and_expiry(emu: SlackEmulator, client: AsyncWebClient):
    root = await emu.user_posts("C1", "U1", "explain")
    streamer = await client.chat_stream(
        channel="C1", thread_ts=root, recipient_user_id="U1", recipient_team_id="T0001"
    )
    await streamer.append(markdown_text="a" * 300)
    await streamer.append(markdown_text="b")
    await streamer.stop(markdown_text="c")
    assert streamer.ts is not None
    message = emu.message("C1", streamer.ts)
    assert message is not None and message.text == "a" * 300 + "bc"
    assert message.thread_ts == root and not message.streaming
    assert [c.method for c in emu.calls[-2:]] == ["chat.startStream", "chat.stopStream"]
    stopped = await api_error(
        client.chat_appendStream(channel="C1", ts=streamer.ts, markdown_text="x")
    )
    assert stopped.response["error"] == "message_not_in_streaming_state"

    missing = await api_error(client.chat_startStream(channel="C1", thread_ts=root))
    assert missing.response["error"] == "invalid_arguments"
    emu.stream_ttl = 0.05
    started = await client.chat_startStream(
        channel="C1",
        thread_ts=root,
        markdown_text="part",
        recipient_user_id="U1",
        recipient_team_id="T0001",
    )
    await client.chat_appendStream(channel="C1", ts=started["ts"], markdown_text=" two")
    await asyncio.sleep(0.1)
    expired = await api_error(
        client.chat_appendStream(channel="C1", ts=started["ts"], markdown_text="!")
    )
    assert expired.response["error"] == "message_not_in_streaming_state"
    # The documented fallback: finish the same message with chat.update.
    await client.chat_update(channel="C1", ts=started["ts"], text="part two, done")
    assert emu.message("C1", started["ts"]).text == "part two, done"  # type: ignore[union-attr]


async def test_reactions(emu: SlackEmulator, client: AsyncWebClient):
    ts = await emu.user_posts("C1", "U1", "go")
    await client.reactions_add(channel="C1", timestamp=ts, name="eyes")
    assert emu.reactions("C1", ts) == {"eyes": ["UBOT"]}
    assert emu.calls_to("reactions.add")[0].encoding == "query"  # slack_sdk's params on POST
    again = await api_error(client.reactions_add(channel="C1", timestamp=ts, name="eyes"))
    assert again.response["error"] == "already_reacted"
    await client.reactions_remove(channel="C1", timestamp=ts, name="eyes")
    assert emu.reactions("C1", ts) == {}
    gone = await api_error(client.reactions_remove(channel="C1", timestamp=ts, name="eyes"))
    assert gone.response["error"] == "no_reaction"
    nothing = await api_error(client.reactions_add(channel="C1", timestamp="1.5", name="x"))
    assert nothing.response["error"] == "message_not_found"


async def test_conversations_users_and_bots(emu: SlackEmulator, client: AsyncWebClient):
    root = await emu.user_posts("C1", "U1", "root")
    replies = [await emu.user_posts("C1", "U2", f"reply {i}", thread_ts=root) for i in range(3)]
    await emu.user_posts("C1", "U1", "later")

    first = await client.conversations_replies(channel="C1", ts=root, limit=2)
    assert [m["ts"] for m in first["messages"]] == [root, replies[0]]
    assert first["has_more"] is True
    rest = await client.conversations_replies(
        channel="C1", ts=root, cursor=first["response_metadata"]["next_cursor"]
    )
    assert [m["ts"] for m in rest["messages"]] == replies[1:]
    assert first["messages"][0]["reply_count"] == 3
    assert first["messages"][0]["reply_users"] == ["U2"]
    assert first["messages"][1]["parent_user_id"] == "U1"
    from_reply = await client.conversations_replies(channel="C1", ts=replies[1])
    assert len(from_reply["messages"]) == 4
    missing = await api_error(client.conversations_replies(channel="C1", ts="1.000003"))
    assert missing.response["error"] == "thread_not_found"

    history = await client.conversations_history(channel="C1")
    assert [m["text"] for m in history["messages"]] == ["later", "root"]
    hidden = await api_error(client.conversations_history(channel="C2"))
    assert hidden.response["error"] == "not_in_channel"

    info = await client.conversations_info(channel="C1")
    assert info["channel"]["name"] == "general" and info["channel"]["is_member"] is True
    dm = await client.conversations_info(channel="D1")
    assert dm["channel"]["is_im"] is True and dm["channel"]["user"] == "U1"
    members = await client.conversations_members(channel="C1")
    assert sorted(members["members"]) == ["U1", "U2", "UBOT"]

    alice = await client.users_info(user="U1")
    assert alice["user"]["name"] == "alice" and alice["user"]["is_bot"] is False
    assert (await client.users_info(user="UBOT"))["user"]["is_bot"] is True
    assert (await api_error(client.users_info(user="U404"))).response["error"] == "user_not_found"
    bot = await client.bots_info(bot="BBOT")
    assert bot["bot"]["user_id"] == "UBOT" and bot["bot"]["app_id"] == "A0001"
    assert (await api_error(client.bots_info(bot="B404"))).response["error"] == "bot_not_found"


async def test_assistant_thread_status_clears_on_reply(emu: SlackEmulator, client: AsyncWebClient):
    root = await emu.user_posts("C1", "U1", "task")
    await client.assistant_threads_setStatus(
        channel_id="C1", thread_ts=root, status="is thinking…", loading_messages=["Reading"]
    )
    status = emu.thread_statuses[("C1", root)]
    assert status.status == "is thinking…" and status.loading_messages == ["Reading"]
    await client.chat_postMessage(channel="C1", thread_ts=root, text="done")
    assert ("C1", root) not in emu.thread_statuses


async def test_files_upload_v2_attaches_file_to_thread(emu: SlackEmulator, client: AsyncWebClient):
    root = await emu.user_posts("C1", "U1", "long output please")
    response = await client.files_upload_v2(
        channel="C1",
        thread_ts=root,
        content="line\n" * 1000,
        filename="output.txt",
        title="Full output",
        initial_comment="Output attached",
    )
    file_id = response["file"]["id"]
    assert response["file"]["title"] == "Full output"
    assert emu.files[file_id].content == b"line\n" * 1000
    reply = emu.bot_replies("C1", root)[-1]
    assert reply.text == "Output attached"
    assert [f.id for f in reply.files] == [file_id]
    methods = [c.method for c in emu.calls if c.method.startswith("files.")]
    assert methods == ["files.getUploadURLExternal", "files.completeUploadExternal"]


async def test_rate_limit_surfaces_as_429(emu: SlackEmulator, client: AsyncWebClient):
    posted = await client.chat_postMessage(channel="C1", text="x")
    emu.rate_limit("chat.update", times=2, retry_after=7)
    for _ in range(2):
        error = await api_error(client.chat_update(channel="C1", ts=posted["ts"], text="y"))
        assert error.response.status_code == 429
        assert error.response.headers["Retry-After"] == "7"
        assert error.response["error"] == "ratelimited"
    await client.chat_update(channel="C1", ts=posted["ts"], text="y")
    assert emu.rate_limited_count["chat.update"] == 2
    assert [c.status for c in emu.calls_to("chat.update")] == [429, 429, 200]


async def test_rate_limit_retry_handler_retries_and_succeeds(emu: SlackEmulator):
    retrying = AsyncWebClient(
        token=emu.bot_token,
        base_url=emu.api_url,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)],
    )
    emu.rate_limit("chat.postMessage", times=1, retry_after=0)
    response = await retrying.chat_postMessage(channel="C1", text="eventually")
    assert response["ok"] is True
    assert [c.status for c in emu.calls_to("chat.postMessage")] == [429, 200]


async def test_steady_rate_limit(emu: SlackEmulator, client: AsyncWebClient):
    emu.set_rate("chat.postMessage", per_second=1, burst=2)
    await client.chat_postMessage(channel="C1", text="1")
    await client.chat_postMessage(channel="C1", text="2")
    error = await api_error(client.chat_postMessage(channel="C1", text="3"))
    assert error.response.status_code == 429
    assert int(error.response.headers["Retry-After"]) >= 1
    assert emu.rate_limited_count["chat.postMessage"] == 1


# -------------------------------------------------------- Socket Mode (Bolt)


async def close_handler(handler: AsyncSocketModeHandler) -> None:
    """Close a Socket Mode handler and wait for the tasks its client leaves behind."""
    socket_client = handler.client
    await handler.close_async()
    tasks = [
        socket_client.message_processor,
        socket_client.current_session_monitor,
        socket_client.message_receiver,
    ]
    await asyncio.gather(*[t for t in tasks if t is not None], return_exceptions=True)


@pytest.fixture
async def connect(
    emu: SlackEmulator,
) -> AsyncIterator[Callable[[AsyncApp], Awaitable[AsyncSocketModeHandler]]]:
    handlers: list[AsyncSocketModeHandler] = []

    async def connect_app(app: AsyncApp) -> AsyncSocketModeHandler:
        handler = AsyncSocketModeHandler(app, emu.app_token)
        handlers.append(handler)
        await handler.connect_async()
        return handler

    yield connect_app
    for handler in handlers:
        await close_handler(handler)


@pytest.fixture
def app(client: AsyncWebClient) -> AsyncApp:
    return AsyncApp(client=client)


Connect = Callable[[AsyncApp], Awaitable[AsyncSocketModeHandler]]


async def test_bolt_gets_mentions_and_messages_but_not_its_own(
    emu: SlackEmulator, app: AsyncApp, connect: Connect
):
    mentions: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    changes: list[dict[str, Any]] = []

    @app.event("app_mention")
    async def on_mention(event: dict[str, Any], say: Any) -> None:
        mentions.append(event)
        posted = await say(text="on it", thread_ts=event["ts"])
        await app.client.chat_update(channel=event["channel"], ts=posted["ts"], text="done")

    @app.message()
    async def on_message(message: dict[str, Any]) -> None:
        messages.append(message)

    @app.event({"type": "message", "subtype": "message_changed"})
    async def on_changed(event: dict[str, Any]) -> None:
        changes.append(event)

    await connect(app)
    root = await emu.user_posts("C1", "U1", "<@UBOT> add a --verbose flag")
    reply = await emu.wait_for(lambda: [m for m in emu.bot_replies("C1", root) if m.text == "done"])
    # message + app_mention + the bot's own post and its update, each acked by Bolt.
    await emu.wait_for(lambda: len(emu.acks) == 4)

    assert [m["ts"] for m in mentions] == [root]
    assert mentions[0]["user"] == "U1" and mentions[0]["channel"] == "C1"
    assert mentions[0]["client_msg_id"] and mentions[0]["team"] == "T0001"
    assert [m["ts"] for m in messages] == [root]
    assert messages[0]["channel_type"] == "channel" and "subtype" not in messages[0]
    assert changes == []

    sent = [e.envelope["payload"] for e in emu.envelopes]
    assert {p["event_id"] for p in sent} == {a.event_id for a in emu.acks}
    echo = next(p["event"] for p in sent if p["event"].get("bot_id") == "BBOT")
    assert echo["ts"] == reply[0].ts and "subtype" not in echo
    changed = next(p["event"] for p in sent if p["event"].get("subtype") == "message_changed")
    assert changed["hidden"] is True
    assert changed["message"]["text"] == "done" and changed["previous_message"]["text"] == "on it"
    outer = sent[0]
    assert outer["type"] == "event_callback" and outer["api_app_id"] == "A0001"
    assert outer["authorizations"][0]["user_id"] == "UBOT"
    assert outer["event_context"].startswith("4-") and outer["is_ext_shared_channel"] is False

    # A person's edit is a message_changed Bolt does hand over.
    await emu.user_edits("C1", "U1", root, "<@UBOT> add a --quiet flag")
    await emu.wait_for(lambda: changes)
    assert changes[0]["message"]["text"] == "<@UBOT> add a --quiet flag"


async def test_bolt_drops_its_own_bot_message_by_bot_id(
    emu: SlackEmulator, app: AsyncApp, connect: Connect
):
    messages: list[dict[str, Any]] = []

    @app.message()
    async def on_message(message: dict[str, Any]) -> None:
        messages.append(message)

    await connect(app)
    # With a username override the echo is a bot_message without `user`: only the
    # bot_id from auth.test lets Bolt recognise it as its own.
    await app.client.chat_postMessage(channel="C1", text="as helper", username="helper")
    await emu.user_posts("C1", "U1", "human")
    await emu.wait_for(lambda: messages)
    await emu.wait_for(lambda: len(emu.acks) == 2)
    assert [m["text"] for m in messages] == ["human"]
    echo = emu.envelopes[0].envelope["payload"]["event"]
    assert echo["subtype"] == "bot_message" and echo["bot_id"] == "BBOT" and "user" not in echo


async def test_thread_replies_dms_and_membership(
    emu: SlackEmulator, app: AsyncApp, connect: Connect
):
    messages: list[dict[str, Any]] = []
    mentions: list[dict[str, Any]] = []

    @app.message()
    async def on_message(message: dict[str, Any]) -> None:
        messages.append(message)

    @app.event("app_mention")
    async def on_mention(event: dict[str, Any]) -> None:
        mentions.append(event)

    await connect(app)
    root = await emu.user_posts("C1", "U1", "root")
    await emu.user_posts("C2", "U1", "<@UBOT> you are not in here")
    reply = await emu.user_posts("C1", "U2", "<@UBOT> steer", thread_ts=root)
    await emu.user_posts("D1", "U1", "<@UBOT> in a DM")
    await emu.wait_for(lambda: len(messages) == 3 and len(mentions) == 1)
    await emu.wait_for(lambda: len(emu.acks) == 4)

    assert [m["text"] for m in messages] == ["root", "<@UBOT> steer", "<@UBOT> in a DM"]
    assert messages[1]["thread_ts"] == root and messages[1]["parent_user_id"] == "U1"
    assert messages[2]["channel_type"] == "im"
    assert mentions[0]["ts"] == reply and mentions[0]["thread_ts"] == root
    assert all(e.envelope["payload"]["event"]["channel"] != "C2" for e in emu.envelopes)
    assert len(emu.envelopes) == 4


async def test_bolt_receives_reactions(emu: SlackEmulator, app: AsyncApp, connect: Connect):
    reactions: list[dict[str, Any]] = []

    @app.event("reaction_added")
    async def on_reaction(event: dict[str, Any]) -> None:
        reactions.append(event)

    await connect(app)
    root = await emu.user_posts("C1", "U1", "task")
    posted = await app.client.chat_postMessage(channel="C1", thread_ts=root, text="working")
    await app.client.reactions_add(channel="C1", timestamp=root, name="eyes")
    await emu.user_reacts("C1", "U1", posted["ts"], ":x:")
    await emu.wait_for(lambda: reactions)
    # The bot's own reaction is delivered too; Bolt acks it as a self event, unseen.
    sent = [e.envelope["payload"] for e in emu.envelopes]
    reaction_ids = {p["event_id"] for p in sent if p["event"]["type"] == "reaction_added"}
    assert len(reaction_ids) == 2
    await emu.wait_for(lambda: reaction_ids <= {a.event_id for a in emu.acks})
    assert reactions == [
        {
            "type": "reaction_added",
            "user": "U1",
            "reaction": "x",
            "item": {"type": "message", "channel": "C1", "ts": posted["ts"]},
            "item_user": "UBOT",
            "event_ts": reactions[0]["event_ts"],
        }
    ]
    assert emu.reactions("C1", posted["ts"]) == {"x": ["U1"]}


async def test_bolt_acks_slash_command_with_payload(
    emu: SlackEmulator, app: AsyncApp, connect: Connect
):
    commands: list[dict[str, Any]] = []

    @app.command("/refactor")
    async def refactor(ack: Any, command: dict[str, Any], respond: Any) -> None:
        await ack(text=f"Refactoring {command['text']}")
        commands.append(command)
        await respond(text="Started in a thread", response_type="in_channel")

    await connect(app)
    payload = await emu.slash_command(
        command="/refactor", text="src/utils.py", user="U1", channel="C1"
    )
    assert payload["text"] == "Refactoring src/utils.py"
    ack = next(a for a in emu.acks if a.kind == "slash_commands")
    assert 0 < ack.latency < 3
    await emu.wait_for(lambda: emu.responses)
    assert emu.responses[0].body["text"] == "Started in a thread"
    assert [m.text for m in emu.store.history("C1")] == ["Started in a thread"]

    command = commands[0]
    assert command["command"] == "/refactor" and command["channel_id"] == "C1"
    assert command["user_id"] == "U1" and command["user_name"] == "alice"
    assert command["team_id"] == "T0001" and command["api_app_id"] == "A0001"
    assert command["trigger_id"] and command["response_url"].startswith(emu.base_url)
    assert "thread_ts" not in command


async def test_bolt_receives_button_clicks(emu: SlackEmulator, app: AsyncApp, connect: Connect):
    clicks: list[tuple[dict[str, Any], dict[str, Any]]] = []

    @app.action("approve")
    async def approve(ack: Any, action: dict[str, Any], body: dict[str, Any]) -> None:
        await ack()
        clicks.append((action, body))

    await connect(app)
    button = {
        "type": "button",
        "action_id": "approve",
        "text": {"type": "plain_text", "text": "Allow"},
        "value": "yes",
    }
    blocks = [{"type": "actions", "block_id": "approval", "elements": [button]}]
    posted = await app.client.chat_postMessage(channel="C1", text="Allow rm?", blocks=blocks)
    assert await emu.click_button("U2", "C1", posted["ts"], "approve", "yes") == {}
    await emu.wait_for(lambda: clicks)
    action, body = clicks[0]
    assert action["value"] == "yes" and action["block_id"] == "approval"
    assert body["user"]["id"] == "U2" and body["container"]["message_ts"] == posted["ts"]


async def test_bolt_reconnects_after_disconnect(
    emu: SlackEmulator, app: AsyncApp, connect: Connect
):
    mentions: list[dict[str, Any]] = []

    @app.event("app_mention")
    async def on_mention(event: dict[str, Any]) -> None:
        mentions.append(event)

    await connect(app)
    await emu.wait_for(lambda: emu.open_connections == 1)
    await emu.disconnect_all(reason="refresh_requested")
    await emu.wait_for(lambda: emu.connection_count == 2 and emu.open_connections == 1)
    assert len(emu.calls_to("apps.connections.open")) == 2

    await emu.user_posts("C1", "U1", "<@UBOT> still there?")
    await emu.wait_for(lambda: mentions)
    assert {e.connection_id for e in emu.envelopes} == {2}


# ------------------------------------------------- Socket Mode (raw client)


async def open_raw_socket(
    emu: SlackEmulator, session: aiohttp.ClientSession
) -> tuple[aiohttp.ClientWebSocketResponse, dict[str, Any]]:
    """A Socket Mode connection that acks nothing unless the test says so."""
    emu.ack_timeout = ACK_TIMEOUT
    web_client = AsyncWebClient(base_url=emu.api_url)
    opened = await web_client.apps_connections_open(app_token=emu.app_token)
    assert opened["url"].startswith(f"ws://127.0.0.1:{emu.port}/")
    ws = await session.ws_connect(opened["url"], autoping=False)
    hello = await ws.receive_json(timeout=1)
    return ws, hello


async def test_unacked_event_is_redelivered_three_times(emu: SlackEmulator):
    async with aiohttp.ClientSession() as session:
        ws, hello = await open_raw_socket(emu, session)
        assert hello["type"] == "hello" and hello["connection_info"]["app_id"] == "A0001"
        await emu.user_posts("C1", "U1", "nobody acks this")
        envelopes = [await ws.receive_json(timeout=1) for _ in range(4)]
        assert [e["retry_attempt"] for e in envelopes] == [0, 1, 2, 3]
        assert [e["retry_reason"] for e in envelopes] == ["", "timeout", "timeout", "timeout"]
        assert {e["type"] for e in envelopes} == {"events_api"}
        assert len({e["payload"]["event_id"] for e in envelopes}) == 1
        assert all(e["accepts_response_payload"] is False for e in envelopes)
        with pytest.raises(TimeoutError):
            await ws.receive_json(timeout=ACK_TIMEOUT * 2)
        assert emu.acks == []
        await ws.close()


async def test_ack_of_a_retry_stops_redelivery(emu: SlackEmulator):
    async with aiohttp.ClientSession() as session:
        ws, _ = await open_raw_socket(emu, session)
        await emu.user_posts("C1", "U1", "late ack")
        first = await ws.receive_json(timeout=1)
        retry = await ws.receive_json(timeout=1)
        assert retry["payload"]["event_id"] == first["payload"]["event_id"]
        await ws.send_json({"envelope_id": retry["envelope_id"]})
        with pytest.raises(TimeoutError):
            await ws.receive_json(timeout=ACK_TIMEOUT * 2)
        [ack] = emu.acks
        assert ack.envelope_id == retry["envelope_id"] and ack.retry_attempt == 1
        assert ack.event_id == first["payload"]["event_id"]
        await ws.close()


async def test_deliveries_wait_for_a_connection_and_pings_are_answered(emu: SlackEmulator):
    emu.ack_timeout = ACK_TIMEOUT
    await emu.user_posts("C1", "U1", "sent while offline")
    await asyncio.sleep(ACK_TIMEOUT * 2)
    assert emu.envelopes == []
    async with aiohttp.ClientSession() as session:
        ws, _ = await open_raw_socket(emu, session)
        envelope = await ws.receive_json(timeout=1)
        assert envelope["payload"]["event"]["text"] == "sent while offline"
        assert envelope["retry_attempt"] == 0
        await ws.send_json({"envelope_id": envelope["envelope_id"]})

        await ws.ping(b"sdk-ping-pong:1700000000.0")
        pong = await ws.receive(timeout=1)
        assert pong.type == aiohttp.WSMsgType.PONG and pong.data == b"sdk-ping-pong:1700000000.0"
        await ws.close()


async def test_socket_urls_are_single_use(emu: SlackEmulator):
    async with aiohttp.ClientSession() as session:
        web_client = AsyncWebClient(base_url=emu.api_url)
        url = (await web_client.apps_connections_open(app_token=emu.app_token))["url"]
        ws = await session.ws_connect(url)
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await session.ws_connect(url)
        await ws.close()


async def test_unacked_slash_command_times_out_without_retry(emu: SlackEmulator):
    async with aiohttp.ClientSession() as session:
        ws, _ = await open_raw_socket(emu, session)
        with pytest.raises(TimeoutError):
            await emu.slash_command("/refactor", "x.py", user="U1", channel="C1", timeout=0.2)
        envelope = await ws.receive_json(timeout=1)
        assert envelope["type"] == "slash_commands" and envelope["accepts_response_payload"]
        with pytest.raises(TimeoutError):
            await ws.receive_json(timeout=ACK_TIMEOUT * 2)
        await ws.close()


async def test_disconnect_frame(emu: SlackEmulator):
    async with aiohttp.ClientSession() as session:
        ws, _ = await open_raw_socket(emu, session)
        closing = asyncio.create_task(emu.disconnect_all(reason="warning"))
        frame = await ws.receive_json(timeout=1)
        assert frame["type"] == "disconnect" and frame["reason"] == "warning"
        await ws.close()
        await closing
        assert emu.open_connections == 0


# ------------------------------------------------------------------ HTTP mode


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[web.Application], Awaitable[str]]]:
    """Serve an aiohttp application on loopback; returns its base URL."""
    runners: list[web.AppRunner] = []

    async def start(application: web.Application) -> str:
        runner = web.AppRunner(application, shutdown_timeout=1.0)
        runners.append(runner)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield start
    for runner in runners:
        await runner.cleanup()


Serve = Callable[[web.Application], Awaitable[str]]


async def test_http_mode_signed_events_and_commands(
    emu: SlackEmulator, client: AsyncWebClient, serve: Serve
):
    app = AsyncApp(client=client, signing_secret="shh")
    mentions: list[dict[str, Any]] = []
    clicks: list[dict[str, Any]] = []

    @app.event("app_mention")
    async def on_mention(event: dict[str, Any]) -> None:
        mentions.append(event)

    @app.event("message")
    async def on_message() -> None:
        pass

    @app.command("/refactor")
    async def refactor(ack: Any, command: dict[str, Any]) -> None:
        await ack(text=f"On {command['text']}")

    @app.action("stop")
    async def stop(ack: Any, action: dict[str, Any]) -> None:
        await ack()
        clicks.append(action)

    base = await serve(app.web_app(path="/slack/events"))
    emu.deliver_http(f"{base}/slack/events", signing_secret="shh")
    assert await emu.url_verification() is True
    root = await emu.user_posts("C1", "U1", "<@UBOT> over HTTP")
    await emu.wait_for(lambda: mentions)
    assert mentions[0]["ts"] == root
    payload = await emu.slash_command("/refactor", "src/utils.py", user="U1", channel="C1")
    assert payload["text"] == "On src/utils.py"
    assert await emu.click_button("U1", "C1", root, "stop", "now") == {}
    assert clicks[0]["value"] == "now"
    await emu.wait_for(lambda: len(emu.http_attempts) == 4)
    assert {a.status for a in emu.http_attempts} == {200}
    assert {a.retry_num for a in emu.http_attempts} == {0}
    assert emu.envelopes == []


async def test_http_mode_bad_signature_is_rejected(
    emu: SlackEmulator, client: AsyncWebClient, serve: Serve
):
    app = AsyncApp(client=client, signing_secret="shh")
    seen: list[dict[str, Any]] = []

    @app.event("message")
    async def on_message(event: dict[str, Any]) -> None:
        seen.append(event)

    base = await serve(app.web_app())
    emu.deliver_http(f"{base}/slack/events", signing_secret="not the secret")
    await emu.user_posts("C1", "U1", "forged?")
    await emu.wait_for(lambda: len(emu.http_attempts) == 4)
    assert [a.status for a in emu.http_attempts] == [401] * 4
    assert [a.retry_num for a in emu.http_attempts] == [0, 1, 2, 3]
    assert seen == []


async def test_http_mode_headers_and_retry_reasons(emu: SlackEmulator, serve: Serve):
    emu.ack_timeout = ACK_TIMEOUT
    verifier = SignatureVerifier("shh")
    requests: list[tuple[dict[str, str], bool]] = []

    async def endpoint(request: web.Request) -> web.Response:
        body = await request.text()
        headers = dict(request.headers)
        requests.append((headers, verifier.is_valid_request(body, headers)))
        if len(requests) == 1:
            return web.Response(status=500)
        if len(requests) == 2:
            await asyncio.sleep(ACK_TIMEOUT + 0.1)
        return web.Response(status=200)

    application = web.Application()
    application.router.add_post("/events", endpoint)
    base = await serve(application)
    emu.deliver_http(f"{base}/events", signing_secret="shh")
    await emu.user_posts("C1", "U1", "flaky endpoint")
    await emu.wait_for(lambda: emu.acks, timeout=3)

    assert all(valid for _, valid in requests)
    assert [h.get("X-Slack-Retry-Num") for h, _ in requests] == [None, "1", "2"]
    assert [h.get("X-Slack-Retry-Reason") for h, _ in requests] == [
        None,
        "http_error",
        "http_timeout",
    ]
    assert [a.status for a in emu.http_attempts] == [500, 0, 200]
