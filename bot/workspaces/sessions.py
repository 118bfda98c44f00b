"""Sessions meet worktrees: which directory a thread works in, and what happens at a turn's end.

The :class:`bot.sessions.SessionManager` asks :meth:`SessionWorkspaces.workspace_for`
where a new (or reloaded) session works, then :meth:`SessionWorkspaces.attach`
es it. From then on:

- when a turn completes, its work is committed on the thread's branch (unless
  ``workspace.auto_commit: false``) and the branch and short sha go into the
  DONE event's ``footer`` list, which the reply's footer shows;
- when a turn stops early (``stop``, a failure, the iteration cap) a NOTICE
  says what the branch holds, what is uncommitted and on which branch;
- after the turn, :meth:`after_turn` pushes the branch (``workspace.push``)
  and runs ``workspace.pr_command`` once, posting its link in the thread;
- ``/diff`` and ``/undo`` are answered by :meth:`control`.

Isolation (design §4): chat platforms and the browser get a worktree per
thread when ``workspace.root`` is in a git repository; the console works in
place unless ``workspace.isolation: worktree``; ``none`` always works in place.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from bot.events import AgentEventKind, DoneReason, ThreadKey
from bot.policy.redaction import redact
from bot.render import clip
from bot.workspaces.git import WorkspaceError
from bot.workspaces.worktrees import BranchDiff, Worktree, WorktreeManager

if TYPE_CHECKING:
    from bot.adapters import ChatAdapter
    from bot.agent import AgentSession
    from bot.config import Config

log = logging.getLogger(__name__)

WORKSPACE_COMMANDS = frozenset({"diff", "undo"})
# A diff longer than this goes out as a file where the adapter can attach one.
DIFF_INLINE_CHARS = 3000
PRUNE_EVERY_S = 86400.0
# A turn that did not finish its task leaves its work uncommitted and says where it is.
_STOP_REASONS = frozenset(
    {
        DoneReason.CANCELLED,
        DoneReason.ERROR,
        DoneReason.MAX_ITERATIONS,
        DoneReason.TRUNCATED,
        DoneReason.LIMIT_REACHED,
    }
)
_STEERING_PREFIX = "[steering from "


@runtime_checkable
class FileAttaching(Protocol):
    """An adapter that can attach a text file to a thread (Slack snippets, Matrix files).

    Optional: a long ``/diff`` goes out this way when the adapter has it, and
    as a clipped message otherwise.
    """

    async def post_file(
        self, thread: ThreadKey, filename: str, content: str, comment: str
    ) -> None: ...


class SessionWorkspaces:
    """The SessionManager's view of workspaces: one per thread, or the shared root."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.worktrees = WorktreeManager(config)
        self._by_thread: dict[str, Worktree] = {}
        self._sessions: weakref.WeakValueDictionary[str, AgentSession] = (
            weakref.WeakValueDictionary()
        )
        self._publish_pending: set[str] = set()
        self._last_prune: float | None = None
        self._committing: set[asyncio.Future[list[str]]] = set()

    def isolated(self, platform: str) -> bool:
        """Whether sessions on ``platform`` want a worktree (if the root is a repository)."""
        isolation = self.config.workspace.isolation
        if isolation is not None:
            return isolation == "worktree"
        return platform != "console"

    async def workspace_for(self, thread: ThreadKey, task: str) -> Path:
        """The directory the thread's session works in (its worktree, or the root)."""
        root = self.config.workspace_path()
        if not self.isolated(thread.platform):
            return root
        if await self.worktrees.repository() is None:
            if self.config.workspace.isolation == "worktree":
                log.warning("workspace.isolation is worktree but %s is not a git repository", root)
            return root
        await self._prune_if_due()
        try:
            worktree = await self.worktrees.acquire(str(thread), task)
        except WorkspaceError as exc:
            log.error("no worktree for %s, working in %s instead: %s", thread, root, exc)
            return root
        self._by_thread[str(thread)] = worktree
        return worktree.workspace

    async def ensure(self, session: AgentSession) -> None:
        """Before a turn: bring back the thread's worktree if it was pruned meanwhile."""
        worktree = self.worktree_of(session)
        if worktree is None or worktree.present:
            return
        try:
            self._by_thread[str(session.thread)] = await self.worktrees.acquire(
                str(session.thread), session.record.task
            )
        except WorkspaceError as exc:
            log.error("session %s: cannot restore its worktree: %s", session.id, exc)

    def worktree_of(self, session: AgentSession) -> Worktree | None:
        return self._by_thread.get(str(session.thread))

    def attach(self, session: AgentSession) -> None:
        """Commit and report at the end of each of the session's turns."""
        self._sessions[str(session.thread)] = session
        session.turn_end_hooks.append(self._on_turn_end)

    # --- the end of a turn ------------------------------------------------------

    async def _on_turn_end(self, session: AgentSession, reason: DoneReason) -> list[str]:
        if reason is DoneReason.INTERRUPTED:
            return []  # shutting down: leave the work as it is, the turn resumes later
        worktree = self.worktree_of(session)
        try:
            if worktree is None:
                if reason in _STOP_REASONS:
                    await self._report_in_place(session)
                return []
            worktree.last_used = time.time()
            await self.worktrees.save(worktree)
            if reason in _STOP_REASONS:
                await session.emit(AgentEventKind.NOTICE, await self._stop_report(worktree))
                return [f"branch {worktree.branch}"]
            # A stop arriving mid-commit must not kill git and leave an index.lock behind.
            commit = asyncio.ensure_future(self._commit_turn(session, worktree))
            self._committing.add(commit)
            commit.add_done_callback(self._commit_finished)
            return await asyncio.shield(commit)
        except WorkspaceError as exc:
            log.warning("session %s: workspace step failed: %s", session.id, exc)
            await session.emit(AgentEventKind.NOTICE, f"Could not commit the work: {exc}")
            return [f"branch {worktree.branch}"] if worktree else []

    def _commit_finished(self, commit: asyncio.Future[list[str]]) -> None:
        self._committing.discard(commit)
        if not commit.cancelled() and commit.exception() is not None:
            log.warning("a turn's commit failed: %s", commit.exception())

    async def _commit_turn(self, session: AgentSession, worktree: Worktree) -> list[str]:
        footer = [f"branch {worktree.branch}"]
        if not self.config.workspace.auto_commit:
            changed = len((await self.worktrees.status(worktree)).splitlines())
            if changed:
                footer.append(f"{changed} uncommitted")
            return footer
        text, author = _turn_request(session)
        subject = clip(text.strip().split("\n", 1)[0], 72) or "threadwright task"
        body = f"Asked by {author} in a threadwright thread:\n\n{clip(text.strip(), 1500)}"
        commit = await self.worktrees.commit(worktree, subject, body, session_id=session.id)
        if commit is None:
            footer.append("no changes")
        else:
            footer.append(f"commit {commit.short}")
            if self.config.workspace.push:
                self._publish_pending.add(str(session.thread))
        return footer

    async def _stop_report(self, worktree: Worktree) -> str:
        ahead = await self.worktrees.commits_ahead(worktree)
        status = await self.worktrees.status(worktree)
        base = worktree.base_branch or worktree.base_sha[:7]
        lines = [
            f"Work so far is on branch `{worktree.branch}`: "
            f"{ahead} commit{'' if ahead == 1 else 's'} ahead of `{base}`."
        ]
        if status:
            lines.append(f"Uncommitted:\n```\n{status}\n```")
        else:
            lines.append("Nothing uncommitted.")
        return "\n".join(lines)

    async def _report_in_place(self, session: AgentSession) -> None:
        git = self.worktrees.git
        if not session.workspace.is_dir():
            return
        repo = await self.worktrees.main_repository()
        if repo is None or not _is_within(session.workspace, repo.work_tree):
            return  # not a repository: nothing to say
        branch = await git.run(
            session.workspace, "branch", "--show-current", check=False, repo=repo
        )
        if branch.exit_code != 0:
            return
        status = await git.out(session.workspace, "status", "--short", ".", repo=repo)
        name = branch.stdout.strip() or "(detached HEAD)"
        detail = f"Uncommitted:\n```\n{status}\n```" if status else "Nothing uncommitted."
        await session.emit(AgentEventKind.NOTICE, f"On branch `{name}`. {detail}")

    async def after_turn(self, session: AgentSession, adapter: ChatAdapter) -> None:
        """Publish a turn's commit (push, then the PR command once); posts in the thread."""
        key = str(session.thread)
        if key not in self._publish_pending:
            return
        self._publish_pending.discard(key)
        worktree = self._by_thread.get(key)
        if worktree is None:
            return
        await self._publish(worktree, session.thread, adapter, title=session.record.task)

    async def _publish(
        self, worktree: Worktree, thread: ThreadKey, adapter: ChatAdapter, *, title: str
    ) -> None:
        remote = self.config.workspace.push
        try:
            await self.worktrees.push(worktree)
        except WorkspaceError as exc:
            await adapter.post_notice(thread, f"Push of `{worktree.branch}` failed: {exc}")
            return
        pull = await self.worktrees.open_pull_request(worktree, clip(title, 72))
        if pull is None:
            await adapter.post_notice(thread, f"Pushed `{worktree.branch}` to {remote}.")
        elif pull.ok and pull.link:
            await adapter.post_notice(
                thread, f"Pushed `{worktree.branch}` to {remote}. Pull request: {pull.link}"
            )
        else:
            tail = clip(pull.output.strip().splitlines()[-1] if pull.output.strip() else "", 300)
            await adapter.post_notice(
                thread,
                f"Pushed `{worktree.branch}` to {remote}; workspace.pr_command "
                f"{'gave no link' if pull.ok else 'failed'}: {tail}",
            )

    # --- /diff and /undo --------------------------------------------------------

    async def control(
        self,
        command: str,
        thread: ThreadKey,
        session: AgentSession | None,
        adapter: ChatAdapter,
        *,
        may_change: bool,
    ) -> None:
        worktree = self._by_thread.get(str(thread))
        if worktree is None:
            await adapter.post_notice(
                thread, f"/{command}: this thread has no branch of its own (no worktree)."
            )
            return
        try:
            if command == "diff":
                await self._post_diff(await self.worktrees.diff(worktree), thread, adapter)
            elif command == "undo":
                if not may_change:
                    await adapter.post_notice(thread, "Only the requester or an approver may undo.")
                elif session is not None and session.running:
                    await adapter.post_notice(
                        thread, "I'm still working; stop me first, then undo."
                    )
                else:
                    await self._undo(worktree, thread, adapter, session)
        except WorkspaceError as exc:
            await adapter.post_notice(thread, f"/{command} failed: {exc}")

    async def _undo(
        self,
        worktree: Worktree,
        thread: ThreadKey,
        adapter: ChatAdapter,
        session: AgentSession | None,
    ) -> None:
        result = await self.worktrees.undo(worktree)
        if result is None:
            await adapter.post_notice(thread, f"Nothing of mine to undo on `{worktree.branch}`.")
            return
        reverted, revert = result
        await adapter.post_notice(
            thread,
            f"Reverted {reverted.short} ({clip(reverted.subject, 60)}) on `{worktree.branch}` "
            f"with {revert.short}.",
        )
        if self.config.workspace.push:
            title = session.record.task if session is not None else worktree.branch
            await self._publish(worktree, thread, adapter, title=title)

    async def _post_diff(self, diff: BranchDiff, thread: ThreadKey, adapter: ChatAdapter) -> None:
        # The branch's files may hold a secret the agent wrote: redact what leaves.
        text = format_diff(diff)
        if len(text) > DIFF_INLINE_CHARS and isinstance(adapter, FileAttaching):
            name = diff.branch.replace("/", "-") + ".diff"
            await adapter.post_file(thread, name, redact(diff.patch), summary_of_diff(diff))
            return
        if len(text) > DIFF_INLINE_CHARS:
            text = format_diff(diff, limit=DIFF_INLINE_CHARS)
        await adapter.post_notice(thread, redact(text))

    # --- clean-up -------------------------------------------------------------------

    def active_threads(self) -> set[str]:
        return {key for key, s in list(self._sessions.items()) if s.running}

    async def _prune_if_due(self) -> None:
        keep_days = self.config.workspace.keep_days
        now = time.monotonic()
        if keep_days is None or (
            self._last_prune is not None and now - self._last_prune < PRUNE_EVERY_S
        ):
            return
        self._last_prune = now
        try:
            removed, _ = await self.worktrees.prune(
                keep_days=keep_days, active=self.active_threads()
            )
        except WorkspaceError as exc:
            log.warning("pruning idle worktrees failed: %s", exc)
            return
        for worktree in removed:
            self._by_thread.pop(worktree.thread, None)
            log.info("pruned idle worktree %s (branch %s kept)", worktree.path, worktree.branch)


