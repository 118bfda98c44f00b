"""Problems found while loading directive files, and how they are shown.

A directive file that cannot be used is skipped, never fatal: the loader turns
the failure into a :class:`DirectiveProblem` (file, line, key, message) and the
other files keep working. ``severity`` separates errors (the file, or one of its
values, was not used) from warnings (the file loaded, but something in it was
ignored, such as an unknown front-matter key).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class DirectiveProblem:
    """One thing wrong with one directive file."""

    file: Path
    line: int | None
    key: str | None
    message: str
    severity: Severity = "error"

    def with_note(self, note: str) -> DirectiveProblem:
        return replace(self, message=f"{self.message}; {note}")

    def location(self, relative_to: Path | None = None) -> str:
        shown = _display_path(self.file, relative_to)
        return f"{shown}:{self.line}" if self.line is not None else shown

    def format(self, relative_to: Path | None = None) -> str:
        key = f" [{self.key}]" if self.key else ""
        return f"{self.location(relative_to)}: {self.severity}{key}: {self.message}"

    def __str__(self) -> str:
        return self.format()


class DirectiveError(Exception):
    """Raised by the file readers; carries the problem the loader records."""

    def __init__(self, problem: DirectiveProblem) -> None:
        super().__init__(problem.format())
        self.problem = problem


def format_problems(problems: Iterable[DirectiveProblem], relative_to: Path | None = None) -> str:
    """One ``path:line: severity [key]: message`` line per problem, errors first.

    Paths are shown relative to ``relative_to`` when they lie under it. With no
    problems the text says so, so a CLI can print the result unconditionally.
    """
    ordered = sorted(
        problems,
        key=lambda p: (p.severity != "error", str(p.file), p.line or 0),
    )
    if not ordered:
        return "No problems found."
    return "\n".join(problem.format(relative_to) for problem in ordered)


def _display_path(path: Path, relative_to: Path | None) -> str:
    if relative_to is not None:
        try:
            return str(path.relative_to(relative_to))
        except ValueError:
            pass
    return str(path)
