"""WorktreeManager: one git worktree and branch per thread, kept outside the main tree.

A thread's branch is ``threadwright/<slug>-<id>``: the slug comes from the
task's first words, the id from a hash of the thread key, so the same thread
always maps to the same branch, even after its worktree was pruned or the
bot restarted. The worktree lives in the worktrees directory (never inside
the main worktree, whose ``git status`` must stay untouched) next to a small
JSON state file: the thread, the branch, what it was created from, when it
was last used, and the pull request once one was opened.

The bot marks its own commits with a ``Threadwright-Session:`` trailer and
its undo commits with ``Threadwright-Undo: <sha>``, so ``/undo`` finds "the
last commit the bot made" from the branch's history alone, and a second
``/undo`` goes one further back instead of undoing the undo.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import time
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.tools.process import run_process
from bot.workspaces.git import (
    NETWORK_TIMEOUT_S,
    Git,
    GitError,
    Repository,
    WorkspaceError,
    host_git_env,
)

if TYPE_CHECKING:
    from bot.config import Config

BRANCH_PREFIX = "threadwright/"
SESSION_TRAILER = "Threadwright-Session"
UNDO_TRAILER = "Threadwright-Undo"
_SLUG_WORDS = 5
_SLUG_CHARS = 32
_URL = re.compile(r"https?://[^\s<>\"')\]]+")
_RECORD, _FIELD = "\x1e", "\x1f"


def thread_id(thread: str) -> str:
    """A short stable id for a thread key (hex, safe in branch and file names)."""
    return hashlib.sha256(thread.encode()).hexdigest()[:10]


def slugify(text: str) -> str:
    """``"Fix the login bug, please!"`` → ``"fix-the-login-bug-please"`` (bounded)."""
    words = re.findall(r"[a-z0-9]+", text.lower())[:_SLUG_WORDS]
    slug = "-".join(words)[:_SLUG_CHARS].strip("-")
    return slug or "task"


def branch_name(thread: str, task: str) -> str:
    return f"{BRANCH_PREFIX}{slugify(task)}-{thread_id(thread)}"


@dataclass(slots=True)
class Worktree:
    """One thread's worktree, as recorded in its state file."""

    thread: str
    branch: str
    path: str  # the worktree's top level
    repo: str  # the main worktree's top level
    base_branch: str  # "" when created from a detached HEAD
    base_sha: str
    prefix: str = ""  # workspace.root relative to the repository's top level
    created_at: float = 0.0
    last_used: float = 0.0
    pr_url: str | None = None
    # The worktree's admin directory in the main repository, recorded by the bot when
    # it created the worktree: never re-read from the worktree's own ``.git`` file,
    # which the agent can rewrite.
    git_dir: str = ""

    @property
    def top(self) -> Path:
        return Path(self.path)

    @property
    def workspace(self) -> Path:
        """Where the session's tools act: the worktree, or the same subdirectory in it."""
        return self.top / self.prefix if self.prefix not in ("", ".") else self.top

    @property
    def present(self) -> bool:
        return (self.top / ".git").is_file()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Worktree:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True, slots=True)
class CommitInfo:
    sha: str
    short: str
    subject: str
    branch: str


@dataclass(frozen=True, slots=True)
class BranchDiff:
    """What a branch changed against its base, and what is not committed yet."""

    branch: str
    base: str  # the base's name (or short sha)
    base_sha: str
    stat: str
    patch: str
    uncommitted: str  # ``git status --short``


@dataclass(frozen=True, slots=True)
class PullRequest:
    ok: bool
    link: str | None
    output: str


