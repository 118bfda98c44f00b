"""Project memory: the repository's own ``AGENTS.md`` and ``CLAUDE.md``.

Both files at the workspace root are read, AGENTS.md first, each capped at
:data:`MEMORY_FILE_LIMIT` bytes (cut at a line break, with a note saying so),
so a huge file cannot crowd the task out of the model's context. When
CLAUDE.md is the same file as AGENTS.md (a symlink, or identical text, a common
way to serve both tools) it is included once. ``@path`` imports, which Claude
Code expands, are left as written.
"""

from __future__ import annotations

import logging
from pathlib import Path

MEMORY_FILES = ("AGENTS.md", "CLAUDE.md")
MEMORY_FILE_LIMIT = 20 * 1024

log = logging.getLogger(__name__)


def memory_paths(workspace: Path) -> list[Path]:
    return [workspace / name for name in MEMORY_FILES if (workspace / name).is_file()]


def read_project_memory(workspace: Path, limit: int = MEMORY_FILE_LIMIT) -> str:
    """The memory files as one Markdown text, each under a ``## <file>`` heading."""
    sections: list[str] = []
    seen_texts: set[str] = set()
    seen_files: set[Path] = set()
    for path in memory_paths(workspace):
        try:
            resolved = path.resolve()
            if resolved in seen_files:
                continue
            seen_files.add(resolved)
            text = _read_capped(path, limit)
        except OSError as exc:
            log.warning("cannot read project memory %s: %s", path, exc)
            continue
        if not text.strip() or text in seen_texts:
            continue
        seen_texts.add(text)
        sections.append(f"## {path.name}\n\n{text.strip()}")
    return "\n\n".join(sections)


def _read_capped(path: Path, limit: int) -> str:
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) <= limit:
        return data.decode("utf-8-sig", errors="replace")
    total = path.stat().st_size
    kept = data[:limit]
    # Cut at the last line break so no line (or UTF-8 sequence) is left half-written.
    newline = kept.rfind(b"\n")
    if newline > 0:
        kept = kept[: newline + 1]
    text = kept.decode("utf-8-sig", errors="ignore")
    note = (
        f"\n[{path.name} truncated: the first {round(len(kept) / 1024)} KB of "
        f"{round(total / 1024)} KB are shown]\n"
    )
    return text + note
