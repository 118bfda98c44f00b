"""Restarts on Slack: a SIGTERM-style shutdown mid-session, then a new bot process.

The thread is told, the session resumes at its last boundary, a steering
message sent while the bot was down is applied, and the answer completes.
"""

from __future__ import annotations

from pathlib import Path

from bot.restarts import RESTARTING_RESUME, RESUMING, resume_after_restart
from bot.testing import Reply, ScriptedOllama
from tests.slack_support import (
    CHANNEL,
    call,
    slack_bot,
    slack_workspace,
    stored_sessions,
    user_messages,
)


async def test_restart_mid_session_resumes_and_applies_downtime_steering(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    scripted_ollama.script(
        Reply(tool_calls=[call("bash", command="echo step-one")]),
        Reply(tool_calls=[call("bash", command="echo step-two")], delay=0.8),
    )
    async with slack_workspace(ack_timeout=0.5) as emu:
        async with slack_bot(
            emu, scripted_ollama, tmp_path, sessions={"shutdown_grace": 10}
        ) as bot:
            root = await bot.mention("refactor the parser")
            await scripted_ollama.wait_for_requests(2)
            # Leaving the context shuts the host down like SIGTERM: the running step
            # reaches its boundary, the session is paused and the thread is told.
        await emu.wait_for(
            lambda: any(RESTARTING_RESUME in m.text for m in emu.thread(CHANNEL, root))
        )
        (record,) = [r for r in await stored_sessions(tmp_path) if not r.meta.get("subagent")]
        assert record.status == "interrupted"

        # Typed while the bot is down: Slack holds the event until a client connects.
        await emu.user_posts(CHANNEL, "U1", "use the new tokenizer", thread_ts=root)

        scripted_ollama.respond_with(lambda body: Reply(content="Done with the new tokenizer."))
        async with slack_bot(emu, scripted_ollama, tmp_path) as bot:
            resumed = await resume_after_restart(bot.host.sessions)
            # Either the resume or the downtime message (delivered as the new process
            # connects) continues the session; never both, never a second copy.
            assert [s.id for s in resumed] in ([], [record.id])
            # The downtime message arrives when the new process connects: as steering
            # if the resumed turn is still running, else as the session's next message.
            await emu.wait_for(
                lambda: any(
                    "use the new tokenizer" in str(r) for r in scripted_ollama.chat_requests
                ),
                timeout=15,
            )
            await emu.wait_for(
                lambda: "Done with the new tokenizer." in bot.text(root) and not bot.running(),
                timeout=15,
            )
            text = bot.text(root)
        if resumed:
            assert RESUMING in "\n".join(m.text for m in emu.thread(CHANNEL, root))
        assert "Done with the new tokenizer." in text
    last = scripted_ollama.chat_requests[-1]
    assert user_messages(last)[0] == "refactor the parser"
    assert any(u.endswith("use the new tokenizer") for u in user_messages(last))
    assert (await stored_sessions(tmp_path))[0].status == "idle"
    tool_output = [m["content"] for m in last["messages"] if m["role"] == "tool"]
    assert any("step-one" in t for t in tool_output) and any("step-two" in t for t in tool_output)
