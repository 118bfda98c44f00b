"""A loaded, immutable snapshot of every directive: what a session reads.

A :class:`DirectiveSet` is built by :class:`~bot.directives.loader.DirectiveLoader`
and never changes afterwards; a reload makes a new one. Sessions take the set
current when they start, so a file edited mid-run cannot change a running task.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Literal

from bot.directives.command import Command
from bot.directives.parse import normalize_name
from bot.directives.problems import DirectiveProblem
from bot.directives.skills import Skill
from bot.directives.subagents import SubAgent

# Control commands the host handles itself; a directive file cannot take these names.
BUILTIN_COMMANDS: dict[str, str] = {
    "help": "list the commands",
    "status": "show what the agent is doing in this thread",
    "stop": "stop the running task",
    "diff": "what this thread's branch changed (its own worktree)",
    "undo": "revert the last commit I made on this thread's branch",
}

# (path, mtime_ns, size) for every file a set was built from.
Fingerprint = tuple[tuple[str, int, int], ...]

DirectiveKind = Literal["command", "skill", "agent"]


@dataclass(frozen=True, slots=True)
class Shadowing:
    """``winner`` took ``name``; ``hidden`` (from a later layer) is not used."""

    kind: DirectiveKind
    name: str
    winner: Path
    hidden: Path
    hidden_layer: str


@dataclass(frozen=True, slots=True)
class DirectiveSet:
    workspace: Path
    system_template: str
    system_source: Path | None = None
    commands: dict[str, Command] = field(default_factory=dict)
    skills: dict[str, Skill] = field(default_factory=dict)
    agents: dict[str, SubAgent] = field(default_factory=dict)
    problems: list[DirectiveProblem] = field(default_factory=list)
    shadowed: list[Shadowing] = field(default_factory=list)
    project_memory: str = ""
    fingerprint: Fingerprint = ()

    @property
    def errors(self) -> list[DirectiveProblem]:
        return [p for p in self.problems if p.severity == "error"]

    def find_command(self, name: str) -> Command | None:
        """Look a command up as typed: ``/Refactor``, ``refactor`` or ``git:commit``."""
        key = normalize_name(name)
        return self.commands.get(key) if key else None

    def system_prompt(self, tools: list[str], workspace: Path, *, today: date | None = None) -> str:
        """The persona with ``{workspace}``, ``{date}``, ``{tools}`` filled, then project
        memory, then the skills as ``name: description`` (never their bodies).

        Placeholders are replaced literally, so other braces in the template
        (code samples, JSON) are left alone.
        """
        persona = (
            self.system_template.replace("{workspace}", str(workspace))
            .replace("{date}", (today or date.today()).isoformat())
            .replace("{tools}", ", ".join(tools) if tools else "(none)")
        )
        parts = [persona.strip()]
        if self.project_memory:
            parts.append(
                "# Project memory\n\nNotes the project keeps for agents working in it:\n\n"
                + self.project_memory
            )
        if self.skills:
            listed = "\n".join(
                self._skill_line(skill)
                for skill in sorted(self.skills.values(), key=lambda s: s.name)
            )
            parts.append(
                "# Skills\n\nInstructions for particular kinds of work. When a task matches "
                "a skill, load its instructions before you start (read the file shown, or ask "
                f"for the skill by name).\n\n{listed}"
            )
        return "\n\n".join(parts) + "\n"

    def help_text(self) -> str:
        """Markdown for ``/help``: commands, control commands, shadowed files, broken files."""
        lines = ["**Commands** (start a message with `/name` or `!name`, then any arguments)"]
        if self.commands:
            for command in sorted(self.commands.values(), key=lambda c: c.name):
                usage = f"/{command.name}"
                if command.argument_hint:
                    usage += f" {command.argument_hint}"
                description = command.description or "(no description)"
                lines.append(f"- `{usage}` — {description}")
        else:
            lines.append("- (none defined)")
        lines.append("")
        lines.append("**Control**")
        lines.extend(f"- `/{name}` — {text}" for name, text in BUILTIN_COMMANDS.items())
        # Overriding a packaged default is ordinary customisation; a workspace
        # file hidden by another workspace file is a surprise worth a note.
        surprising = [
            s for s in self.shadowed if s.kind == "command" and s.hidden_layer != "default"
        ]
        if surprising:
            lines.append("")
            lines.append("**Shadowed**")
            for shadow in surprising:
                lines.append(
                    f"- `/{shadow.name}` comes from `{self._shown(shadow.winner)}`; "
                    f"`{self._shown(shadow.hidden)}` is ignored"
                )
        errors = self.errors
        if errors:
            lines.append("")
            lines.append("**Problems** (details: `threadwright commands check`)")
            for problem in errors:
                lines.append(f"- `{problem.location(self.workspace)}` — {problem.message}")
        return "\n".join(lines)

    def _skill_line(self, skill: Skill) -> str:
        line = f"- {skill.name}: {skill.description or '(no description)'}"
        # Only a skill inside the workspace can be read with the file tools.
        if skill.source.is_relative_to(self.workspace):
            line += f" (`{skill.source.relative_to(self.workspace)}`)"
        return line

    def _shown(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.workspace))
        except ValueError:
            return str(path)
