"""Running git for the host: bounded, off the event loop, on configuration the agent cannot write.

Every git command the bot itself runs (worktrees, commits, ``/diff``, the
grep tool's file listing) goes through :func:`bot.tools.process.run_process`
(own process group, output cap, timeout) in :func:`host_git_env`. These
commands run *outside* the sandbox, as the bot, so anything the agent can
write is hostile input to them: the workspace, a worktree's ``.git`` file,
the tools' private ``HOME`` (and its ``.gitconfig``), ``/tmp``. Therefore:

- system and global configuration are not read (``GIT_CONFIG_NOSYSTEM``,
  ``GIT_CONFIG_GLOBAL=/dev/null``), ``HOME`` and ``XDG_CONFIG_HOME`` point at
  an empty directory of the bot's own, never the tools' HOME;
- settings that run a program are forced off through ``GIT_CONFIG_COUNT``
  (command-line scope, which beats every file, ``include.path`` included,
  and reaches the git processes that a ``pr_command`` such as ``gh`` starts):
  hooks, fsmonitor, pager, editors, credential helpers, ssh and proxy commands;
  only ``file``, ``git``, ``http(s)`` and ``ssh`` transports (no ``ext::``);
- the repository is named explicitly (``--git-dir``/``--work-tree``), never
  discovered from a ``.git`` file the agent could have rewritten: the bot
  records where each git directory is when it creates or first sees it;
- diffs never run external diff drivers or textconv filters
  (``--no-ext-diff --no-textconv`` on every diff the bot makes).

What remains is the repository's own ``.git/config``, which the sandbox mounts
read-only and the file tools refuse to write (see ``docs/security.md``).
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bot.tools.base import ToolError
from bot.tools.environment import DEFAULT_PATH
from bot.tools.process import ProcessOutcome, run_process

if TYPE_CHECKING:
    from bot.config import Config

GIT_TIMEOUT_S = 60.0
NETWORK_TIMEOUT_S = 180.0
MAX_OUTPUT_BYTES = 2_000_000

# Forced in command-line scope for every git the bot runs (see the module docstring).
# An empty credential.helper resets the list read from files; "none" is git's own
# word for "no proxy command".
FORCED_CONFIG: tuple[tuple[str, str], ...] = (
    ("core.hooksPath", "/dev/null"),
    ("core.fsmonitor", "false"),
    ("core.pager", "cat"),
    ("core.editor", "true"),
    ("sequence.editor", "true"),
    ("core.askPass", ""),
    ("core.sshCommand", "ssh"),
    ("core.gitProxy", "none"),
    ("core.attributesFile", "/dev/null"),
    ("credential.helper", ""),
    ("commit.gpgSign", "false"),
    ("tag.gpgSign", "false"),
    ("gc.auto", "0"),
    ("maintenance.auto", "false"),
    ("advice.detachedHead", "false"),
)
ALLOWED_PROTOCOLS = "file:git:http:https:ssh"


def host_git_home(config: Config | None = None) -> Path:
    """An empty directory of the bot's own for git's ``HOME``: beside the store (which the
    sandbox hides) when there is a config, else a private temporary directory."""
    if config is not None:
        home = _home_beside(str(config.store_path().expanduser().resolve().parent))
        if home is not None:
            return home
    return _temporary_home()


@functools.cache
def _home_beside(store_dir: str) -> Path | None:
    path = Path(store_dir) / "git-home"
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        return None
    return path


@functools.cache
def _temporary_home() -> Path:
    return Path(tempfile.mkdtemp(prefix="threadwright-git-home-"))


def host_git_env(
    config: Config | None = None, *, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of every git the bot runs on the host: nothing inherited but
    ``PATH``, no secrets, no configuration file the agent could have written."""
    source = os.environ if base is None else base
    home = str(host_git_home(config))
    env = {
        "PATH": source.get("PATH") or DEFAULT_PATH,
        "HOME": home,
        "XDG_CONFIG_HOME": home,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TERM": "dumb",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_ATTR_NOSYSTEM": "1",
        "GIT_ALLOW_PROTOCOL": ALLOWED_PROTOCOLS,
        "GIT_PAGER": "cat",
        "GIT_EDITOR": "true",
        "GIT_CONFIG_COUNT": str(len(FORCED_CONFIG)),
    }
    for index, (key, value) in enumerate(FORCED_CONFIG):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    return env


class WorkspaceError(Exception):
    """A workspace could not be prepared or changed; the message says why, for the user."""


class GitError(WorkspaceError):
    """A git command failed; the message carries the command and git's own words."""

    def __init__(self, args: list[str], outcome: ProcessOutcome | None, detail: str = "") -> None:
        self.command = args
        self.outcome = outcome
        if not detail and outcome is not None:
            detail = (outcome.stderr or outcome.stdout).strip()
            if outcome.timed_out:
                detail = f"timed out after {outcome.timeout:g} s"
        command = " ".join(["git", *args])
        self.detail = detail or "failed"
        super().__init__(f"{command}: {self.detail}")


@dataclass(frozen=True, slots=True)
class Repository:
    """Where git's data and the work tree are, recorded when the bot could trust them."""

    git_dir: Path
    work_tree: Path | None = None

    def options(self) -> list[str]:
        options = [f"--git-dir={self.git_dir}"]
        if self.work_tree is not None:
            options.append(f"--work-tree={self.work_tree}")
        return options


@dataclass(slots=True)
class Git:
    """A git runner bound to one environment (see the module docstring)."""

    env: Mapping[str, str]
    timeout: float = GIT_TIMEOUT_S
    identity: tuple[str, str] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    def argv(
        self, args: list[str], *, identify: bool = False, repo: Repository | None = None
    ) -> list[str]:
        prefix = ["git", "--no-pager"]
        if repo is not None:
            prefix += repo.options()
        if identify and self.identity is not None:
            name, email = self.identity
            prefix += ["-c", f"user.name={name}", "-c", f"user.email={email}"]
        return [*prefix, *args]

    async def run(
        self,
        cwd: Path,
        *args: str,
        check: bool = True,
        identify: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109 - passed to run_process
        env: Mapping[str, str] | None = None,
        repo: Repository | None = None,
    ) -> ProcessOutcome:
        """Run ``git args`` in ``cwd`` (on ``repo`` when given, rather than the repository
        git would discover there); raise :class:`GitError` on failure when ``check``."""
        argv = self.argv(list(args), identify=identify, repo=repo)
        try:
            outcome = await run_process(
                argv,
                cwd=cwd,
                env={**self.env, **self.extra_env, **(env or {})},
                timeout=timeout or self.timeout,
                max_output_bytes=MAX_OUTPUT_BYTES,
            )
        except ToolError as exc:
            raise GitError(list(args), None, str(exc)) from None
        if check and (outcome.exit_code != 0 or outcome.timed_out):
            raise GitError(list(args), outcome)
        return outcome

    async def out(
        self, cwd: Path, *args: str, identify: bool = False, repo: Repository | None = None
    ) -> str:
        """Stdout of a successful ``git args``, trailing whitespace removed."""
        outcome = await self.run(cwd, *args, identify=identify, repo=repo)
        return outcome.stdout.rstrip()

    async def ok(self, cwd: Path, *args: str, repo: Repository | None = None) -> bool:
        """True when ``git args`` exits 0 (for questions like ``rev-parse --verify``)."""
        outcome = await self.run(cwd, *args, check=False, repo=repo)
        return outcome.exit_code == 0 and not outcome.timed_out
