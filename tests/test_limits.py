"""Limits of a step's stream and of a run, through the real loop against the scripted server.

A model that keeps streaming, a server that cuts the answer itself, and runs
that use up their steps, tokens or time must each end the run early, as
something other than ``completed``, with the setting to raise named in the
thread and in the footer.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from bot.config import ConfigError, load_config
from bot.events import AgentEventKind
from bot.models.stream_limits import RepetitionDetector
from bot.testing import Reply, ScriptedOllama, tool_call
from bot.testing.harness import RecordedTurn, make_test_config, running_host

RUNAWAY_LINE = "I will now read the file again.\n"
PROTOCOLS = ["ollama", "openai"]


def config_for(tmp_path: Path, server: ScriptedOllama, kind: str = "ollama", **limits: Any) -> Any:
    workspace = tmp_path / "ws"
    workspace.mkdir(exist_ok=True)
    routing: dict[str, Any] = {}
    if kind == "openai":
        routing["models"] = {"qwen3:4b": {"kind": "openai", "host": server.url}}
    return make_test_config(workspace, server.url, limits=limits, routing=routing)


async def run_task(config: Any, text: str = "fix the bug", within: float = 15.0) -> RecordedTurn:
    async with running_host(config) as (_host, adapter):
        await adapter.say(text)
        return await adapter.wait_turn(within)


def done(turn: RecordedTurn) -> Any:
    assert turn.events[-1].kind is AgentEventKind.DONE
    return turn.events[-1]


def notices(turn: RecordedTurn) -> list[str]:
    return [e.text for e in turn.of(AgentEventKind.NOTICE)]


def output_cap(request: dict[str, Any], kind: str) -> Any:
    return request["options"]["num_predict"] if kind == "ollama" else request["max_tokens"]


async def abandoned(server: ScriptedOllama, within: float = 3.0) -> list[int]:
    """The server's record of streams the client closed (it lands a moment after)."""
    async with asyncio.timeout(within):
        while not server.abandoned_streams:  # noqa: ASYNC110 - the server has no event for it
            await asyncio.sleep(0.02)
    return server.abandoned_streams


# --- one step's stream -------------------------------------------------------------------


