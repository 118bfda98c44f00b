"""Where directive files live: the layers, one scan of them, and its fingerprint.

:class:`DirectiveLayout` knows the folders (workspace ``.agent/``, the
repository's ``.claude/commands/``, the packaged defaults) and turns them into
an :class:`Inventory`, the list of every file one load reads. Only directory
listings and ``stat`` calls happen here, so a scan is cheap enough to run before
every session (see :meth:`DirectiveLoader.refresh`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bot.directives.directive_set import Fingerprint
from bot.directives.memory import memory_paths
from bot.directives.parse import normalize_name
from bot.directives.skills import SKILL_FILE

PACKAGED_DEFAULTS = Path(__file__).resolve().parent.parent / "defaults"

MAX_SKILL_RESOURCES = 200

LayerName = Literal["agent", "claude", "default"]


@dataclass(frozen=True, slots=True)
class Layer:
    name: LayerName
    root: Path


@dataclass(slots=True)
class Inventory:
    """Every file one load reads, with the name each would get by default."""

    commands: list[tuple[Layer, Path, str]] = field(default_factory=list)
    skills: list[tuple[Layer, Path, str, tuple[Path, ...]]] = field(default_factory=list)
    skill_dirs_without_file: list[Path] = field(default_factory=list)
    agents: list[tuple[Layer, Path, str]] = field(default_factory=list)
    system_files: list[Path] = field(default_factory=list)
    memory_files: list[Path] = field(default_factory=list)

    def files(self) -> Iterator[Path]:
        yield from (path for _, path, _ in self.commands)
        for _, path, _, resources in self.skills:
            yield path
            yield from resources
        yield from (path for _, path, _ in self.agents)
        yield from self.system_files
        yield from self.memory_files

    def fingerprint(self) -> Fingerprint:
        stamps: list[tuple[str, int, int]] = []
        for path in self.files():
            try:
                stat = path.stat()
            except OSError:
                continue  # deleted since the scan; the next check sees it gone
            stamps.append((str(path), stat.st_mtime_ns, stat.st_size))
        return tuple(sorted(stamps))


@dataclass(frozen=True, slots=True)
class DirectiveLayout:
    workspace: Path
    agent_dir: str = ".agent"
    defaults_dir: Path | None = PACKAGED_DEFAULTS
    read_claude_commands: bool = True

    def watched_directories(self) -> list[Path]:
        """The workspace folders that exist now and hold directives."""
        candidates = [self.workspace / self.agent_dir]
        if self.read_claude_commands:
            candidates.append(self.workspace / ".claude" / "commands")
        return [path for path in candidates if path.is_dir()]

    def layers(self, kind: Literal["commands", "skills", "agents"]) -> list[Layer]:
        """Existing folders for ``kind``, in lookup order, each real folder once."""
        layers = [Layer("agent", self.workspace / self.agent_dir / kind)]
        if kind == "commands" and self.read_claude_commands:
            layers.append(Layer("claude", self.workspace / ".claude" / "commands"))
        if self.defaults_dir is not None:
            layers.append(Layer("default", self.defaults_dir / kind))
        unique: list[Layer] = []
        seen: set[Path] = set()
        for layer in layers:
            resolved = layer.root.resolve()
            if resolved not in seen and layer.root.is_dir():
                seen.add(resolved)
                unique.append(layer)
        return unique

    def scan(self) -> Inventory:
        inventory = Inventory()
        for layer in self.layers("commands"):
            for path in _markdown_files(layer.root, recursive=True):
                # Subfolders namespace the name: git/commit.md is git:commit.
                parts = path.relative_to(layer.root).with_suffix("").parts
                inventory.commands.append((layer, path, normalize_name(":".join(parts)) or ""))
        for layer in self.layers("skills"):
            for folder in sorted(p for p in _list_dir(layer.root) if _visible_dir(p)):
                skill_file = folder / SKILL_FILE
                if not skill_file.is_file():
                    inventory.skill_dirs_without_file.append(folder)
                    continue
                resources = tuple(
                    p for p in _all_files(folder)[:MAX_SKILL_RESOURCES] if p != skill_file
                )
                default_name = normalize_name(folder.name) or ""
                inventory.skills.append((layer, skill_file, default_name, resources))
        for layer in self.layers("agents"):
            for path in _markdown_files(layer.root, recursive=False):
                inventory.agents.append((layer, path, normalize_name(path.stem) or ""))
        system_candidates = [self.workspace / self.agent_dir / "system.md"]
        if self.defaults_dir is not None:
            system_candidates.append(self.defaults_dir / "system.md")
        inventory.system_files = [path for path in system_candidates if path.is_file()]
        inventory.memory_files = memory_paths(self.workspace)
        return inventory


def _visible(name: str) -> bool:
    return not name.startswith(".") and name != "__pycache__"


def _visible_dir(path: Path) -> bool:
    return _visible(path.name) and path.is_dir()


def _list_dir(root: Path) -> list[Path]:
    try:
        return list(root.iterdir())
    except OSError:
        return []  # removed or unreadable since it was found: treated as empty


def _markdown_files(root: Path, *, recursive: bool) -> list[Path]:
    if not recursive:
        return sorted(
            p for p in _list_dir(root) if _visible(p.name) and p.suffix == ".md" and p.is_file()
        )
    return [p for p in _all_files(root) if p.suffix == ".md"]


def _all_files(root: Path) -> list[Path]:
    found: list[Path] = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if _visible(d))
        base = Path(directory)
        found.extend(base / name for name in sorted(files) if _visible(name))
    return found
