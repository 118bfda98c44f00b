"""The context window: priorities, the size limit, compaction, and a 100-step loop."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from bot.config import ContextConfig
from bot.context import COMPACTION_PREFIX, SUMMARY_INSTRUCTIONS, ContextWindow, diff_stat
from bot.events import AgentEventKind
from bot.testing import Reply, ScriptedOllama
from bot.testing.harness import make_test_config, running_host
from bot.tokens import TokenCounter, estimate_message

SYSTEM = "You are a careful coding agent.\n\n# Project memory\n\nRun tests with pytest -q."
TASK = "Count the lines of every module, one at a time."


def step(n: int, size: int = 5_000) -> list[dict[str, Any]]:
    """One loop step: an assistant tool call and its (large) result."""
    return [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": f"c{n}", "function": {"name": "bash", "arguments": {"n": n}}}],
        },
        {
            "role": "tool",
            "tool_name": "bash",
            "tool_call_id": f"c{n}",
            "content": f"result {n}\n" + "y" * size,
            "_summary": f"bash(n={n}) → exit 0 (result {n})",
        },
    ]


def history_of(steps: int, steering_every: int = 0) -> list[dict[str, Any]]:
    history: list[dict[str, Any]] = [{"role": "user", "content": TASK}]
    for n in range(1, steps + 1):
        history += step(n)
        if steering_every and n % steering_every == 0:
            history.append({"role": "user", "content": f"[steering from bob] note {n}"})
    return history


def tokens(messages: list[dict[str, Any]]) -> int:
    return sum(estimate_message(m) for m in messages)


def test_priorities_without_a_limit() -> None:
    window = ContextWindow(ContextConfig(retain_tool_results=2))
    messages = window.build(SYSTEM, history_of(4))
    assert messages[0] == {"role": "system", "content": SYSTEM}
    assert messages[1]["content"] == TASK
    tools = [m for m in messages if m["role"] == "tool"]
    assert [t["content"].startswith("[older result, summarised]") for t in tools] == [
        True,
        True,
        False,
        False,
    ]
    assert all(not k.startswith("_") for m in messages for k in m)


def test_fit_keeps_pinned_parts_and_steering_under_the_window() -> None:
    window = ContextWindow(ContextConfig(retain_tool_results=5, num_ctx=8192))
    history = history_of(200, steering_every=20)
    built = window.fit(SYSTEM, history, num_ctx=8192)
    assert built.dropped > 0
    assert built.tokens <= 8192 - 1024
    contents = [str(m["content"]) for m in built.messages]
    assert contents[0] == SYSTEM and contents[1] == TASK
    for n in range(20, 201, 20):
        assert f"[steering from bob] note {n}" in contents
    assert any("earlier steps were left out" in c for c in contents)
    # The newest result is whole; every tool message still follows its call.
    assert contents[-2].startswith("result 200") and len(contents[-2]) > 5_000
    for i, message in enumerate(built.messages):
        if message["role"] == "tool":
            previous = built.messages[i - 1]
            assert previous["role"] in ("assistant", "tool"), (i, previous)


def test_leaving_out_has_hysteresis() -> None:
    """The cut moves in chunks, so the prompt's prefix is stable for several steps."""
    window = ContextWindow(ContextConfig(retain_tool_results=3))
    history = history_of(10)
    sizes, prefixes = [], []
    for n in range(11, 250):
        history += step(n)
        built = window.fit(SYSTEM, history, num_ctx=8192)
        sizes.append(built.tokens)
        prefixes.append(json.dumps(built.messages[:4]))
        assert built.tokens <= 8192 - 1024
    changes = sum(1 for a, b in itertools.pairwise(prefixes) if a != b)
    assert 0 < changes < len(prefixes) / 4, changes
    assert max(sizes[20:]) - min(sizes[20:]) < 8192 * 0.4  # bounded, not growing


def test_results_kept_whole_shrink_when_they_alone_overflow() -> None:
    window = ContextWindow(ContextConfig(retain_tool_results=5))
    built = window.fit(SYSTEM, history_of(12), num_ctx=4096)
    assert built.tokens <= 4096 - 1024
    tools = [m for m in built.messages if m["role"] == "tool"]
    assert tools[-1]["content"].startswith("result 12") and len(tools[-1]["content"]) > 5_000
    assert all(t["content"].startswith("[older result") for t in tools[:-1])