@pytest.mark.parametrize("kind", PROTOCOLS)
async def test_an_endless_stream_is_cut_at_the_token_cap(
    kind: str, scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    # A server that ignores the cap and never stops, one token per frame.
    scripted_ollama.script(
        Reply(content="Looking. ", runaway="tok ", chunk_size=4, ignore_max_tokens=True)
    )
    config = config_for(tmp_path, scripted_ollama, kind, max_step_tokens=60)
    started = time.monotonic()
    turn = await run_task(config)
    assert time.monotonic() - started < 10
    end = done(turn)
    assert end.data["reason"] == "truncated"
    assert end.data["stopped_by"] == "limits.max_step_tokens"
    assert "⚠ answer cut by limits.max_step_tokens" in end.data["footer"]
    assert any(
        "Stopped: the model's answer passed 60 tokens (limits.max_step_tokens)" in n
        and "incomplete" in n
        for n in notices(turn)
    )
    # What arrived is kept (in the reply and as the answer), and no more than the cap.
    tokens = turn.of(AgentEventKind.TOKEN)
    assert 60 <= len(tokens) <= 62 and turn.text.startswith("Looking. tok tok")
    assert end.text == turn.text
    assert output_cap(scripted_ollama.chat_requests[0], kind) == 60
    # The client hung up on the server: the HTTP response was closed, not drained.
    assert (await abandoned(scripted_ollama))[0] >= 61
    assert end.data["stats"]["completion_tokens"] >= 60


@pytest.mark.parametrize("kind", PROTOCOLS)
async def test_a_steady_stream_is_cut_at_the_wall_clock_limit(
    kind: str, scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    scripted_ollama.script(
        Reply(runaway="still going ", chunk_size=6, chunk_delay=0.01, ignore_max_tokens=True)
    )
    config = config_for(tmp_path, scripted_ollama, kind, max_step_seconds=0.6)
    started = time.monotonic()
    turn = await run_task(config)
    elapsed = time.monotonic() - started
    end = done(turn)
    assert end.data["reason"] == "truncated"
    assert end.data["stopped_by"] == "limits.max_step_seconds"
    assert any("ran past 0.6 s (limits.max_step_seconds)" in n for n in notices(turn))
    assert 0.6 <= elapsed < 5
    assert len(turn.of(AgentEventKind.TOKEN)) > 10  # it was streaming all along
    await abandoned(scripted_ollama)


async def test_a_silent_server_is_cut_at_the_wall_clock_limit_not_the_read_timeout(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    scripted_ollama.script(Reply(content="first piece, then nothing", chunk_size=100, hang=True))
    config = config_for(tmp_path, scripted_ollama, max_step_seconds=0.5)  # read timeout: 30 s
    started = time.monotonic()
    turn = await run_task(config)
    assert time.monotonic() - started < 5
    assert done(turn).data["stopped_by"] == "limits.max_step_seconds"
    assert turn.text == "first piece, then nothing"


@pytest.mark.parametrize("kind", PROTOCOLS)
async def test_a_server_honouring_the_cap_ends_with_length_and_that_is_truncated(
    kind: str, scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    scripted_ollama.script(Reply(runaway="na ", chunk_size=3))  # stops at num_predict itself
    config = config_for(tmp_path, scripted_ollama, kind, max_step_tokens=25)
    turn = await run_task(config)
    end = done(turn)
    assert end.data["reason"] == "truncated"
    assert end.data["stopped_by"] == "limits.max_step_tokens"
    assert len(turn.of(AgentEventKind.TOKEN)) == 25
    assert scripted_ollama.abandoned_streams == []  # the server ended it, not the client
    assert end.data["stats"]["completion_tokens"] == 25


@pytest.mark.parametrize("kind", PROTOCOLS)
async def test_done_reason_length_below_the_cap_is_a_full_context(
    kind: str, scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    scripted_ollama.script(
        Reply(
            content="Writing the file now",
            tool_calls=[tool_call("write_file", path="half.py", content="x = 1\n")],
            done_reason="length",
            eval_count=12,
        ),
        Reply(content="continuing from where I was cut"),
    )
    config = config_for(tmp_path, scripted_ollama, kind)
    async with running_host(config) as (_host, adapter):
        thread = adapter.thread("cut")
        await adapter.say("write half.py", thread=thread)
        turn = await adapter.wait_turn()
        end = done(turn)
        assert end.data["reason"] == "truncated"
        assert end.data["stopped_by"] == "context.num_ctx"
        told = " ".join(notices(turn))
        assert "the server cut the model's answer at its length limit" in told
        assert "context.num_ctx = 16,384" in told
        # The call of a cut answer is not run, and the thread says so.
        assert "Its 1 tool call did not run." in told
        assert not (workspace / "half.py").exists()
        assert turn.of(AgentEventKind.TOOL_CALL) == []
        # A reply continues from the partial answer, with a history the server accepts.
        await adapter.say("go on", thread=thread, mention=False)
        follow = await adapter.wait_turn()
    assert done(follow).data["reason"] == "completed"
    assistant = [
        m for m in scripted_ollama.chat_requests[1]["messages"] if m["role"] == "assistant"
    ]
    assert assistant[-1]["content"] == "Writing the file now"
    assert not assistant[-1].get("tool_calls")


async def test_a_repeating_stream_stops_early_as_a_runaway(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    scripted_ollama.script(
        Reply(content="Plan:\n", runaway=RUNAWAY_LINE, chunk_size=4, ignore_max_tokens=True)
    )
    config = config_for(
        tmp_path, scripted_ollama, max_step_tokens=100_000, max_repeated_chars=1_000
    )
    turn = await run_task(config)
    end = done(turn)
    assert end.data["reason"] == "truncated"
    assert end.data["stopped_by"] == "limits.max_repeated_chars"
    assert any("kept repeating the same text" in n for n in notices(turn))
    # Stopped soon after the repetition passed the threshold, not at the token cap.
    assert 1_000 <= len(turn.text) < 1_000 + 2 * 256 + len(RUNAWAY_LINE)


def test_repetition_detector_is_conservative() -> None:
    def first_trip(text: str, min_chars: int = 1_000) -> int | None:
        detector = RepetitionDetector(min_chars)
        for start in range(0, len(text), 5):
            if detector.feed(text[start : start + 5]):
                return start + 5
        return None

    assert first_trip(RUNAWAY_LINE * 100) is not None
    assert first_trip("=" * 3_000) is not None  # a one-character unit
    paragraph = "".join(f"word{i} " for i in range(60))  # a 400-character unit
    assert first_trip(paragraph * 12) is not None
    # Long but varied text, repetition shorter than the threshold, few long repeats.
    assert first_trip("".join(f"line {i}: the same words\n" for i in range(400))) is None
    assert first_trip(RUNAWAY_LINE * 25 + "and then something else entirely.") is None
    assert first_trip(paragraph * 6) is None


async def test_the_shipped_limits_leave_a_normal_answer_alone(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    scripted_ollama.script(Reply(content="".join(f"step {i} done. " for i in range(500))))
    config = config_for(tmp_path, scripted_ollama)
    turn = await run_task(config)
    assert done(turn).data["reason"] == "completed"
    assert done(turn).data["stopped_by"] is None
    assert output_cap(scripted_ollama.chat_requests[0], "ollama") == 4096


# --- the run's caps ----------------------------------------------------------------------


def _looping(server: ScriptedOllama, **reply: Any) -> None:
    again = Reply(tool_calls=[tool_call("glob", pattern="*.py")], **reply)
    server.respond_with(lambda body: again)


async def test_the_step_cap_names_its_setting(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    _looping(scripted_ollama)
    config = config_for(tmp_path, scripted_ollama)
    config.routing.max_loop_iterations = 2
    turn = await run_task(config)
    end = done(turn)
    assert end.data["reason"] == "max_iterations"
    assert end.data["stopped_by"] == "routing.max_loop_iterations"
    assert "⚠ run stopped by routing.max_loop_iterations" in end.data["footer"]
    assert len(scripted_ollama.chat_requests) == 2


async def test_the_run_token_cap_ends_the_run(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    _looping(scripted_ollama, prompt_eval_count=400, eval_count=100)
    config = config_for(tmp_path, scripted_ollama, max_run_tokens=1_200)
    turn = await run_task(config)
    end = done(turn)
    assert end.data["reason"] == "limit_reached"
    assert end.data["stopped_by"] == "limits.max_run_tokens"
    assert "⚠ run stopped by limits.max_run_tokens" in end.data["footer"]
    assert any(
        "this run used 1,500 tokens, and the limit is limits.max_run_tokens = 1,200" in n
        for n in notices(turn)
    )
    assert len(scripted_ollama.chat_requests) == 3


async def test_the_run_time_cap_ends_the_run_between_steps(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    _looping(scripted_ollama, delay=0.25)
    config = config_for(tmp_path, scripted_ollama, max_run_seconds=0.6)
    started = time.monotonic()
    turn = await run_task(config)
    assert time.monotonic() - started < 5
    end = done(turn)
    assert end.data["reason"] == "limit_reached"
    assert end.data["stopped_by"] == "limits.max_run_seconds"
    assert any("limits.max_run_seconds = 0.6 s" in n for n in notices(turn))
    assert 2 <= len(scripted_ollama.chat_requests) <= 4


async def test_the_run_time_cap_cuts_the_stream_in_flight(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    scripted_ollama.script(Reply(runaway="more ", chunk_size=5, chunk_delay=0.01))
    config = config_for(tmp_path, scripted_ollama, max_run_seconds=0.5, max_step_seconds=60)
    started = time.monotonic()
    turn = await run_task(config)
    assert time.monotonic() - started < 5
    end = done(turn)
    assert end.data["reason"] == "limit_reached"
    assert end.data["stopped_by"] == "limits.max_run_seconds"


# --- configuration -----------------------------------------------------------------------


def test_limits_configuration(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    defaults = load_config(empty, env={}).limits
    assert defaults.max_step_tokens == 4096 and defaults.max_step_seconds == 300
    assert defaults.max_run_tokens == 2_000_000 and defaults.max_run_seconds == 7200
    path = tmp_path / "agent_config.yaml"
    path.write_text("limits:\n  max_step_token: 100\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert "limits.max_step_token: unknown key" in str(err.value)
    path.write_text("limits:\n  max_step_tokens: null\n  max_run_seconds: 60\n")
    loaded = load_config(path, env={"THREADWRIGHT__LIMITS__MAX_REPEATED_CHARS": "0"}).limits
    assert loaded.max_step_tokens is None and loaded.max_run_seconds == 60
    assert loaded.max_repeated_chars == 0
