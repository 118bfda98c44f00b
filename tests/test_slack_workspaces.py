"""A Slack thread's own worktree: the footer names the branch, a long /diff comes as a snippet."""

from __future__ import annotations

import subprocess
from pathlib import Path

from bot.testing import Reply, ScriptedOllama
from tests.slack_support import CHANNEL, call, slack_bot, slack_workspace


def init_repository(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    for args in (
        ["init", "-q", "-b", "main"],
        [
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "init",
        ],
    ):
        subprocess.run(["git", *args], cwd=path, check=True, capture_output=True)


async def test_thread_branch_in_footer_and_long_diff_as_a_file(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    init_repository(tmp_path / "ws")
    table = "".join(f"row {i}: {'x' * 40}\n" for i in range(200))
    scripted_ollama.script(
        Reply(tool_calls=[call("write_file", path="table.txt", content=table)]),
        Reply(content="Wrote the table."),
    )
    async with slack_workspace() as emu, slack_bot(emu, scripted_ollama, tmp_path) as bot:
        root = await bot.mention("write the table")
        # The footer names the thread's branch and the commit of the finished run.
        await emu.wait_for(
            lambda: (
                "· branch threadwright/write-the-table-" in bot.text(root)
                and "· commit " in bot.text(root)
            )
        )
        await bot.say("/diff", thread_ts=root)
        await emu.wait_for(lambda: any(f.thread_ts == root for f in emu.files.values()))
    (snippet,) = [f for f in emu.files.values() if f.thread_ts == root]
    assert snippet.channel == CHANNEL and snippet.name.endswith(".diff")
    assert snippet.content is not None and b"+row 199:" in snippet.content
    # The main worktree is untouched: the work lives on the thread's branch.
    assert not (tmp_path / "ws" / "table.txt").exists()
