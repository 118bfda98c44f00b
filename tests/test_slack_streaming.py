"""Streaming into Slack: nothing lost under rate limits or size limits, nothing that pings."""

from __future__ import annotations

from pathlib import Path

from bot.testing import Reply, ScriptedOllama
from plugins.slack.formatting import unescape
from tests.slack_support import FOOTER, call, slack_bot, slack_workspace


def without_footer(text: str) -> str:
    match = FOOTER.search(text)
    assert match is not None, text[-200:]
    return text[: match.start()].rstrip("\n")


async def test_rate_limits_mid_stream_lose_nothing(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    answer = " ".join(f"word{i}" for i in range(400))
    scripted_ollama.script(Reply(content=answer, chunk_size=24, chunk_delay=0.02))
    async with slack_workspace() as emu, slack_bot(emu, scripted_ollama, tmp_path) as bot:
        root = await bot.mention("count")
        await emu.wait_for(lambda: bot.replies(root))
        emu.rate_limit("chat.update", times=3, retry_after=1)
        await bot.wait_finished(root, timeout=15)
    [reply] = bot.replies(root)
    assert emu.rate_limited_count["chat.update"] == 3
    assert [c.status for c in emu.calls_to("chat.update")].count(429) == 3
    assert without_footer(reply.text) == answer
    # Every version shown was a prefix of the answer: nothing reordered, nothing dropped.
    for edit in reply.edits:
        assert answer.startswith(edit.text.removesuffix(" ▍"))


async def test_ten_thousand_characters_arrive_complete_across_messages(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    lines = [f"Line {i:04d}: the quick brown fox jumps over the lazy dog." for i in range(200)]
    answer = "\n".join(lines)
    assert len(answer) > 10_000
    scripted_ollama.script(Reply(content=answer, chunk_size=250, chunk_delay=0.01))
    async with slack_workspace() as emu, slack_bot(emu, scripted_ollama, tmp_path) as bot:
        root = await bot.mention("print a lot")
        await bot.wait_finished(root)
    replies = bot.replies(root)
    assert len(replies) >= 3
    assert all(len(r.text) <= 4000 for r in replies)
    assert all(r.thread_ts == root for r in replies)
    assert without_footer("\n".join(r.text for r in replies)) == answer
    assert all(c.status == 200 for c in emu.calls if c.method.startswith("chat."))


async def test_escaping_growth_splits_smaller_instead_of_failing(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    answer = "\n".join(f"if (a{i} < b && c > d) return x{i} & y;" for i in range(160))
    scripted_ollama.script(Reply(content=answer, chunk_size=400, chunk_delay=0.01))
    async with slack_workspace() as emu, slack_bot(emu, scripted_ollama, tmp_path) as bot:
        root = await bot.mention("print code")
        await bot.wait_finished(root)
    replies = bot.replies(root)
    assert len(answer) < 7000 and len(replies) >= 3
    assert all(len(r.text) <= 4000 for r in replies)
    joined = "\n".join(r.text for r in replies)
    assert "<" not in without_footer(joined)
    assert unescape(without_footer(joined)) == answer
    assert not any(c.error == "msg_too_long" for c in emu.calls)


async def test_model_output_cannot_ping_anyone(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    scripted_ollama.script(
        Reply(
            content=(
                "Hey <!here> and <!channel>, ask <@U123> or <!subteam^S1|@devs>. "
                "A & B. [click](!everyone) or [docs](https://example.com/a?b=1&c=2)\n\n"
                "```html\n<p>hi <@U123></p>\n```"
            )
        )
    )
    async with slack_workspace() as emu, slack_bot(emu, scripted_ollama, tmp_path) as bot:
        root = await bot.mention("say something dangerous")
        await bot.wait_finished(root)
    [reply] = bot.replies(root)
    stored = reply.text
    for dangerous in ("<!here", "<!channel", "<@U123", "<!subteam", "<!everyone"):
        assert dangerous not in stored
    assert "&lt;!here&gt;" in stored and "&lt;@U123&gt;" in stored and "A &amp; B" in stored
    assert "<https://example.com/a?b=1&amp;c=2|docs>" in stored  # a real link stays a link
    assert "```\n&lt;p&gt;hi &lt;@U123&gt;&lt;/p&gt;\n```" in stored  # code block intact
    for edit in reply.edits:
        assert "<!" not in edit.text and "<@" not in edit.text


async def test_long_shell_output_is_attached_as_a_file(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    scripted_ollama.script(
        Reply(tool_calls=[call("bash", command="cat big.txt")]),
        Reply(content="That was a big file."),
    )
    async with slack_workspace() as emu, slack_bot(emu, scripted_ollama, tmp_path) as bot:
        content = "".join(f"row {i}: some output of a command\n" for i in range(150))
        (bot.workspace / "big.txt").write_text(content)
        root = await bot.mention("show big.txt")
        text = await bot.wait_finished(root)
    assert "`bash: cat big.txt` → exit 0" in text
    [upload] = emu.files.values()
    assert upload.content is not None and upload.content.decode() == content
    assert upload.thread_ts == root and upload.title == "bash: cat big.txt"
    assert any(r.files for r in bot.replies(root))
