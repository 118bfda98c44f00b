"""Skills: instructions the model loads only when a task calls for them.

A skill is a folder ``.agent/skills/<name>/`` holding ``SKILL.md`` (front matter
``name`` and ``description``, then the instructions) and any other files the
instructions refer to. The system prompt lists each skill as ``name:
description`` only; the body (:attr:`Skill.body`, read when the set is loaded so
no file I/O happens in the agent loop) and the resource files (paths, read on
demand) reach the model only when it asks for the skill.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.directives.parse import FrontMatter, FrontMatterFields, normalize_name
from bot.directives.problems import DirectiveError, DirectiveProblem

SKILL_FILE = "SKILL.md"
SKILL_KEYS = ("name", "description")


@dataclass(frozen=True, slots=True)
class Skill:
    """One skill. ``source`` is its SKILL.md; ``resources`` the other files beside it."""

    name: str
    description: str
    source: Path
    body: str = field(repr=False)
    resources: tuple[Path, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    layer: str = "agent"

    @property
    def directory(self) -> Path:
        return self.source.parent

    def as_prompt(self) -> str:
        """What to hand the model when it asks for this skill: body, then resource paths."""
        text = f"# Skill: {self.name}\n\n{self.body}"
        if self.resources:
            listed = "\n".join(f"- {path}" for path in self.resources)
            text += f"\n\nResource files of this skill (read them when needed):\n{listed}"
        return text


def skill_from_front_matter(
    front: FrontMatter, default_name: str, layer: str, resources: tuple[Path, ...]
) -> tuple[Skill, list[DirectiveProblem]]:
    fields = FrontMatterFields(front)
    written_name = fields.text("name")
    name = normalize_name(written_name) if written_name else default_name
    if not name:
        shown = written_name or front.path.parent.name
        raise fields.error("name", f"{shown!r} is not a skill name")
    if not front.body:
        raise DirectiveError(DirectiveProblem(front.path, None, None, "the skill has no body"))
    description = fields.text("description") or ""
    if not description:
        fields.warn(None, "no description: the model cannot tell when to use this skill")
    skill = Skill(
        name=name,
        description=description,
        source=front.path,
        body=front.body,
        resources=resources,
        extra=fields.unread(),
        layer=layer,
    )
    return skill, fields.warnings
