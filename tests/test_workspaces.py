"""Per-thread worktrees end to end: real git repositories, scripted model, real tools."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from bot.events import AgentEventKind, ThreadKey
from bot.testing import Reply, ScriptedOllama, tool_call
from bot.testing.harness import RecordedTurn, RecordingAdapter, make_test_config, running_host
from bot.tools.base import ToolError
from bot.tools.workspace import resolve_in_workspace
from bot.workspaces import SessionWorkspaces, WorktreeManager, branch_name
from bot.workspaces.cli import run as run_workspaces_cli
from bot.workspaces.sessions import DIFF_INLINE_CHARS

AUTHOR = {"author_name": "Thread Bot", "author_email": "bot@example.test"}


def git(cwd: Path, *args: str) -> str:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(cwd),
        "GIT_CONFIG_NOSYSTEM": "1",
        "LANG": "C.UTF-8",
    }
    done = subprocess.run(
        ["git", "-c", "user.name=Tester", "-c", "user.email=t@example.test", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def make_repo(tmp_path: Path, name: str = "repo") -> Path:
    repo = tmp_path / name
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("hello\n")
    git(repo, "add", "README.md")
    git(repo, "commit", "-q", "-m", "initial")
    return repo


call = tool_call  # the shared helper, under the short name these tests use


def first_user_text(body: dict[str, Any]) -> str:
    return next(m["content"] for m in body["messages"] if m["role"] == "user")


def tool_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in body["messages"] if m["role"] == "tool"]


def done_of(turn: RecordedTurn) -> Any:
    done = turn.of(AgentEventKind.DONE)
    assert len(done) == 1, turn.kinds()
    return done[0]


def footer_value(turn: RecordedTurn, prefix: str) -> str:
    items = [str(i) for i in done_of(turn).data["footer"] if str(i).startswith(prefix)]
    assert items, done_of(turn).data["footer"]
    return items[0].removeprefix(prefix)


def config_for(
    repo: Path, url: str, routing: dict[str, Any] | None = None, **workspace: Any
) -> Any:
    # make_test_config's first parameter is named ``workspace``: set the section afterwards.
    config = make_test_config(repo, url, **({"routing": routing} if routing else {}))
    for key, value in {**AUTHOR, **workspace}.items():
        setattr(config.workspace, key, value)
    return config


async def test_two_threads_in_parallel_get_their_own_branches(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path)
    main_head = git(repo, "rev-parse", "HEAD")
    both_started = asyncio.Event()
    started: set[str] = set()

    async def reply(body: dict[str, Any]) -> Reply:
        task = first_user_text(body)
        word = "alpha" if "alpha" in task else "beta"
        if not tool_messages(body):
            started.add(word)
            if len(started) == 2:
                both_started.set()
            # Neither session writes before both are running: they truly overlap.
            await asyncio.wait_for(both_started.wait(), 5)
            return Reply(tool_calls=[call("write_file", path="shared.txt", content=f"{word}\n")])
        return Reply(content=f"wrote {word}")

    scripted_ollama.respond_with(reply)
    config = config_for(repo, scripted_ollama.url)
    async with running_host(config) as (host, adapter):
        await adapter.say("write alpha into shared.txt", thread=adapter.thread("a"))
        await adapter.say("write beta into shared.txt", thread=adapter.thread("b"))
        await host.sessions.drain(10)
        sessions = [await host.sessions.get_session(adapter.thread(n)) for n in ("a", "b")]
    assert len(adapter.turns) == 2 and all(t.closed for t in adapter.turns)
    branches = {}
    for turn in adapter.turns:
        assert done_of(turn).data["reason"] == "completed"
        word = "alpha" if "alpha" in turn.text else "beta"
        branches[word] = footer_value(turn, "branch ")
        sha = footer_value(turn, "commit ")
        assert git(repo, "rev-parse", "--short", branches[word]) == sha
    assert branches["alpha"] != branches["beta"]
    assert all(b.startswith("threadwright/write-") for b in branches.values())
    for word, branch in branches.items():
        assert git(repo, "show", f"{branch}:shared.txt") == word
        assert (
            git(repo, "log", "-1", "--format=%an <%ae>", branch) == "Thread Bot <bot@example.test>"
        )
        assert git(repo, "log", "-1", "--format=%s", branch).startswith(f"write {word}")
    # The main worktree saw none of it.
    assert not (repo / "shared.txt").exists()
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "rev-parse", "HEAD") == main_head
    assert git(repo, "branch", "--show-current") == "main"
    # Each session's workspace is its own worktree, outside the main tree, and recorded.
    workspaces = {s.workspace for s in sessions if s is not None}
    assert len(workspaces) == 2
    for session in sessions:
        assert session is not None
        assert not session.workspace.is_relative_to(repo)
        assert session.record.workspace == str(session.workspace)
        assert (session.workspace / "shared.txt").is_file()


async def test_follow_up_diff_and_undo(scripted_ollama: ScriptedOllama, tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    scripted_ollama.script(
        Reply(tool_calls=[call("write_file", path="notes.txt", content="v1\n")]),
        Reply(content="Wrote v1."),
        Reply(tool_calls=[call("read_file", path="notes.txt")]),
        Reply(tool_calls=[call("write_file", path="notes.txt", content="v2\n")]),
        Reply(content="Now v2."),
    )
    config = config_for(repo, scripted_ollama.url)
    async with running_host(config) as (host, adapter):
        thread = adapter.thread("notes")
        await adapter.say("start the notes file", thread=thread)
        first = await adapter.wait_turn()
        await adapter.say("make it v2", thread=thread, mention=False)
        second = await adapter.wait_turn()
        session = await host.sessions.get_session(thread)
        assert session is not None
        worktree = session.workspace
        branch = footer_value(first, "branch ")
        first_sha = footer_value(first, "commit ")
        second_sha = footer_value(second, "commit ")
        # The follow-up ran in the same worktree and saw the first run's commit.
        assert footer_value(second, "branch ") == branch
        read_result = scripted_ollama.chat_requests[3]["messages"][-1]
        assert read_result["role"] == "tool" and "v1" in read_result["content"]
        assert git(worktree, "rev-parse", "--short", "HEAD~1") == first_sha
        assert git(worktree, "rev-parse", "--short", "HEAD") == second_sha

        adapter.notices.clear()
        await adapter.say("/diff", thread=thread, mention=False)
        diff = adapter.notices[-1][1]
        assert branch in diff and "`main`" in diff
        assert "notes.txt" in diff and "+v2" in diff and "Uncommitted" not in diff

        await adapter.say("/undo", thread=thread, user="bob", mention=True)
        assert "Only the requester or an approver" in adapter.notices[-1][1]
        assert git(worktree, "rev-parse", "--short", "HEAD") == second_sha

        await adapter.say("/undo", thread=thread, mention=False)
        assert f"Reverted {second_sha}" in adapter.notices[-1][1]
        assert (worktree / "notes.txt").read_text() == "v1\n"
        assert "Threadwright-Undo:" in git(worktree, "log", "-1", "--format=%B")
        # The next undo goes one further back instead of undoing the undo.
        await adapter.say("/undo", thread=thread, mention=False)
        assert f"Reverted {first_sha}" in adapter.notices[-1][1]
        assert not (worktree / "notes.txt").exists()
        await adapter.say("/undo", thread=thread, mention=False)
        assert "Nothing of mine to undo" in adapter.notices[-1][1]
        await adapter.say("/diff", thread=thread, mention=False)
        assert "notes.txt" not in adapter.notices[-1][1]
    assert git(repo, "status", "--porcelain") == ""


async def test_push_to_a_bare_remote_and_open_a_pull_request_once(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path)
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    scripted_ollama.script(
        Reply(tool_calls=[call("write_file", path="a.txt", content="a\n")]),
        Reply(content="ok"),
        Reply(tool_calls=[call("write_file", path="b.txt", content="b\n")]),
        Reply(content="ok again"),
    )
    pr_command = (
        'echo "opening PR for $THREADWRIGHT_BRANCH into $THREADWRIGHT_BASE" >> ../pr.log; '
        'echo "https://code.example.test/pr/$THREADWRIGHT_BRANCH"'
    )
    config = config_for(repo, scripted_ollama.url, push="origin", pr_command=pr_command)
    async with running_host(config) as (host, adapter):
        thread = adapter.thread("pushy")
        await adapter.say("add a.txt", thread=thread)
        first = await adapter.wait_turn()
        await host.sessions.drain(10)
        branch = footer_value(first, "branch ")
        pushed = git(remote, "rev-parse", "--short", branch)
        assert pushed == footer_value(first, "commit ")
        posted = [text for _, text in adapter.notices]
        assert f"Pull request: https://code.example.test/pr/{branch}" in posted[-1]

        await adapter.say("add b.txt", thread=thread, mention=False)
        second = await adapter.wait_turn()
        await host.sessions.drain(10)
        assert git(remote, "rev-parse", "--short", branch) == footer_value(second, "commit ")
        assert adapter.notices[-1][1] == f"Pushed `{branch}` to origin."
        session = await host.sessions.get_session(thread)
        assert session is not None
        log = (session.workspace.parent / "pr.log").read_text().splitlines()
    assert log == [f"opening PR for {branch} into main"]


async def test_prune_removes_idle_worktrees_and_keeps_branches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = make_repo(tmp_path)
    config = config_for(repo, "http://127.0.0.1:9", keep_days=3)
    manager = WorktreeManager(config)
    clean = await manager.acquire("test|room|one", "first task")
    dirty = await manager.acquire("test|room|two", "second task")
    fresh = await manager.acquire("test|room|three", "third task")
    (dirty.workspace / "draft.txt").write_text("unfinished\n")
    assert {w.branch for w in await manager.list_all()} == {
        branch_name(t, task)
        for t, task in [
            ("test|room|one", "first task"),
            ("test|room|two", "second task"),
            ("test|room|three", "third task"),
        ]
    }
    # Two threads went idle four days ago; the third was used just now.
    for worktree in (clean, dirty):
        worktree.last_used = time.time() - 4 * 86400
        await manager.save(worktree)
    removed, kept = await manager.prune(keep_days=3)
    assert {w.thread for w in removed} == {"test|room|one", "test|room|two"} and not kept
    assert not clean.top.exists() and not dirty.top.exists() and fresh.present
    worktree_list = git(repo, "worktree", "list", "--porcelain")
    assert str(fresh.top) in worktree_list and str(clean.top) not in worktree_list
    for worktree in (clean, dirty):
        assert git(repo, "rev-parse", "--verify", f"refs/heads/{worktree.branch}")
    # The uncommitted draft was kept on the branch, not thrown away.
    assert git(repo, "show", f"{dirty.branch}:draft.txt") == "unfinished"
    assert git(repo, "status", "--porcelain") == ""

    # The thread comes back: same branch, worktree recreated with its work.
    again = await manager.acquire("test|room|two", "a different follow-up text")
    assert again.branch == dirty.branch and again.present
    assert (again.workspace / "draft.txt").read_text() == "unfinished\n"

    class Args:
        workspaces_command = "list"
        days: float | None = None

    assert await run_workspaces_cli(config, Args()) == 0  # type: ignore[arg-type]
    listing = capsys.readouterr().out
    assert "(worktree removed)" in listing and clean.branch in listing
    assert str(fresh.top) in listing
    Args.workspaces_command, Args.days = "prune", 0.0
    assert await run_workspaces_cli(config, Args()) == 0  # type: ignore[arg-type]
    pruned = capsys.readouterr().out
    assert f"removed {fresh.top}" in pruned and f"(branch {fresh.branch} kept)" in pruned
    assert not fresh.top.exists()


async def test_a_pruned_worktree_comes_back_for_the_next_turn(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path)
    scripted_ollama.script(
        Reply(tool_calls=[call("write_file", path="kept.txt", content="kept\n")]),
        Reply(content="ok"),
        Reply(tool_calls=[call("read_file", path="kept.txt")]),
        Reply(content="still there"),
    )
    config = config_for(repo, scripted_ollama.url)
    async with running_host(config) as (host, adapter):
        thread = adapter.thread("comeback")
        await adapter.say("keep a file", thread=thread)
        await adapter.wait_turn()
        session = await host.sessions.get_session(thread)
        assert session is not None
        removed, _ = await host.sessions.workspaces.worktrees.prune(
            keep_days=1, now=time.time() + 2 * 86400
        )
        assert [w.thread for w in removed] == [str(thread)]
        assert not session.workspace.exists()
        await adapter.say("is it there?", thread=thread, mention=False)
        turn = await adapter.wait_turn()
    assert done_of(turn).data["reason"] == "completed"
    assert [e.data["result"]["ok"] for e in turn.of(AgentEventKind.TOOL_RESULT)] == [True]
    assert "kept" in tool_messages(scripted_ollama.chat_requests[3])[-1]["content"]


async def test_confinement_holds_inside_a_worktree(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path)
    config_before = (repo / ".git" / "config").read_text()
    scripted_ollama.script(
        Reply(
            tool_calls=[
                call("write_file", path=".git", content="gitdir: /tmp/elsewhere\n"),
                call("write_file", path=str(repo / ".git" / "config"), content="[core]\n"),
                call("write_file", path="ok.txt", content="fine\n"),
            ]
        ),
        Reply(content="tried"),
    )
    config = config_for(repo, scripted_ollama.url)
    async with running_host(config) as (host, adapter):
        await adapter.say("poke at git", thread=adapter.thread("c"))
        turn = await adapter.wait_turn()
        session = await host.sessions.get_session(adapter.thread("c"))
    assert session is not None
    worktree = session.workspace
    results = [e.data["result"]["ok"] for e in turn.of(AgentEventKind.TOOL_RESULT)]
    assert results == [False, False, True]
    assert (worktree / ".git").read_text().startswith("gitdir: ")
    assert "elsewhere" not in (worktree / ".git").read_text()
    assert (repo / ".git" / "config").read_text() == config_before

    # The rules directly: the .git file, what it points to, and a symlink to the main .git.
    gitdir = (worktree / ".git").read_text().split(":", 1)[1].strip()
    os.symlink(repo / ".git", worktree / "sneaky")
    relative_admin = "../" * len(worktree.parts[1:]) + gitdir.lstrip("/") + "/HEAD"
    for path in (".git", ".git/config", relative_admin, "sneaky/config", "../../repo/.git/x"):
        with pytest.raises(ToolError):
            resolve_in_workspace(worktree, path, for_write=True)
    assert resolve_in_workspace(worktree, "src/new.py", for_write=True) == worktree / "src/new.py"


async def test_stop_report_and_the_next_run_commits(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path)
    scripted_ollama.script(
        Reply(tool_calls=[call("write_file", path="half.txt", content="half\n")]),
        Reply(content="finished it"),
    )
    config = config_for(repo, scripted_ollama.url, routing={"max_loop_iterations": 1})
    async with running_host(config) as (_host, adapter):
        thread = adapter.thread("cap")
        await adapter.say("do half a job", thread=thread)
        capped = await adapter.wait_turn()
        assert done_of(capped).data["reason"] == "max_iterations"
        branch = footer_value(capped, "branch ")
        report = capped.of(AgentEventKind.NOTICE)[-1].text
        assert f"branch `{branch}`: 0 commits ahead of `main`" in report
        assert "?? half.txt" in report
        assert not any(str(i).startswith("commit ") for i in done_of(capped).data["footer"])
        await adapter.say("continue", thread=thread, mention=False)
        done = await adapter.wait_turn()
    sha = footer_value(done, "commit ")
    assert git(repo, "show", f"{sha}:half.txt") == "half"
    assert git(repo, "log", "-1", "--format=%s", branch) == "continue"


async def test_stop_reports_the_branch_and_what_is_uncommitted(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path)
    scripted_ollama.script(
        Reply(tool_calls=[call("write_file", path="wip.txt", content="wip\n")]),
        Reply(content="this answer never finishes", delay=10),
    )
    config = config_for(repo, scripted_ollama.url)
    async with running_host(config) as (_host, adapter):
        thread = adapter.thread("stopme")
        await adapter.say("start something long", thread=thread)
        await scripted_ollama.wait_for_requests(2)
        await adapter.say("stop", thread=thread, mention=False)
        stopped = await adapter.wait_turn()
    assert done_of(stopped).data["reason"] == "cancelled"
    notices = [e.text for e in stopped.of(AgentEventKind.NOTICE)]
    assert notices[0] == "Stopped by alice."
    branch = footer_value(stopped, "branch ")
    assert f"branch `{branch}`: 0 commits ahead of `main`" in notices[1]
    assert "?? wip.txt" in notices[1]
    assert git(repo, "rev-parse", branch) == git(repo, "rev-parse", "main")


async def test_auto_commit_off_leaves_the_work_uncommitted(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path)
    scripted_ollama.script(
        Reply(tool_calls=[call("write_file", path="x.txt", content="x\n")]),
        Reply(content="done"),
    )
    config = config_for(repo, scripted_ollama.url, auto_commit=False)
    async with running_host(config) as (_host, adapter):
        await adapter.say("write x", thread=adapter.thread("nc"))
        turn = await adapter.wait_turn()
    footer = done_of(turn).data["footer"]
    branch = footer_value(turn, "branch ")
    assert "1 uncommitted" in footer
    assert git(repo, "rev-parse", branch) == git(repo, "rev-parse", "main")


@pytest.mark.parametrize(
    ("platform", "isolation", "git_repo", "expect_worktree"),
    [
        ("slack", None, True, True),
        ("web", None, True, True),
        ("console", None, True, False),
        ("console", "worktree", True, True),
        ("slack", "none", True, False),
        ("slack", None, False, False),
    ],
)
async def test_isolation_defaults(
    tmp_path: Path, platform: str, isolation: str | None, git_repo: bool, expect_worktree: bool
) -> None:
    root = make_repo(tmp_path) if git_repo else tmp_path / "plain"
    root.mkdir(exist_ok=True)
    config = config_for(root, "http://127.0.0.1:9", isolation=isolation)
    workspaces = SessionWorkspaces(config)
    workspace = await workspaces.workspace_for(ThreadKey(platform, "r", "t"), "a task")
    assert (workspace != root) is expect_worktree
    if expect_worktree:
        assert git(workspace, "branch", "--show-current").startswith("threadwright/a-task-")


async def test_a_subdirectory_root_works_in_the_same_subdirectory(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    (repo / "pkg").mkdir()
    (repo / "pkg" / "mod.py").write_text("x = 1\n")
    git(repo, "add", "pkg")
    git(repo, "commit", "-q", "-m", "pkg")
    config = config_for(repo / "pkg", "http://127.0.0.1:9")
    manager = WorktreeManager(config)
    worktree = await manager.acquire("slack|r|sub", "edit the module")
    assert worktree.prefix == "pkg"
    assert (worktree.workspace / "mod.py").read_text() == "x = 1\n"
    state = json.loads(worktree.top.with_name(worktree.top.name + ".json").read_text())
    assert state["branch"] == worktree.branch and state["thread"] == "slack|r|sub"


class AttachingAdapter(RecordingAdapter):
    """An adapter that can attach files (as Slack's snippet upload does)."""

    def __init__(self) -> None:
        super().__init__()
        self.files: list[tuple[ThreadKey, str, str, str]] = []

    async def post_file(self, thread: ThreadKey, filename: str, content: str, comment: str) -> None:
        self.files.append((thread, filename, content, comment))


async def test_a_long_diff_is_attached_or_clipped(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    config = config_for(repo, "http://127.0.0.1:9")
    workspaces = SessionWorkspaces(config)
    thread = ThreadKey("slack", "r", "long")
    workspace = await workspaces.workspace_for(thread, "generate a big file")
    (workspace / "big.txt").write_text("".join(f"line {i}\n" for i in range(2000)))
    worktree = workspaces.worktrees
    found = await worktree.find(str(thread))
    assert found is not None and await worktree.commit(found, "big", session_id="s1")

    attaching = AttachingAdapter()
    await workspaces.control("diff", thread, None, attaching, may_change=True)
    assert not attaching.notices and len(attaching.files) == 1
    _, filename, content, comment = attaching.files[0]
    assert filename == found.branch.replace("/", "-") + ".diff"
    assert "+line 1999" in content and found.branch in comment

    plain = RecordingAdapter()
    await workspaces.control("diff", thread, None, plain, may_change=True)
    text = plain.notices[-1][1]
    assert "+line 0" in text and "+line 1999" not in text and "more lines" in text
    assert len(text) <= DIFF_INLINE_CHARS + 200


def test_the_reply_footer_names_branch_and_commit() -> None:
    from bot.events import AgentEvent
    from bot.streaming import ReplyDocument

    document = ReplyDocument()
    document.apply(AgentEvent(AgentEventKind.TOKEN, "s1", "Done."))
    document.apply(
        AgentEvent(
            AgentEventKind.DONE,
            "s1",
            data={"stats": {"steps": 2}, "footer": ["branch threadwright/x-1", "commit abc1234"]},
        )
    )
    assert document.render().endswith(
        "2 steps · 0 tokens · 0.0s · branch threadwright/x-1 · commit abc1234_"
    )


async def test_a_truncated_turn_reports_its_branch_instead_of_committing(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path)
    scripted_ollama.script(
        Reply(tool_calls=[call("write_file", path="half.txt", content="half\n")]),
        Reply(content="Now ", runaway="more ", chunk_size=4, ignore_max_tokens=True),
    )
    config = config_for(repo, scripted_ollama.url)
    config.limits.max_step_tokens = 40
    async with running_host(config) as (_host, adapter):
        await adapter.say("do a job", thread=adapter.thread("cut"))
        cut = await adapter.wait_turn()
    assert done_of(cut).data["reason"] == "truncated"
    assert not any(str(i).startswith("commit ") for i in done_of(cut).data["footer"])
    report = cut.of(AgentEventKind.NOTICE)[-1].text
    assert "?? half.txt" in report and "0 commits ahead" in report