def test_pinned_task_larger_than_the_window_is_clipped_not_dropped() -> None:
    window = ContextWindow(ContextConfig())
    huge = "START " + "z" * 40_000 + " END"
    built = window.fit(SYSTEM, [{"role": "user", "content": huge}, *step(1)], num_ctx=4096)
    task = built.messages[1]["content"]
    assert task.startswith("START") and task.endswith("END") and "cut to fit" in task
    assert built.tokens <= 4096 - 1024


def test_diffs_and_old_write_arguments_compress() -> None:
    diff = (
        "diff --git a/bot/x.py b/bot/x.py\n--- a/bot/x.py\n+++ b/bot/x.py\n@@ -1,2 +1,3 @@\n"
        "-old\n+new\n+more\n"
    )
    assert diff_stat(diff) == "diff: 1 file, +2 -1 (bot/x.py +2 -1)"
    assert diff_stat("no diff here") is None
    big = "line\n" * 200
    history: list[dict[str, Any]] = [
        {"role": "user", "content": TASK},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"function": {"name": "write_file", "arguments": {"path": "a", "content": big}}}
            ],
        },
        {"role": "tool", "tool_name": "write_file", "content": "ok", "_summary": "wrote a"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "bash"}}]},
        {"role": "tool", "tool_name": "bash", "content": diff, "_summary": "bash(git diff)"},
        *step(3),
    ]
    messages = ContextWindow(ContextConfig(retain_tool_results=1)).build(SYSTEM, history)
    written = messages[2]["tool_calls"][0]["function"]["arguments"]["content"]
    assert written == "[201 lines, 1000 chars; compressed]"
    assert messages[5]["content"].endswith("diff: 1 file, +2 -1 (bot/x.py +2 -1)")
    off = ContextWindow(ContextConfig(retain_tool_results=1, compress_diffs=False))
    assert off.build(SYSTEM, history)[2]["tool_calls"][0]["function"]["arguments"]["content"] == big


async def test_prepare_compacts_into_one_message() -> None:
    window = ContextWindow(ContextConfig(retain_tool_results=3))
    history = history_of(60, steering_every=25)
    seen: list[list[dict[str, Any]]] = []

    async def summarise(messages: list[dict[str, Any]]) -> str:
        seen.append(messages)
        return f"ran bash {len(messages) // 2} times"

    built = await window.prepare(SYSTEM, history, num_ctx=6000, summarise=summarise)
    assert built.compaction is not None and len(seen) == 1
    assert all(m["role"] in ("assistant", "tool") for m in seen[0])
    contents = [str(m["content"]) for m in built.messages]
    assert contents[1] == TASK and contents[2].startswith(COMPACTION_PREFIX)
    assert "[steering from bob] note 25" in contents and "[steering from bob] note 50" in contents
    assert built.tokens <= 6000 - 1024
    # Persisted and reloaded, the compaction stands in for the steps it covers.
    history.append(built.compaction)
    again = ContextWindow(ContextConfig(retain_tool_results=3)).fit(SYSTEM, history, num_ctx=6000)
    assert [str(m["content"]) for m in again.messages][2].startswith(COMPACTION_PREFIX)
    assert again.tokens <= 6000 - 1024


def test_token_counter_learns_from_prompt_eval_count() -> None:
    counter = TokenCounter()
    for _ in range(20):
        counter.observe("m", 1000, 1500)
    assert 1.4 < counter.factor("m") <= 1.5
    counter.observe("m", 1000, 100)  # a KV-cache hit: ignored
    assert counter.factor("m") > 1.4
    assert counter.factor("other") == 1.0


# -- the 100-step loop --------------------------------------------------------

NUM_CTX = 12_288
STEPS = 100
# The scripted server's "tokenizer" counts 10% more than our estimate: the
# window must learn that from prompt_eval_count to stay inside num_ctx.
TOKENIZER_RATIO = 1.1