class WorktreeManager:
    """Creates, reuses, commits in and prunes the per-thread worktrees of one repository."""

    def __init__(self, config: Config, *, base_env: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.root = config.workspace_path()
        ws = config.workspace
        self.git = Git(
            host_git_env(config, base=base_env),
            identity=(ws.author_name, ws.author_email),
        )
        self._base_env = os.environ if base_env is None else base_env
        self._toplevel: Path | None = None
        self._main: Repository | None = None
        self._common_dir: Path | None = None
        self._probed = False
        # Adding and removing worktrees edits the repository's shared admin data.
        self._admin_lock = asyncio.Lock()

    # --- the repository ---------------------------------------------------------

    async def repository(self) -> Path | None:
        """The top level of the git work tree holding ``workspace.root``, or None."""
        if not self._probed:
            if self.root.is_dir():
                # The one discovery the bot makes: at start, before any agent ran in
                # this process. From here on every call names the repository.
                outcome = await self.git.run(
                    self.root,
                    "rev-parse",
                    "--is-inside-work-tree",
                    "--show-toplevel",
                    "--absolute-git-dir",
                    "--path-format=absolute",
                    "--git-common-dir",
                    check=False,
                )
                lines = [line.strip() for line in outcome.stdout.split("\n")]
                if outcome.exit_code == 0 and lines[0] == "true" and len(lines) > 3:
                    top = Path(lines[1])  # git prints it resolved
                    git_dir = Path(lines[2])
                    self._toplevel = top
                    self._main = Repository(git_dir, top)
                    self._common_dir = _real(Path(lines[3]))
            self._probed = True
        return self._toplevel

    async def main_repository(self) -> Repository | None:
        """The repository holding ``workspace.root``, as found at start (see :meth:`repository`)."""
        await self.repository()
        return self._main

    def repo_of(self, worktree: Worktree) -> Repository:
        """The worktree's repository: its recorded admin directory, checked to be one of
        the main repository's (a worktree's ``.git`` file is never trusted)."""
        common = self._common_dir
        if common is None:
            raise WorkspaceError(f"{self.root} is not inside a git repository")
        admin = worktree.git_dir or _admin_dir_from_dot_git(worktree.top, common)
        real = Path(os.path.realpath(admin)) if admin else None
        if real is None or real.parent != common / "worktrees" or not real.is_dir():
            raise WorkspaceError(
                f"the worktree {worktree.top} does not belong to {common.parent}; "
                "remove it and its .json state file to start the thread afresh"
            )
        return Repository(real, worktree.top)

    async def _require_repository(self) -> Path:
        top = await self.repository()
        if top is None:
            raise WorkspaceError(f"{self.root} is not inside a git repository")
        return top

    async def _require_main(self) -> Repository:
        await self._require_repository()
        assert self._main is not None
        return self._main

    def worktrees_dir(self, top: Path) -> Path:
        """Where this repository's thread worktrees and their state files live."""
        configured = self.config.workspace.worktrees_dir
        leaf = f"{top.name}-{hashlib.sha256(str(top).encode()).hexdigest()[:6]}"
        if configured:
            return Path(configured).expanduser().resolve() / leaf
        store_dir = self.config.store_path().expanduser().resolve().parent
        if not _is_within(store_dir, top):
            return store_dir / "worktrees" / leaf
        return top.parent / ".threadwright" / "worktrees" / leaf

    # --- state files --------------------------------------------------------------

    async def find(self, thread: str) -> Worktree | None:
        top = await self._require_repository()
        directory = self.worktrees_dir(top)
        return await asyncio.to_thread(_find_state, directory, thread_id(thread))

    async def list_all(self) -> list[Worktree]:
        top = await self._require_repository()
        return await asyncio.to_thread(_all_states, self.worktrees_dir(top))

    async def save(self, worktree: Worktree) -> None:
        await asyncio.to_thread(_write_state, _state_path(worktree), worktree)

    # --- acquire ------------------------------------------------------------------

    async def acquire(self, thread: str, task: str) -> Worktree:
        """The thread's worktree: reused when present, (re)created otherwise."""
        top = await self._require_repository()
        async with self._admin_lock:
            worktree = await self.find(thread)
            if worktree is None:
                worktree = await self._plan(top, thread, task)
            if not worktree.present:
                await self._add(top, worktree)
            worktree.last_used = time.time()
            await self.save(worktree)
            return worktree

    async def _plan(self, top: Path, thread: str, task: str) -> Worktree:
        branch = branch_name(thread, task)
        main = await self._require_main()
        base = self.config.workspace.base_branch
        if not base:
            head = await self.git.run(
                top, "symbolic-ref", "--quiet", "--short", "HEAD", check=False, repo=main
            )
            base = head.stdout.strip() if head.exit_code == 0 else ""
        start = base or "HEAD"
        resolved = await self.git.run(
            top, "rev-parse", "--verify", "--quiet", f"{start}^{{commit}}", check=False, repo=main
        )
        if resolved.exit_code != 0:
            raise WorkspaceError(
                f"cannot create a worktree: base {start!r} is not a commit "
                "(set workspace.base_branch, or make a first commit)"
            )
        try:
            prefix = self.root.relative_to(top).as_posix()
        except ValueError:  # a symlinked root git saw through: work at the top
            prefix = ""
        now = time.time()
        return Worktree(
            thread=thread,
            branch=branch,
            path=str(self.worktrees_dir(top) / branch.removeprefix(BRANCH_PREFIX)),
            repo=str(top),
            base_branch=base,
            base_sha=resolved.stdout.strip(),
            prefix="" if prefix == "." else prefix,
            created_at=now,
            last_used=now,
        )

    async def _add(self, top: Path, worktree: Worktree) -> None:
        path = worktree.top
        if path.exists() and any(path.iterdir()):
            raise WorkspaceError(f"{path} exists and is not a worktree; move it away")
        path.parent.mkdir(parents=True, exist_ok=True)
        main = await self._require_main()
        # Forget worktrees whose directories are gone, so their branches are free again.
        await self.git.run(top, "worktree", "prune", repo=main)
        exists = await self.git.ok(
            top, "rev-parse", "--verify", "--quiet", f"refs/heads/{worktree.branch}", repo=main
        )
        if exists:
            await self.git.run(top, "worktree", "add", str(path), worktree.branch, repo=main)
        else:
            await self.git.run(
                top,
                "worktree",
                "add",
                "-b",
                worktree.branch,
                str(path),
                worktree.base_sha,
                repo=main,
            )
        # Just created by the bot, before any agent worked in it: the one moment its
        # ``.git`` file can be believed.
        assert self._common_dir is not None
        worktree.git_dir = _admin_dir_from_dot_git(path, self._common_dir)

    # --- working in a worktree ------------------------------------------------------

    async def status(self, worktree: Worktree) -> str:
        """``git status --short`` of the worktree ("" when clean)."""
        return await self.git.out(worktree.top, "status", "--short", repo=self.repo_of(worktree))

    async def commit(
        self, worktree: Worktree, subject: str, body: str = "", *, session_id: str = ""
    ) -> CommitInfo | None:
        """Commit everything in the worktree; None when there was nothing to commit."""
        top = worktree.top
        repo = self.repo_of(worktree)
        await self.git.run(top, "add", "-A", repo=repo)
        staged = await self.git.run(top, "diff", "--cached", "--quiet", check=False, repo=repo)
        if staged.exit_code == 0:
            return None
        message = ["-m", subject]
        if body:
            message += ["-m", body]
        message += ["-m", f"{SESSION_TRAILER}: {session_id or 'unknown'}"]
        await self.git.run(
            top, "commit", "--no-verify", "--quiet", *message, identify=True, repo=repo
        )
        return await self.head(worktree)

    async def head(self, worktree: Worktree) -> CommitInfo:
        line = await self.git.out(
            worktree.top,
            "log",
            "-1",
            f"--format=%H{_FIELD}%h{_FIELD}%s",
            repo=self.repo_of(worktree),
        )
        sha, short, subject = line.split(_FIELD, 2)
        return CommitInfo(sha, short, subject, worktree.branch)

    async def merge_base(self, worktree: Worktree) -> str:
        """Where the branch left its base (the base branch may have moved on since)."""
        top = worktree.top
        repo = self.repo_of(worktree)
        if worktree.base_branch and await self.git.ok(
            top, "rev-parse", "--verify", "--quiet", f"refs/heads/{worktree.base_branch}", repo=repo
        ):
            found = await self.git.run(
                top,
                "merge-base",
                f"refs/heads/{worktree.base_branch}",
                "HEAD",
                check=False,
                repo=repo,
            )
            if found.exit_code == 0 and found.stdout.strip():
                return found.stdout.strip()
        return worktree.base_sha

    async def commits_ahead(self, worktree: Worktree) -> int:
        base = await self.merge_base(worktree)
        return int(
            await self.git.out(
                worktree.top, "rev-list", "--count", f"{base}..HEAD", repo=self.repo_of(worktree)
            )
        )

    async def diff(self, worktree: Worktree) -> BranchDiff:
        top = worktree.top
        base = await self.merge_base(worktree)
        repo = self.repo_of(worktree)
        # The repository's own diff drivers and textconv filters are programs: never run.
        plain = ("diff", "--no-color", "--no-ext-diff", "--no-textconv")
        stat = await self.git.out(top, *plain, "--stat", base, "HEAD", repo=repo)
        patch = await self.git.out(top, *plain, base, "HEAD", repo=repo)
        return BranchDiff(
            branch=worktree.branch,
            base=worktree.base_branch or base[:7],
            base_sha=base,
            stat=stat,
            patch=patch,
            uncommitted=await self.status(worktree),
        )

    async def undo(self, worktree: Worktree) -> tuple[CommitInfo, CommitInfo] | None:
        """Revert the bot's newest not-yet-undone commit; (reverted, revert) or None."""
        top = worktree.top
        repo = self.repo_of(worktree)
        base = await self.merge_base(worktree)
        log = await self.git.out(
            top,
            "log",
            f"--format=%H{_FIELD}%h{_FIELD}%s{_FIELD}%B{_RECORD}",
            f"{base}..HEAD",
            repo=repo,
        )
        undone: set[str] = set()
        target: CommitInfo | None = None
        for entry in log.split(_RECORD):
            parts = entry.strip("\n").split(_FIELD, 3)
            if len(parts) < 4:
                continue
            sha, short, subject, body = parts
            trailers = _trailers(body)
            if UNDO_TRAILER in trailers:
                undone.update(trailers[UNDO_TRAILER])
            elif SESSION_TRAILER in trailers and sha not in undone:
                target = CommitInfo(sha, short, subject, worktree.branch)
                break
        if target is None:
            return None
        reverted = await self.git.run(
            top, "revert", "--no-commit", target.sha, check=False, repo=repo
        )
        if reverted.exit_code != 0:
            await self.git.run(top, "revert", "--abort", check=False, repo=repo)
            raise GitError(["revert", target.short], reverted)
        await self.git.run(
            top,
            "commit",
            "--no-verify",
            "--quiet",
            "--allow-empty",
            "-m",
            f'Undo "{target.subject}"',
            "-m",
            f"This reverts commit {target.sha}.",
            "-m",
            f"{UNDO_TRAILER}: {target.sha}",
            identify=True,
            repo=repo,
        )
        return target, await self.head(worktree)

    # --- publishing ---------------------------------------------------------------

    def _publish_env(self, worktree: Worktree) -> dict[str, str]:
        """Names the operator listed in ``workspace.push_env`` (an SSH agent, a gh token)."""
        ws = self.config.workspace
        env = {n: self._base_env[n] for n in ws.push_env if n in self._base_env}
        env.update(
            THREADWRIGHT_BRANCH=worktree.branch,
            THREADWRIGHT_BASE=worktree.base_branch,
            THREADWRIGHT_REMOTE=ws.push or "",
        )
        return env

    async def push(self, worktree: Worktree) -> None:
        remote = self.config.workspace.push
        if not remote:
            raise WorkspaceError("workspace.push names no remote")
        ref = f"refs/heads/{worktree.branch}"
        await self.git.run(
            worktree.top,
            "push",
            "--porcelain",
            remote,
            f"{ref}:{ref}",
            timeout=NETWORK_TIMEOUT_S,
            env=self._publish_env(worktree),
            repo=self.repo_of(worktree),
        )

    async def open_pull_request(self, worktree: Worktree, title: str) -> PullRequest | None:
        """Run ``workspace.pr_command`` once per branch; its first URL is the link."""
        command = self.config.workspace.pr_command
        if not command or worktree.pr_url:
            return None
        repo = self.repo_of(worktree)
        env = {
            **self.git.env,
            **self._publish_env(worktree),
            "THREADWRIGHT_TITLE": title,
            # The git processes the command starts (``gh``) find the repository here,
            # not through the worktree's ``.git`` file.
            "GIT_DIR": str(repo.git_dir),
            "GIT_WORK_TREE": str(worktree.top),
        }
        outcome = await run_process(
            ["/bin/sh", "-c", command],
            cwd=worktree.workspace,
            env=env,
            timeout=NETWORK_TIMEOUT_S,
            max_output_bytes=64_000,
        )
        output = (outcome.stdout + "\n" + outcome.stderr).strip()
        ok = outcome.exit_code == 0 and not outcome.timed_out
        match = _URL.search(outcome.stdout) or _URL.search(outcome.stderr)
        link = match.group(0) if match else None
        if ok and link:
            worktree.pr_url = link
            await self.save(worktree)
        return PullRequest(ok, link, output)

    # --- clean-up -----------------------------------------------------------------

    async def prune(
        self, *, keep_days: float, now: float | None = None, active: Collection[str] = ()
    ) -> tuple[list[Worktree], list[tuple[Worktree, str]]]:
        """Remove worktrees idle longer than ``keep_days`` (branches stay): (removed, kept)."""
        top = await self._require_repository()
        main = await self._require_main()
        now = time.time() if now is None else now
        removed: list[Worktree] = []
        kept: list[tuple[Worktree, str]] = []
        async with self._admin_lock:
            for worktree in await self.list_all():
                if not worktree.present or worktree.thread in active:
                    continue
                if now - worktree.last_used < keep_days * 86400:
                    continue
                try:
                    if await self.status(worktree):
                        if not self.config.workspace.auto_commit:
                            kept.append((worktree, "uncommitted changes"))
                            continue
                        # Nothing is lost: the work goes onto the branch, which is kept.
                        await self.commit(
                            worktree,
                            "Work in progress (worktree pruned)",
                            session_id="prune",
                        )
                    await self.git.run(
                        top, "worktree", "remove", "--force", str(worktree.top), repo=main
                    )
                except WorkspaceError as exc:
                    kept.append((worktree, str(exc)))
                    continue
                removed.append(worktree)
            await self.git.run(top, "worktree", "prune", repo=main)
        return removed, kept


def _is_within(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _admin_dir_from_dot_git(top: Path, common: Path) -> str:
    """The admin directory a worktree's ``.git`` file names, if it is one of ``common``'s
    worktrees and points back at this worktree ("" otherwise)."""
    try:
        first = (top / ".git").read_text(encoding="utf-8", errors="replace")[:4096]
    except OSError:
        return ""
    target = first.splitlines()[0].removeprefix("gitdir:").strip() if first else ""
    if not target:
        return ""
    admin = Path(os.path.realpath(top / target))
    if admin.parent != common / "worktrees":
        return ""
    try:
        back = (admin / "gitdir").read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""
    if os.path.realpath(back) != os.path.realpath(top / ".git"):
        return ""
    return str(admin)


def _trailers(body: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in body.splitlines():
        key, sep, value = line.partition(":")
        if sep and key in (SESSION_TRAILER, UNDO_TRAILER):
            found.setdefault(key, []).append(value.strip())
    return found


def _state_path(worktree: Worktree) -> Path:
    return worktree.top.with_name(worktree.top.name + ".json")


def _find_state(directory: Path, ident: str) -> Worktree | None:
    for path in sorted(directory.glob(f"*-{ident}.json")):
        state = _read_state(path)
        if state is not None:
            return state
    return None


def _all_states(directory: Path) -> list[Worktree]:
    states = [_read_state(p) for p in sorted(directory.glob("*.json"))]
    return [s for s in states if s is not None]


def _read_state(path: Path) -> Worktree | None:
    try:
        return Worktree.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def _write_state(path: Path, worktree: Worktree) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(asdict(worktree), indent=2), encoding="utf-8")
    os.replace(temporary, path)
