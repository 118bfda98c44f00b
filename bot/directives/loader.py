"""The loader: reads every directive file into a :class:`DirectiveSet`, and keeps it current.

Lookup order, for every kind, first found wins by name:

1. ``<workspace>/<agent_dir>/`` (``.agent/`` by default): ``commands/**/*.md``,
   ``skills/<name>/SKILL.md``, ``agents/*.md``, ``system.md``;
2. ``<workspace>/.claude/commands/**/*.md`` (commands only), so a repository
   set up for Claude Code works as it is;
3. the packaged defaults in ``bot/defaults/`` (same layout as ``.agent/``).

A name taken by an earlier layer hides the later file; the set records each
case in :attr:`DirectiveSet.shadowed` and ``/help`` mentions it when the hidden
file is in the workspace. Two files of one layer claiming one name: the first
in path order wins and the other is an error. Subdirectories namespace command
names: ``commands/git/commit.md`` is ``/git:commit``; a front-matter ``name``
replaces the whole derived name. Hidden files and folders are skipped. The
names ``help``, ``status`` and ``stop`` belong to the host's control commands.

A broken file never stops the others. If it loaded before, the loader keeps
serving its last good version (and says so in the problem), so saving a
half-edited file does not make a command vanish from chat; a file that never
loaded is skipped. A deleted file is gone at the next load.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Literal, TypeVar

from bot.directives.command import Command, command_from_front_matter
from bot.directives.directive_set import BUILTIN_COMMANDS, DirectiveSet, Fingerprint, Shadowing
from bot.directives.discovery import PACKAGED_DEFAULTS, DirectiveLayout, Inventory
from bot.directives.memory import read_project_memory
from bot.directives.parse import FrontMatter, read_text, split_front_matter
from bot.directives.problems import DirectiveError, DirectiveProblem
from bot.directives.skills import SKILL_FILE, Skill, skill_from_front_matter
from bot.directives.subagents import SubAgent, subagent_from_front_matter

# Used only when even the packaged system.md is missing (a broken install).
FALLBACK_SYSTEM_PROMPT = (
    "You are threadwright, a careful coding agent working in {workspace}. "
    "Today is {date}. Your tools: {tools}. Run the tests and report what you changed."
)

log = logging.getLogger(__name__)

Entry = TypeVar("Entry", Command, Skill, SubAgent)


class DirectiveLoader:
    """Loads the :class:`DirectiveSet` for one workspace and keeps it current.

    ``load()`` and ``refresh()`` are synchronous and cheap (a directory scan
    and small reads) and safe to call from any thread. ``watch()`` reloads in
    a worker thread and hands each new set to ``on_change``.
    ``defaults_dir=None`` leaves the packaged defaults out.
    """

    def __init__(
        self,
        workspace: Path,
        agent_dir: str = ".agent",
        *,
        defaults_dir: Path | None = PACKAGED_DEFAULTS,
        read_claude_commands: bool = True,
    ) -> None:
        self.workspace = Path(workspace).expanduser().resolve()
        self.layout = DirectiveLayout(self.workspace, agent_dir, defaults_dir, read_claude_commands)
        self._lock = threading.Lock()
        self._current: DirectiveSet | None = None
        self._last_good: dict[Path, Command | Skill | SubAgent] = {}
        self._last_good_system: dict[Path, str] = {}

    @property
    def current(self) -> DirectiveSet:
        """The latest loaded set; loads one first if nothing was loaded yet."""
        current = self._current
        return current if current is not None else self.load()

    @property
    def has_loaded(self) -> bool:
        return self._current is not None

    def load(self) -> DirectiveSet:
        """Read every directive file now and make the result :attr:`current`."""
        with self._lock:
            inventory = self.layout.scan()
            return self._build(inventory, inventory.fingerprint())

    def refresh(self) -> DirectiveSet:
        """:attr:`current`, reloaded first only if a file was added, removed or changed."""
        return self.reload_if_changed() or self.current

    def reload_if_changed(self) -> DirectiveSet | None:
        """A new set when any file's (path, mtime_ns, size) changed since the last load."""
        with self._lock:
            # The fingerprint is taken before the files are read, so a write
            # racing this load leaves a stale fingerprint and the next check reloads.
            inventory = self.layout.scan()
            fingerprint = inventory.fingerprint()
            if self._current is not None and self._current.fingerprint == fingerprint:
                return None
            return self._build(inventory, fingerprint)

    def watched_directories(self) -> list[Path]:
        return self.layout.watched_directories()

    async def watch(
        self,
        on_change: Callable[[DirectiveSet], Awaitable[None] | None],
        *,
        stop: asyncio.Event,
        debounce_ms: int = 200,
        poll_interval: float = 1.0,
        backend: Literal["auto", "watchfiles", "poll"] = "auto",
    ) -> None:
        """Reload on every change until ``stop`` is set; see :mod:`bot.directives.reload`."""
        # Imported here: reload imports this module for its type hints.
        from bot.directives.reload import watch_directives

        await watch_directives(
            self,
            on_change,
            stop=stop,
            debounce_ms=debounce_ms,
            poll_interval=poll_interval,
            backend=backend,
        )

    # -- building -------------------------------------------------------------

    def _build(self, inventory: Inventory, fingerprint: Fingerprint) -> DirectiveSet:
        problems: list[DirectiveProblem] = []
        shadowed: list[Shadowing] = []
        kept: dict[Path, Command | Skill | SubAgent] = {}

        commands: dict[str, Command] = {}
        for layer, path, default_name in inventory.commands:
            command = self._read_entry(
                path,
                Command,
                partial(command_from_front_matter, default_name=default_name, layer=layer.name),
                problems,
                kept,
            )
            if command is None:
                continue
            if command.name in BUILTIN_COMMANDS:
                problems.append(
                    DirectiveProblem(
                        path,
                        None,
                        "name",
                        f"/{command.name} is a built-in control command; this file is ignored",
                        "warning",
                    )
                )
                continue
            _place(commands, command, "command", problems, shadowed)

        skills: dict[str, Skill] = {}
        for layer, path, default_name, resources in inventory.skills:
            skill = self._read_entry(
                path,
                Skill,
                partial(
                    skill_from_front_matter,
                    default_name=default_name,
                    layer=layer.name,
                    resources=resources,
                ),
                problems,
                kept,
            )
            if skill is not None:
                _place(skills, skill, "skill", problems, shadowed)
        for folder in inventory.skill_dirs_without_file:
            problems.append(
                DirectiveProblem(
                    folder, None, None, f"skill folder has no {SKILL_FILE}; ignored", "warning"
                )
            )

        agents: dict[str, SubAgent] = {}
        for layer, path, default_name in inventory.agents:
            agent = self._read_entry(
                path,
                SubAgent,
                partial(subagent_from_front_matter, default_name=default_name, layer=layer.name),
                problems,
                kept,
            )
            if agent is not None:
                _place(agents, agent, "agent", problems, shadowed)

        template, source = self._system_template(inventory.system_files, problems)
        directive_set = DirectiveSet(
            workspace=self.workspace,
            system_template=template,
            system_source=source,
            commands=commands,
            skills=skills,
            agents=agents,
            problems=problems,
            shadowed=shadowed,
            project_memory=read_project_memory(self.workspace),
            fingerprint=fingerprint,
        )
        self._last_good = kept
        self._current = directive_set
        for problem in problems:
            if problem.severity == "error":
                log.warning("directive problem: %s", problem.format(self.workspace))
        return directive_set

    def _read_entry(
        self,
        path: Path,
        kind: type[Entry],
        build: Callable[[FrontMatter], tuple[Entry, list[DirectiveProblem]]],
        problems: list[DirectiveProblem],
        kept: dict[Path, Command | Skill | SubAgent],
    ) -> Entry | None:
        try:
            entry, warnings = build(split_front_matter(read_text(path), path))
        except DirectiveError as exc:
            previous = self._last_good.get(path)
            if isinstance(previous, kind):
                problems.append(exc.problem.with_note("still using the last version that loaded"))
                kept[path] = previous
                return previous
            problems.append(exc.problem.with_note("file skipped"))
            return None
        problems.extend(warnings)
        kept[path] = entry
        return entry

    def _system_template(
        self, candidates: list[Path], problems: list[DirectiveProblem]
    ) -> tuple[str, Path | None]:
        kept: dict[Path, str] = {}
        chosen: tuple[str, Path | None] | None = None
        for path in candidates:
            try:
                text = split_front_matter(read_text(path), path).body
            except DirectiveError as exc:
                previous = self._last_good_system.get(path)
                if previous is None:
                    problems.append(exc.problem.with_note("using the next system prompt in line"))
                    continue
                problems.append(exc.problem.with_note("still using the last version that loaded"))
                text = previous
            if not text:
                problems.append(DirectiveProblem(path, None, None, "empty; ignored", "warning"))
                continue
            kept[path] = text
            chosen = (text, path)
            break
        self._last_good_system = kept
        if chosen is None:
            if self.layout.defaults_dir is not None:
                problems.append(
                    DirectiveProblem(
                        self.layout.defaults_dir / "system.md",
                        None,
                        None,
                        "no system prompt found; using a minimal built-in one",
                        "warning",
                    )
                )
            return FALLBACK_SYSTEM_PROMPT, None
        return chosen


def _place(
    table: dict[str, Entry],
    entry: Entry,
    kind: Literal["command", "skill", "agent"],
    problems: list[DirectiveProblem],
    shadowed: list[Shadowing],
) -> None:
    winner = table.get(entry.name)
    if winner is None:
        table[entry.name] = entry
    elif winner.layer == entry.layer:
        problems.append(
            DirectiveProblem(
                entry.source,
                None,
                "name",
                f"duplicate {kind} name {entry.name!r}: {winner.source} already defines it; "
                "this file is ignored",
            )
        )
    else:
        shadowed.append(Shadowing(kind, entry.name, winner.source, entry.source, entry.layer))
