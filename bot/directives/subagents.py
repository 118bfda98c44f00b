"""Sub-agents: named behaviours the host can hand a focused piece of work to.

``.agent/agents/<name>.md`` holds front matter ``name``, ``description``,
``tools`` (list or comma-separated string, Claude names mapped as for
commands; absent means every tool) and ``model``; the body is the sub-agent's
instructions, used as its system prompt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.directives.parse import FrontMatter, FrontMatterFields, normalize_name
from bot.directives.problems import DirectiveError, DirectiveProblem

SUBAGENT_KEYS = ("name", "description", "tools", "model")


@dataclass(frozen=True, slots=True)
class SubAgent:
    name: str
    description: str
    instructions: str
    source: Path
    tools: list[str] | None = None
    tool_patterns: dict[str, list[str]] = field(default_factory=dict)
    model: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    layer: str = "agent"


def subagent_from_front_matter(
    front: FrontMatter, default_name: str, layer: str
) -> tuple[SubAgent, list[DirectiveProblem]]:
    fields = FrontMatterFields(front)
    written_name = fields.text("name")
    name = normalize_name(written_name) if written_name else default_name
    if not name:
        raise fields.error("name", f"{written_name or front.path.stem!r} is not a sub-agent name")
    if not front.body:
        raise DirectiveError(
            DirectiveProblem(front.path, None, None, "the sub-agent has no instructions")
        )
    tools = fields.tools("tools")
    agent = SubAgent(
        name=name,
        description=fields.text("description") or "",
        instructions=front.body,
        source=front.path,
        tools=tools.tools if tools is not None else None,
        tool_patterns=tools.patterns if tools is not None else {},
        model=fields.text("model") or None,
        extra=fields.unread(),
        layer=layer,
    )
    return agent, fields.warnings
