"""The search tools: ``grep`` (regex over file contents) and ``glob`` (file names).

Both search the files a developer would: in a git repository the listing is
``git ls-files --cached --others --exclude-standard`` (tracked files plus
untracked ones not ignored by ``.gitignore``); elsewhere a directory walk
that skips ``.git`` and the usual junk (``node_modules``, ``.venv``,
``__pycache__``, …). Symlinks are never followed, so nothing outside the
workspace is read.

Why grep matches in a child process: Python's ``re`` backtracks, so a
pattern like ``(a+)+$`` on a long line of ``a``s runs for ages inside one
``re.search`` call, which holds the GIL and cannot be interrupted from a
thread. The matching therefore runs in a short-lived ``python -c`` worker
through :func:`~bot.tools.process.run_process`, under the same time budget
as a shell command (``tools.bash.timeout``); a pattern that overruns is
killed and reported as such. The pattern is compiled here first, so an
invalid regex is reported without starting anything.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bot import hookimpl
from bot.tools.base import ToolContext, ToolError, ToolResult
from bot.tools.process import run_process
from bot.tools.workspace import relative_display, resolve_in_workspace
from bot.workspaces.git import host_git_env

if TYPE_CHECKING:
    from collections.abc import Callable

    from bot.config import Config

SKIPPED_DIRS = frozenset(
    {".git", ".hg", ".svn", "node_modules", ".venv", "venv", "__pycache__", ".tox"}
    | {".mypy_cache", ".pytest_cache", ".ruff_cache"}
)
MAX_LISTED_FILES = 200_000
# How much of a matching line grep shows.
MATCH_TEXT_CHARS = 300
_LISTING_CAP_BYTES = 64 * 1024 * 1024

_GREP_WORKER = r"""
import json, os, re, stat, sys
opts = json.loads(sys.argv[1])
rx = re.compile(opts["pattern"], opts["flags"])
limit, width = opts["limit"], opts["width"]
found = searched = large = 0
for path in sys.stdin.buffer.read().decode("utf-8", "surrogateescape").split("\0"):
    try:
        info = os.lstat(path)
        if not path or not stat.S_ISREG(info.st_mode):
            continue
        if info.st_size > opts["max_bytes"]:
            large += 1
            continue
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError:
        continue
    if b"\0" in data[:8192]:
        continue
    searched += 1
    lines = data.decode("utf-8", "replace").split("\n")
    if lines[-1] == "":
        lines.pop()
    for number, line in enumerate(lines, 1):
        line = line.rstrip("\r")
        match = rx.search(line)
        if match is None:
            continue
        found += 1
        if found > limit:
            break
        if len(line) > width:
            start = max(0, match.start() - width // 4)
            line = ("…" if start else "") + line[start:start + width] + "…"
        print(json.dumps([path, number, line]))
    if found > limit:
        break
print(json.dumps({"searched": searched, "large": large, "capped": found > limit}))
"""


async def grep(
    ctx: ToolContext,
    pattern: str,
    path: str = ".",
    glob: str | None = None,
    ignore_case: bool = False,
    max_results: int | None = None,
) -> ToolResult:
    """Search file contents with a regular expression; prints `path:line: text` per match.

    Searches text files under path, skipping .git, binary files and files ignored by git.

    Args:
        pattern: A Python regular expression, matched against each line.
        path: File or directory to search, relative to the workspace root.
        glob: Only search files matching this glob, e.g. `*.py` (any depth) or `src/**/*.ts`.
        ignore_case: Match case-insensitively.
        max_results: Stop after this many matches (capped by the configured limit).
    """
    flags = re.IGNORECASE if ignore_case else 0
    try:
        re.compile(pattern, flags)
    except re.error as exc:
        where = f" at position {exc.pos}" if exc.pos is not None else ""
        raise ToolError(f"invalid regular expression: {exc.msg}{where}") from None
    limit = ctx.config.tools.grep_max_results
    if max_results is not None:
        if max_results < 1:
            raise ToolError("max_results must be 1 or more")
        limit = min(limit, max_results)
    root = resolve_in_workspace(ctx.workspace, path)
    files = await _list_files(ctx, root)
    if glob:
        name_only = "/" not in glob
        matcher = compile_glob(glob)
        base = relative_display(ctx.workspace, root)
        files = [
            f
            for f in files
            if matcher.match(f.rsplit("/", 1)[-1] if name_only else _under(f, base))
        ]
    timeout = ctx.config.tools.bash.timeout
    options = {
        "pattern": pattern,
        "flags": int(flags),
        "limit": limit,
        "width": MATCH_TEXT_CHARS,
        "max_bytes": ctx.config.tools.file_ops.max_file_bytes,
    }
    outcome = await run_process(
        [sys.executable, "-I", "-S", "-X", "utf8", "-c", _GREP_WORKER, json.dumps(options)],
        cwd=ctx.workspace,
        env={"LC_ALL": "C.UTF-8"},
        timeout=timeout,
        max_output_bytes=8 * 1024 * 1024,
        stdin="\0".join(files).encode("utf-8", "surrogateescape"),
        limits=None,
    )
    if outcome.timed_out:
        raise ToolError(
            f"grep stopped after {timeout:g} s: the pattern may backtrack catastrophically "
            "(nested quantifiers such as (a+)+ or (.*)*) or the search is too broad; "
            "simplify the pattern or narrow path/glob"
        )
    if outcome.exit_code != 0:
        raise ToolError(f"grep failed: {outcome.stderr.strip()[-500:]}")
    return _grep_result(outcome.stdout, pattern, limit)


def _grep_result(worker_output: str, pattern: str, limit: int) -> ToolResult:
    matches: list[str] = []
    stats: dict[str, int | bool] = {"searched": 0, "large": 0, "capped": False}
    for raw in worker_output.splitlines():
        record = json.loads(raw)
        if isinstance(record, dict):
            stats = record
        else:
            file, number, text = record
            matches.append(f"{file}:{number}: {text}")
    notes: list[str] = []
    if stats["capped"]:
        notes.append(f"[results capped at {limit}: narrow the pattern, path or glob]")
    if stats["large"]:
        notes.append(f"[{stats['large']} file(s) over the file-size limit were not searched]")
    if not matches:
        body = f"no matches for {pattern!r} in {stats['searched']} file(s)"
    else:
        body = "\n".join(matches)
    return ToolResult(
        ok=True,
        stdout="\n".join([body, *notes]),
        truncated=bool(stats["capped"]),
        metadata={
            "matches": len(matches),
            "files_searched": stats["searched"],
            "capped": bool(stats["capped"]),
            "summary": f"{len(matches)} match(es)" + (" (capped)" if stats["capped"] else ""),
        },
    )


async def glob(ctx: ToolContext, pattern: str, path: str = ".") -> ToolResult:
    """Find files by name pattern; prints workspace-relative paths, sorted by name.

    Lists files only (not directories), skipping .git and files ignored by git.

    Args:
        pattern: A glob relative to path: `*` and `?` within a name, `**` across
            directories, `{a,b}` alternatives, e.g. `**/*.py` or `src/*.{ts,tsx}`.
        path: Directory to search from, relative to the workspace root.
    """
    if not pattern.strip():
        raise ToolError("pattern is empty")
    if pattern.startswith("/") or ".." in pattern.split("/"):
        raise ToolError("pattern must be relative to path (no leading / and no ..)")
    root = resolve_in_workspace(ctx.workspace, path)
    if await asyncio.to_thread(_kind_of, root) != "dir":
        raise ToolError(f"{path} is not a directory in the workspace")
    base = relative_display(ctx.workspace, root)
    matcher = compile_glob(pattern)
    files = await _list_files(ctx, root)
    found = sorted(f for f in files if matcher.match(_under(f, base)))
    limit = ctx.config.tools.grep_max_results
    shown = found[:limit]
    lines = shown or [f"no files match {pattern!r} under {base}"]
    if len(found) > limit:
        lines.append(f"[{len(found)} files match; showing the first {limit}: narrow the pattern]")
    return ToolResult(
        ok=True,
        stdout="\n".join(lines),
        truncated=len(found) > limit,
        metadata={"matches": len(found), "summary": f"{len(found)} file(s)"},
    )


def compile_glob(pattern: str) -> re.Pattern[str]:
    """A regex for a path glob: ``*``/``?`` stay in one segment, ``**`` crosses them."""
    return re.compile(f"(?s:{_translate(pattern)})\\Z")


def _translate(pattern: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[" and (close := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1 : close].replace("\\", "\\\\")
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = close
        elif char == "{" and (close := pattern.find("}", i)) != -1 and "," in pattern[i:close]:
            options = pattern[i + 1 : close].split(",")
            out.append("(?:" + "|".join(_translate(option) for option in options) + ")")
            i = close
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


def _under(file: str, base: str) -> str:
    """``file`` (workspace-relative) relative to the search root ``base``."""
    return file if base == "." else file[len(base) + 1 :]


async def _list_files(ctx: ToolContext, root: Path) -> list[str]:
    """Workspace-relative POSIX paths of the candidate files under ``root``."""
    base = relative_display(ctx.workspace, root)
    kind = await asyncio.to_thread(_kind_of, root)
    if kind == "file":
        return [base]
    if kind != "dir":
        raise ToolError(f"no such file or directory: {base}")
    listed = await _git_files(ctx, base)
    if listed is None:
        listed = await asyncio.to_thread(_walk_files, ctx.workspace, root)
    return listed


async def _git_files(ctx: ToolContext, base: str) -> list[str] | None:
    """The git listing, or None when the workspace is not (usable as) a git repository."""
    argv = [
        "git",
        "--no-pager",
        "ls-files",
        "--cached",
        "--others",
        "--exclude-standard",
        "-z",
        "--",
        base,
    ]
    try:
        outcome = await run_process(
            argv,
            cwd=ctx.workspace,
            # This git runs on the host, outside the sandbox: never with the tools' HOME
            # (its .gitconfig is the agent's to write) and with fsmonitor and the other
            # program-running settings forced off.
            env=host_git_env(ctx.config),
            timeout=ctx.config.tools.bash.timeout,
            max_output_bytes=_LISTING_CAP_BYTES,
            limits=None,
        )
    except ToolError:  # git is not installed
        return None
    if outcome.exit_code != 0:
        return None
    if outcome.truncated:
        raise ToolError("too many files to search here; narrow path")
    # A conflicted file is listed once per stage; keep the first.
    return list(dict.fromkeys(name for name in outcome.stdout.split("\0") if name))


def _kind_of(path: Path) -> str | None:
    if path.is_dir():
        return "dir"
    return "file" if path.is_file() else None


def _walk_files(workspace: Path, root: Path) -> list[str]:
    files: list[str] = []
    real_workspace = os.path.realpath(workspace)
    for directory, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS)
        rel_dir = os.path.relpath(directory, real_workspace)
        for name in sorted(filenames):
            files.append(Path(rel_dir, name).as_posix() if rel_dir != "." else name)
            if len(files) >= MAX_LISTED_FILES:
                return files
    return files


@hookimpl
def register_tools(register: Callable[..., None], config: Config) -> None:
    register(grep)
    register(glob)