def server_count(body: dict[str, Any]) -> int:
    return int(
        TokenCounter().estimate(body["messages"], tools=body.get("tools") or []) * TOKENIZER_RATIO
    )


async def test_hundred_steps_with_5kb_results_stay_in_the_window(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "AGENTS.md").write_text("Project rule: keep answers short.\n")
    (workspace / "big.txt").write_text("".join(f"{i:04d} " + "x" * 94 + "\n" for i in range(50)))
    thread_key: list[Any] = []
    steering = {20: "prefer small diffs", 55: "also count blank lines", 90: "wrap up soon"}
    model_steps = 0
    summaries = 0

    async def answer(body: dict[str, Any]) -> Reply:
        nonlocal model_steps, summaries
        count = server_count(body)
        if body["messages"][0]["content"] == SUMMARY_INSTRUCTIONS:
            summaries += 1
            summary = f"Read big.txt repeatedly; summary #{summaries}."
            return Reply(content=summary, prompt_eval_count=count)
        model_steps += 1
        if model_steps in steering:
            await adapter.say(steering[model_steps], thread=thread_key[0], mention=False)
        if model_steps == STEPS:
            return Reply(content="FINAL: big.txt has 50 lines.", prompt_eval_count=count)
        read = {"name": "read_file", "arguments": {"path": "big.txt"}}
        return Reply(tool_calls=[read], prompt_eval_count=count)

    scripted_ollama.respond_with(answer)
    config = make_test_config(
        workspace,
        scripted_ollama.url,
        routing={"max_loop_iterations": STEPS + 5},
        context={"num_ctx": NUM_CTX},
    )
    async with running_host(config) as (_host, adapter):
        thread_key.append(adapter.thread("long"))
        await adapter.say(TASK, thread=thread_key[0])
        turn = await adapter.wait_turn(timeout=60)

    requests = [
        r
        for r in scripted_ollama.chat_requests
        if r["messages"][0]["content"] != SUMMARY_INSTRUCTIONS
    ]
    assert len(requests) == STEPS and summaries >= 1
    assert {r["options"]["num_ctx"] for r in scripted_ollama.chat_requests} == {NUM_CTX}
    applied: list[str] = []
    for request in scripted_ollama.chat_requests:
        assert server_count(request) <= NUM_CTX
    for request in requests:
        messages = request["messages"]
        assert messages[0]["role"] == "system" and "Project rule" in messages[0]["content"]
        assert messages[1] == {"role": "user", "content": TASK}
        contents = [str(m.get("content", "")) for m in messages]
        applied += [t for t in steering.values() if f"] {t}" in str(contents)]
        for text in set(applied):
            assert f"[steering from alice] {text}" in contents
    assert set(applied) == set(steering.values())
    assert turn.events[-1].data["reason"] == "completed"
    assert turn.events[-1].text == "FINAL: big.txt has 50 lines."
    notices = [e.text for e in turn.of(AgentEventKind.NOTICE)]
    assert sum("summarised the older steps" in n for n in notices) == 1
    # Flat after the window fills: the second half never outgrows the first.
    sizes = [len(json.dumps(r["messages"])) for r in requests]
    assert max(sizes[50:]) <= max(sizes[:50]) * 1.1


async def test_num_ctx_is_the_trained_length_capped_by_config(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    async with ScriptedOllama(context_length={"small:1b": 8192, "qwen3:4b": 40960}) as server:
        server.script(Reply(content="one"), Reply(content="two"), Reply(content="three"))
        config = make_test_config(workspace, server.url, context={"num_ctx": 16384})
        async with running_host(config) as (host, adapter):
            await adapter.say("a")
            await adapter.wait_turn()
            await adapter.say("b", thread=adapter.thread("t2"))
            await adapter.wait_turn()
            config.routing.local_model = "small:1b"
            await adapter.say("c", thread=adapter.thread("t3"))
            await adapter.wait_turn()
            assert host.runtime.num_ctx("small:1b") == 8192
        shows = [r for r in server.requests if r.path == "/api/show"]
    # The model's window is asked once per model, and the same num_ctx goes out every time.
    assert [r["options"]["num_ctx"] for r in server.chat_requests] == [16384, 16384, 8192]
    assert len(shows) == 2