def summary_of_diff(diff: BranchDiff) -> str:
    head = f"`{diff.branch}` against `{diff.base}` ({diff.base_sha[:7]})"
    if not diff.patch:
        head += ": no committed changes"
    if diff.uncommitted:
        head += f"\nUncommitted:\n```\n{diff.uncommitted}\n```"
    return head


def format_diff(diff: BranchDiff, *, limit: int | None = None) -> str:
    """The diff as one Markdown message (cut to ``limit`` characters with a note)."""
    text = summary_of_diff(diff)
    if diff.patch:
        patch = diff.patch
        if limit is not None:
            room = max(200, limit - len(text) - len(diff.stat) - 120)
            if len(patch) > room:
                cut = patch[:room].rsplit("\n", 1)[0]
                more = patch.count("\n") - cut.count("\n")
                patch = f"{cut}\n… {more} more lines (the whole diff: git diff {diff.base_sha[:7]})"
        text += f"\n```\n{diff.stat}\n```\n```diff\n{patch}\n```"
    return text


def _turn_request(session: AgentSession) -> tuple[str, str]:
    """The text (and author) of the message that started the latest turn."""
    for message in reversed(session.history):
        content = message.get("content")
        if (
            message.get("role") == "user"
            and isinstance(content, str)
            and not content.startswith(_STEERING_PREFIX)
        ):
            return content, str(message.get("_author") or session.requester)
    return session.record.task, session.requester


def _is_within(path: Path, top: Path | None) -> bool:
    if top is None:
        return False
    real, real_top = path.resolve(), top.resolve()
    return real == real_top or real_top in real.parents
