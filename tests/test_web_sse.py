"""The browser view's HTTP and SSE protocol, against a real host and the scripted model.

Every test talks HTTP to the web adapter over loopback with aiohttp's client,
so framing, ids, resume, heartbeats and the safety checks are exercised as a
browser would meet them.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot import hookimpl
from bot.events import AgentEventKind
from bot.testing import Reply, ScriptedOllama, tool_call
from bot.testing.harness import RecordingAdapter, make_test_config, running_host
from plugins.web.adapter import WebAdapter, WebStartError

POST_HEADERS = {"X-Threadwright": "1", "Content-Type": "application/json"}
EVENT_KINDS = {k.value for k in AgentEventKind} | {"turn", "reaction", "reset"}


call = tool_call  # the shared helper, under the short name these tests use


@dataclass
class Frame:
    fields: dict[str, str]
    comment: str | None = None

    @property
    def id(self) -> str | None:
        return self.fields.get("id")

    @property
    def event(self) -> str | None:
        return self.fields.get("event")

    @property
    def data(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.fields["data"])
        return parsed


async def frames(response: aiohttp.ClientResponse) -> AsyncIterator[Frame]:
    """Parse an SSE body as the WHATWG spec reads it (one field per line)."""
    fields: dict[str, str] = {}
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if fields:
                yield Frame(fields)
                fields = {}
            continue
        if line.startswith(":"):
            yield Frame({}, comment=line[1:].strip())
            continue
        name, _, value = line.partition(":")
        fields[name] = value[1:] if value.startswith(" ") else value


async def read_events(
    response: aiohttp.ClientResponse, *, until: str = "done", limit: int | None = None
) -> list[Frame]:
    events: list[Frame] = []
    async with asyncio.timeout(15):
        async for frame in frames(response):
            if frame.event is None:
                continue
            events.append(frame)
            if frame.event == until or (limit is not None and len(events) >= limit):
                break
    return events


def web_config(tmp_path: Path, url: str, **overrides: Any) -> Any:
    workspace = tmp_path / "ws"
    workspace.mkdir(exist_ok=True)
    web = {"port": 0, "heartbeat_interval": 5.0, **overrides.pop("web", {})}
    return make_test_config(workspace, url, web=web, **overrides)


@dataclass
class WebView:
    host: Any
    recorder: RecordingAdapter
    adapter: WebAdapter
    http: aiohttp.ClientSession

    @property
    def url(self) -> str:
        assert self.adapter.server is not None
        return f"http://127.0.0.1:{self.adapter.server.port}"

    async def post(self, path: str, body: dict[str, Any], **kw: Any) -> Any:
        headers = {**POST_HEADERS, **kw.pop("headers", {})}
        async with self.http.post(self.url + path, json=body, headers=headers, **kw) as r:
            return r.status, await r.json()

    async def start(self, task: str) -> str:
        status, body = await self.post("/api/sessions", {"task": task})
        assert status == 200, body
        return str(body["id"])

    def events(self, session_id: str, **kw: Any) -> Any:
        return self.http.get(f"{self.url}/api/sessions/{session_id}/events", **kw)

    async def wait_idle(self, session_id: str) -> Any:
        session = await self.host.sessions.load_session(session_id)
        assert session is not None
        return await session.wait()


class AskBeforeRm:
    """A policy plugin: ``rm`` needs a person's approval (deterministic, whatever the
    built-in shell policy decides)."""

    __name__ = "test_ask_before_rm"

    @hookimpl
    def before_tool_call(self, call: Any, session: Any) -> Any:
        if call.name == "bash" and str(call.arguments.get("command", "")).startswith("rm "):
            return ("ask", "rm deletes files")
        return None


@asynccontextmanager
async def web_view(
    config: Any, *, token: str | None = None, extra_plugins: tuple[object, ...] = ()
) -> AsyncIterator[WebView]:
    async with running_host(config, extra_plugins=extra_plugins) as (host, recorder):
        adapter = host.create_adapter("web")
        assert isinstance(adapter, WebAdapter)
        await adapter.start(host.sessions)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            async with aiohttp.ClientSession(headers=headers) as http:
                yield WebView(host, recorder, adapter, http)
        finally:
            await host.sessions.drain(5.0)
            await adapter.stop()


# --- framing, ids, resume ------------------------------------------------------------------


async def test_events_are_framed_with_ids_and_one_type_per_kind(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    scripted_ollama.script(
        Reply(content="Let me look.", tool_calls=[call("bash", command="echo hi-from-bash")]),
        Reply(content="All done here."),
    )
    async with web_view(web_config(tmp_path, scripted_ollama.url)) as view:
        session_id = await view.start("say hi")
        async with view.events(session_id) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/event-stream")
            assert response.headers["Cache-Control"].startswith("no-cache")
            events = await read_events(response)
    numbers = []
    for frame in events:
        assert frame.id is not None and frame.event in EVENT_KINDS
        epoch, _, n = frame.id.rpartition("-")
        assert epoch
        numbers.append(int(n))
        assert frame.data["kind"] == frame.event
        assert frame.data["session_id"] == session_id
    assert numbers == list(range(1, len(numbers) + 1))
    kinds = [f.event for f in events]
    # The task is acknowledged ("working"), then the turn opens with it.
    assert kinds[:2] == ["reaction", "turn"]
    assert events[0].data["data"]["meaning"] == "working"
    assert events[1].data["text"] == "say hi"
    assert kinds.index("step") < kinds.index("token")
    tokens = "".join(f.data["text"] for f in events if f.event == "token")
    assert tokens == "Let me look.All done here."
    tool_call = next(f for f in events if f.event == "tool_call").data
    assert tool_call["data"]["name"] == "bash"
    result = next(f for f in events if f.event == "tool_result").data
    assert result["data"]["result"]["ok"] and "hi-from-bash" in result["data"]["result"]["stdout"]
    step = next(f for f in events if f.event == "step").data["data"]
    assert step["model"] == "qwen3:4b" and "route" in step
    assert events[-1].data["data"]["reason"] == "completed"


async def test_resume_with_last_event_id_has_no_gaps_or_duplicates(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    content = "".join(f"w{i} " for i in range(120))
    scripted_ollama.script(Reply(content=content, chunk_size=4, chunk_delay=0.004))
    async with web_view(web_config(tmp_path, scripted_ollama.url)) as view:
        session_id = await view.start("stream a lot")
        # Read a little, drop the connection mid-stream, resume from the last id seen.
        async with view.events(session_id) as response:
            first = await read_events(response, limit=12)
        assert first[-1].event != "done"
        last_id = first[-1].id
        async with view.events(session_id, headers={"Last-Event-ID": str(last_id)}) as response:
            rest = await read_events(response)
        # A fresh reader after the end sees the whole log: the reference.
        async with view.events(session_id) as response:
            everything = await read_events(response)
        # Resuming from the middle of a finished session sends exactly the tail.
        middle = everything[len(everything) // 2].id
        async with view.events(session_id, headers={"Last-Event-ID": str(middle)}) as response:
            tail = await read_events(response)
        # An id from another process (a restart) starts the client over.
        async with view.events(session_id, headers={"Last-Event-ID": "0ther-3"}) as response:
            restarted = await read_events(response, limit=2)
    ids = [f.id for f in first + rest]
    assert ids == [f.id for f in everything]
    assert len(set(ids)) == len(ids)
    assert "".join(f.data["text"] for f in first + rest if f.event == "token") == content
    assert [f.id for f in tail] == [f.id for f in everything[len(everything) // 2 + 1 :]]
    assert restarted[0].event == "reset"
    assert restarted[1].id == everything[0].id


async def test_heartbeats_keep_an_idle_stream_alive(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    scripted_ollama.script(Reply(content="short"))
    config = web_config(tmp_path, scripted_ollama.url, web={"heartbeat_interval": 0.1})
    async with web_view(config) as view:
        session_id = await view.start("quick one")
        await view.wait_idle(session_id)
        comments = 0
        started = time.monotonic()
        async with view.events(session_id) as response:
            async with asyncio.timeout(5):
                async for frame in frames(response):
                    if frame.comment is not None:
                        comments += 1
                        if comments == 3:
                            break
        elapsed = time.monotonic() - started
    assert comments == 3
    assert 0.25 <= elapsed < 2.0


# --- slow and gone clients ---------------------------------------------------------------


async def _stalled_reader(port: int, session_id: str) -> socket.socket:
    """A client that asks for the stream and then never reads (tiny receive buffer)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    request = (
        f"GET /api/sessions/{session_id}/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Accept: text/event-stream\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    return sock


async def test_a_client_that_stops_reading_does_not_slow_the_session(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    # Varied text: a tail that repeats itself would be stopped as a runaway.
    content = "".join(f"t{i} " for i in range(1500))
    scripted_ollama.script(
        Reply(content=content, chunk_size=3, delay=0.2),
        Reply(content=content, chunk_size=3, delay=0.2),
    )
    config = web_config(
        tmp_path, scripted_ollama.url, streaming={"buffer_size": 64, "disconnect_timeout": 3}
    )
    async with web_view(config) as view:
        alone = await view.start("no readers")
        baseline = (await view.wait_idle(alone)).stats.duration_s

        assert view.adapter.server is not None
        watched = await view.start("one stalled reader")
        stalled = await _stalled_reader(view.adapter.server.port, watched)
        try:
            outcome = await view.wait_idle(watched)
            # The stalled reader fell behind by more than its buffer and was cut off.
            async with asyncio.timeout(5):
                while view.adapter.hub.client_count():  # noqa: ASYNC110 - nothing to await
                    await asyncio.sleep(0.02)
        finally:
            stalled.close()
    assert outcome.ok
    assert outcome.stats.duration_s <= baseline * 1.5 + 0.3, (baseline, outcome.stats.duration_s)


async def test_a_gone_client_is_noticed_within_the_disconnect_timeout(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    scripted_ollama.script(Reply(content="done"))
    config = web_config(
        tmp_path,
        scripted_ollama.url,
        streaming={"disconnect_timeout": 0.6},
        web={"heartbeat_interval": 60},
    )
    async with web_view(config) as view:
        session_id = await view.start("anything")
        await view.wait_idle(session_id)
        async with view.events(session_id) as response:
            await read_events(response)
            assert view.adapter.hub.client_count() == 1
        gone_at = time.monotonic()
        async with asyncio.timeout(3):
            while view.adapter.hub.client_count():  # noqa: ASYNC110 - nothing to await
                await asyncio.sleep(0.02)
    assert time.monotonic() - gone_at <= 0.6 + 0.3


# --- driving a web session ------------------------------------------------------------------


async def test_steer_and_stop_through_the_api(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    scripted_ollama.script(
        Reply(tool_calls=[call("bash", command="echo one")], delay=0.5),
        Reply(content="thinking about argparse", hang=True),
    )
    async with web_view(web_config(tmp_path, scripted_ollama.url)) as view:
        session_id = await view.start("add a flag")
        await scripted_ollama.wait_for_requests(1)
        status, steered = await view.post(
            f"/api/sessions/{session_id}/steer", {"text": "use argparse"}
        )
        assert status == 200 and steered["as"] == "steering"
        await scripted_ollama.wait_for_requests(2)
        status, stopped = await view.post(f"/api/sessions/{session_id}/stop", {})
        assert status == 200 and stopped["stopping"] is True
        outcome = await view.wait_idle(session_id)
        async with view.events(session_id) as response:
            events = await read_events(response)
    second = scripted_ollama.chat_requests[1]["messages"]
    users = [m["content"] for m in second if m["role"] == "user"]
    assert "use argparse" in users[-1]
    assert outcome.reason.value == "cancelled"
    kinds = [f.event for f in events]
    reactions = [f.data["data"] for f in events if f.event == "reaction"]
    assert [r["meaning"] for r in reactions] == ["working", "queued", "applied"]
    assert reactions[1] == {
        "message_id": steered["message_id"],
        "meaning": "queued",
        "typed": "use argparse",
    }
    assert "steering" in kinds
    assert events[-1].data["data"]["reason"] == "cancelled"


async def test_approval_buttons_answer_through_the_api(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "junk.txt").write_text("x")
    scripted_ollama.script(
        Reply(tool_calls=[call("bash", command="rm junk.txt")]),
        Reply(content="removed"),
    )
    config = web_config(tmp_path, scripted_ollama.url)
    async with web_view(config, extra_plugins=(AskBeforeRm(),)) as view:
        session_id = await view.start("clean up")
        async with view.events(session_id) as response:
            asked = await read_events(response, until="approval")
            question = asked[-1].data["data"]
            assert question["state"] == "pending" and question["tool"] == "bash"
            status, body = await view.post(
                f"/api/sessions/{session_id}/approval",
                {"message_id": question["message_id"], "choice": "approve_once"},
            )
            assert status == 200 and body == {"accepted": True}
            events = await read_events(response)
        status, _ = await view.post(
            f"/api/sessions/{session_id}/approval",
            {"message_id": question["message_id"], "choice": "deny"},
        )
    assert status == 409
    assert not (workspace / "junk.txt").exists()
    answered = next(f for f in events if f.event == "approval").data["data"]
    assert answered["state"] == "allowed"
    result = next(f for f in events if f.event == "tool_result").data["data"]["result"]
    assert result["ok"]


async def test_sessions_of_other_platforms_are_watchable_read_only(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    scripted_ollama.script(Reply(content="seen from the browser", delay=0.3))
    async with web_view(web_config(tmp_path, scripted_ollama.url)) as view:
        await view.recorder.say("a task from chat")
        await scripted_ollama.wait_for_requests(1)
        async with view.http.get(view.url + "/api/sessions") as response:
            listed = (await response.json())["sessions"]
        entry = next(s for s in listed if s["platform"] == "test")
        assert entry["read_only"] is True and entry["running"] is True
        async with view.events(entry["id"]) as response:
            events = await read_events(response)
        status, refused = await view.post(f"/api/sessions/{entry['id']}/steer", {"text": "hi"})
        stop_status, _ = await view.post(f"/api/sessions/{entry['id']}/stop", {})
        await view.recorder.wait_turn()
    assert "".join(f.data["text"] for f in events if f.event == "token") == (
        "seen from the browser"
    )
    assert status == 403 and "read-only" in refused["error"]
    assert stop_status == 403


async def test_secrets_never_reach_an_event(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    secret = "hunter2-very-secret-value"
    slack_token = "xoxb-1234567890-abcdef"
    # Small chunks: the model writes each secret across several tokens.
    scripted_ollama.script(
        Reply(
            content=f"the key is {secret}, ok",
            tool_calls=[call("bash", command=f"echo {secret}")],
            chunk_size=3,
        ),
        Reply(content=f"printed {secret} and {slack_token}", chunk_size=4),
    )
    config = web_config(tmp_path, scripted_ollama.url)
    config.secrets.extra = {"DEPLOY_KEY": secret}
    async with web_view(config) as view:
        session_id = await view.start(f"use {secret}")
        async with view.events(session_id) as response:
            events = await read_events(response)
    shown = "".join(f.data["text"] for f in events if f.event == "token")
    assert shown == "the key is [REDACTED], okprinted [REDACTED] and [REDACTED]"
    everything = json.dumps([f.data for f in events])
    for fragment in ("hunter2", "very-secret", "secret-value", "1234567890"):
        assert fragment not in everything
    assert next(f for f in events if f.event == "turn").data["text"] == "use [REDACTED]"
    result = next(f for f in events if f.event == "tool_result").data["data"]["result"]
    assert "[REDACTED]" in result["stdout"]


def test_stream_redaction_holds_back_only_what_may_be_a_secret() -> None:
    from bot.policy.redaction import Redactor
    from plugins.web.redact_stream import StreamRedactor

    secret = "hunter2-very-secret-value"
    stream = StreamRedactor(Redactor([secret]), [secret])
    assert stream.feed("Hello there, ") == "Hello there, "  # prose passes at once
    assert stream.feed("the key is hun") == "the key is "
    assert stream.feed("ter2-very-sec") == ""
    assert stream.feed("ret-value.") == "[REDACTED]."
    assert stream.feed("token xox") == "token "
    assert stream.feed("b-99999999999") == ""
    assert stream.feed(" end") == "[REDACTED] end"
    assert stream.feed("hunt") == ""
    assert stream.flush() == "hunt"  # the stream moved on: it was not a secret


# --- safety -------------------------------------------------------------------------------


async def test_binding_off_loopback_requires_the_token(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    config = web_config(tmp_path, scripted_ollama.url, web={"host": "0.0.0.0"})
    with pytest.raises(WebStartError, match="THREADWRIGHT_WEB_TOKEN"):
        async with web_view(config):
            pass

    token = "a-long-random-web-token-1234"
    config.secrets.web_token = token
    scripted_ollama.script(Reply(content="hello"))
    # unsafe: aiohttp's jar keeps cookies from IP-address hosts only when asked to.
    jar = aiohttp.CookieJar(unsafe=True)
    async with (
        web_view(config, token=token) as view,
        aiohttp.ClientSession(cookie_jar=jar) as anonymous,
    ):
        async with anonymous.get(view.url + "/api/sessions") as response:
            assert response.status == 401
        async with anonymous.get(view.url + "/") as response:
            assert response.status == 200  # the page holds nothing; it asks for the token
        async with anonymous.post(
            view.url + "/api/sessions", json={"task": "x"}, headers=POST_HEADERS
        ) as response:
            assert response.status == 401
        async with anonymous.post(
            view.url + "/api/login", json={"token": "wrong"}, headers=POST_HEADERS
        ) as response:
            assert response.status == 401
        async with anonymous.post(
            view.url + "/api/login", json={"token": token}, headers=POST_HEADERS
        ) as response:
            assert response.status == 200
            cookie = response.cookies["threadwright_auth"]
            assert cookie["httponly"] and cookie["samesite"] == "Strict"
            assert token not in cookie.value
        async with anonymous.get(view.url + "/api/sessions") as response:
            assert response.status == 200  # the cookie now does
        session_id = await view.start("hello")  # bearer token
        async with view.events(session_id) as response:
            events = await read_events(response)
    assert events[-1].event == "done"


async def test_posts_are_csrf_safe_and_host_is_checked(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    async with web_view(web_config(tmp_path, scripted_ollama.url)) as view:
        path = view.url + "/api/sessions"
        body = json.dumps({"task": "rm -rf /"})
        cases = [
            {"Content-Type": "application/json"},  # no custom header
            {"X-Threadwright": "1", "Content-Type": "text/plain"},  # a "simple" request
            {**POST_HEADERS, "Origin": "http://evil.example"},
        ]
        for headers in cases:
            async with view.http.post(path, data=body, headers=headers) as response:
                assert response.status == 403, headers
        # DNS rebinding: the right address under someone else's name.
        async with view.http.get(path, headers={"Host": "evil.example:7777"}) as response:
            assert response.status == 403
        async with view.http.get(view.url + "/") as response:
            page = await response.text()
            csp = response.headers["Content-Security-Policy"]
            assert response.headers["X-Frame-Options"] == "DENY"
        async with view.http.post(
            path,
            data=body,
            headers={**POST_HEADERS, "Origin": view.url.replace("127.0.0.1", "localhost")},
        ) as response:
            assert response.status == 403
    assert scripted_ollama.chat_requests == []
    assert "frame-ancestors 'none'" in csp and "'sha256-" in csp
    assert "EventSource" in page


# --- the log's bounds ------------------------------------------------------------------------


def test_a_resume_past_the_kept_history_starts_over_with_a_reset() -> None:
    from plugins.web.sse import EventHub, StreamClient

    hub = EventHub(history_events=5, max_logs=2)
    log = hub.log_for("s1")
    for i in range(12):
        log.append("token", {"text": str(i)})
    kept = [e.n for e in log.entries]
    assert kept == [8, 9, 10, 11, 12] and log.size == sum(len(e.frame) for e in log.entries)
    # Event 3 was dropped: the client cannot continue from it without a gap.
    backlog, reset = log.attach(StreamClient(8), f"{log.epoch}-3")
    assert reset and [e.n for e in backlog] == kept
    assert log.reset_frame().startswith(f"id: {log.epoch}-7\nevent: reset\n".encode())
    backlog, reset = log.attach(StreamClient(8), f"{log.epoch}-9")
    assert not reset and [e.n for e in backlog] == [10, 11, 12]
    # Idle logs beyond the budget go, least recently used first; watched ones stay.
    hub.log_for("s2")
    hub.log_for("s3")
    assert list(hub.logs) == ["s1", "s3"]
