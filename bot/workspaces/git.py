"""Running git for the host: bounded, off the event loop, in a scrubbed environment.

Every git command the workspace code runs goes through
:func:`bot.tools.process.run_process` (own process group, output cap, timeout)
with the tools' environment: no secrets, a private ``HOME`` (so the user's
``~/.gitconfig`` and credential helpers are out of reach) and
``GIT_TERMINAL_PROMPT=0``. Because that ``HOME`` holds no identity, commits
name their author explicitly with ``-c user.name=… -c user.email=…``.

Each call also turns off what would run code or stall: repository hooks
(``core.hooksPath=/dev/null`` — a hook the agent wrote must never run as the
bot), commit signing (no key in a private ``HOME``) and automatic ``gc`` (two
sessions committing at once must not race a repack).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bot.tools.base import ToolError
from bot.tools.process import ProcessOutcome, run_process

GIT_TIMEOUT_S = 60.0
NETWORK_TIMEOUT_S = 180.0
MAX_OUTPUT_BYTES = 2_000_000
_SAFE_OPTIONS = (
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "commit.gpgSign=false",
    "-c",
    "tag.gpgSign=false",
    "-c",
    "gc.auto=0",
    "-c",
    "maintenance.auto=false",
    "-c",
    "advice.detachedHead=false",
)


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


@dataclass(slots=True)
class Git:
    """A git runner bound to one environment (see the module docstring)."""

    env: Mapping[str, str]
    timeout: float = GIT_TIMEOUT_S
    identity: tuple[str, str] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    def argv(self, args: list[str], *, identify: bool = False) -> list[str]:
        prefix = ["git", *_SAFE_OPTIONS]
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
    ) -> ProcessOutcome:
        """Run ``git args`` in ``cwd``; raise :class:`GitError` on failure when ``check``."""
        argv = self.argv(list(args), identify=identify)
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

    async def out(self, cwd: Path, *args: str, identify: bool = False) -> str:
        """Stdout of a successful ``git args``, trailing whitespace removed."""
        outcome = await self.run(cwd, *args, identify=identify)
        return outcome.stdout.rstrip()

    async def ok(self, cwd: Path, *args: str) -> bool:
        """True when ``git args`` exits 0 (for questions like ``rev-parse --verify``)."""
        outcome = await self.run(cwd, *args, check=False)
        return outcome.exit_code == 0 and not outcome.timed_out
