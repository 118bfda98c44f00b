"""The file tools: ``read_file``, ``write_file`` and ``edit_file``, confined to the workspace.

Paths go through :func:`bot.tools.workspace.resolve_in_workspace`, so nothing
outside the workspace (or inside ``.git``, for writes) is reachable. Reads
show numbered lines in ranges of at most ``tools.file_ops.max_read_lines``.
Writes are atomic (a temporary file in the same directory, then
``os.replace``) and keep an existing file's permissions. With
``tools.file_ops.write_validation`` on, Python, JSON, YAML and TOML content
that does not parse is refused before anything touches the disk, so a
broken edit never lands half-way. Blocking file work runs in a thread.
"""

from __future__ import annotations

import ast
import asyncio
import difflib
import json
import os
import re
import stat
import tomllib
from pathlib import Path
from secrets import token_hex
from typing import TYPE_CHECKING, Any

import yaml

from bot import hookimpl
from bot.tools.base import ToolContext, ToolError, ToolResult
from bot.tools.workspace import looks_binary, relative_display, resolve_in_workspace

if TYPE_CHECKING:
    from collections.abc import Callable

    from bot.config import Config

# A single line longer than this is cut in read_file output (minified code).
MAX_LINE_CHARS = 2000
DIFF_EXCERPT_LINES = 80
DIFF_EXCERPT_CHARS = 4000
_LINE_NUMBER_PREFIX = re.compile(r"^\s*\d+\t", re.MULTILINE)


async def read_file(
    ctx: ToolContext, path: str, start_line: int = 1, end_line: int | None = None
) -> ToolResult:
    """Read a text file in the workspace, with line numbers.

    Long files are returned in ranges; the output says how to read the next one.

    Args:
        path: File path, relative to the workspace root.
        start_line: First line to show (1-based).
        end_line: Last line to show (inclusive); default: as many as the per-call limit allows.
    """
    if start_line < 1:
        raise ToolError("start_line must be 1 or more")
    if end_line is not None and end_line < start_line:
        raise ToolError(f"end_line ({end_line}) is before start_line ({start_line})")
    real = resolve_in_workspace(ctx.workspace, path)
    shown = relative_display(ctx.workspace, real)
    limits = ctx.config.tools.file_ops
    text = await asyncio.to_thread(_read_text, real, shown, limits.max_file_bytes, strict=False)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    total = len(lines)
    if total == 0:
        return ToolResult(ok=True, stdout=f"[{shown} is empty]", metadata={"path": shown})
    if start_line > total:
        raise ToolError(f"start_line {start_line} is past the end: {shown} has {total} lines")
    last = min(total, start_line + limits.max_read_lines - 1)
    if end_line is not None:
        last = min(last, end_line)
    out: list[str] = []
    cut_lines = False
    for number in range(start_line, last + 1):
        line = lines[number - 1].removesuffix("\r")
        if len(line) > MAX_LINE_CHARS:
            line = f"{line[:MAX_LINE_CHARS]} … [{len(line) - MAX_LINE_CHARS:,} more characters]"
            cut_lines = True
        out.append(f"{number:>6}\t{line}")
    wanted_last = total if end_line is None else min(end_line, total)
    if last < wanted_last:
        out.append(
            f"[showing lines {start_line}-{last} of {total} (at most {limits.max_read_lines} "
            f"per call); call read_file with start_line={last + 1} to read on]"
        )
    return ToolResult(
        ok=True,
        stdout="\n".join(out),
        truncated=cut_lines,
        metadata={
            "path": shown,
            "start_line": start_line,
            "end_line": last,
            "total_lines": total,
            "summary": f"{shown} lines {start_line}-{last} of {total}",
        },
    )


async def write_file(ctx: ToolContext, path: str, content: str) -> ToolResult:
    """Create or overwrite a file in the workspace with the given content.

    Parent directories are created. Prefer edit_file for changing part of an existing file.

    Args:
        path: File path, relative to the workspace root.
        content: The complete new content of the file.
    """
    limits = ctx.config.tools.file_ops
    data = content.encode("utf-8")
    if len(data) > limits.max_file_bytes:
        raise ToolError(
            f"content is {len(data):,} bytes, over the {limits.max_file_bytes:,}-byte limit; "
            "nothing was written"
        )
    real = resolve_in_workspace(ctx.workspace, path, for_write=True)
    shown = relative_display(ctx.workspace, real)
    if limits.write_validation:
        problem = validation_problem(real, content)
        if problem:
            raise ToolError(
                f"{shown} was not written: {problem}. Nothing was written; "
                "fix the content and call write_file again"
            )
    old = await asyncio.to_thread(_replace_file, real, shown, data, limits.max_file_bytes)
    added, removed = _diff_stat(old or "", content)
    created = old is None
    verb = "created" if created else "wrote"
    stat_text = f"+{added} -{removed}"
    return ToolResult(
        ok=True,
        stdout=f"{verb} {shown} ({len(data):,} bytes, {stat_text})",
        metadata={
            "path": shown,
            "bytes_written": len(data),
            "diff_stat": stat_text,
            "created": created,
            "summary": f"{verb} {shown} ({stat_text})",
        },
    )


async def edit_file(
    ctx: ToolContext, path: str, old_string: str, new_string: str, replace_all: bool = False
) -> ToolResult:
    """Replace an exact piece of text in an existing file.

    old_string must match the file exactly, whitespace included, and occur
    once unless replace_all is true. Include a few surrounding lines to make it unique.

    Args:
        path: File path, relative to the workspace root.
        old_string: The exact text to replace (without read_file's line numbers).
        new_string: The text to put in its place.
        replace_all: Replace every occurrence instead of requiring exactly one.
    """
    if not old_string:
        raise ToolError("old_string is empty; use write_file to create or replace a whole file")
    if old_string == new_string:
        raise ToolError("old_string and new_string are the same; nothing to change")
    real = resolve_in_workspace(ctx.workspace, path, for_write=True)
    shown = relative_display(ctx.workspace, real)
    limits = ctx.config.tools.file_ops
    text = await asyncio.to_thread(_read_text, real, shown, limits.max_file_bytes, strict=True)
    old, new = old_string, new_string
    count = text.count(old)
    if not count and "\r\n" in text and "\n" in old and "\r\n" not in old:
        # The model writes "\n"; a CRLF file wants the same edit in CRLF.
        old = old.replace("\n", "\r\n")
        new = new.replace("\r\n", "\n").replace("\n", "\r\n")
        count = text.count(old)
    if not count:
        raise ToolError(_no_match_message(text, old_string, shown))
    if count > 1 and not replace_all:
        numbers = ", ".join(str(n) for n in _match_lines(text, old)[:20])
        raise ToolError(
            f"old_string occurs {count} times in {shown} (lines {numbers}); include more "
            "surrounding lines to make it unique, or pass replace_all=true to change all of them"
        )
    updated = text.replace(old, new) if replace_all else text.replace(old, new, 1)
    data = updated.encode("utf-8")
    if len(data) > limits.max_file_bytes:
        raise ToolError(
            f"the edited file would be over {limits.max_file_bytes:,} bytes; not written"
        )
    if limits.write_validation:
        problem = validation_problem(real, updated)
        if problem:
            raise ToolError(f"{shown} was not changed: after this edit {problem}")
    await asyncio.to_thread(_replace_file, real, shown, data, limits.max_file_bytes)
    replaced = count if replace_all else 1
    added, removed = _diff_stat(text, updated)
    stat_text = f"+{added} -{removed}"
    plural = "s" if replaced != 1 else ""
    return ToolResult(
        ok=True,
        stdout=f"edited {shown}: {replaced} replacement{plural} ({stat_text})\n"
        + _diff_excerpt(text, updated, shown),
        metadata={
            "path": shown,
            "replacements": replaced,
            "diff_stat": stat_text,
            "summary": f"edited {shown} ({stat_text})",
        },
    )


def _read_text(real: Path, shown: str, max_bytes: int, *, strict: bool) -> str:
    try:
        info = os.stat(real)
        if stat.S_ISDIR(info.st_mode):
            raise ToolError(f"{shown} is a directory, not a file; use glob to list files")
        if not stat.S_ISREG(info.st_mode):
            raise ToolError(f"{shown} is not a regular file")
        if info.st_size > max_bytes:
            raise ToolError(
                f"{shown} is {info.st_size:,} bytes, over the {max_bytes:,}-byte limit of the "
                "file tools; use grep to find the part you need, or bash (sed -n '100,200p')"
            )
        with open(real, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except (FileNotFoundError, NotADirectoryError):
        raise ToolError(f"no such file: {shown}") from None
    except PermissionError:
        raise ToolError(f"permission denied: {shown}") from None
    if looks_binary(data):
        raise ToolError(f"{shown} looks like a binary file (it contains NUL bytes); not shown")
    try:
        return data.decode("utf-8", errors="replace" if not strict else "strict")
    except UnicodeDecodeError:
        raise ToolError(f"{shown} is not UTF-8 text; edit it with bash instead") from None


def _replace_file(real: Path, shown: str, data: bytes, max_bytes: int) -> str | None:
    """Atomically write ``data`` to ``real``; return the old text, or None if it is new."""
    old: str | None = None
    mode: int | None = None
    try:
        info = os.stat(real)
    except FileNotFoundError:
        pass
    except NotADirectoryError:
        raise ToolError(f"cannot write {shown}: a parent in its path is a file") from None
    else:
        if stat.S_ISDIR(info.st_mode):
            raise ToolError(f"{shown} is a directory; give a file path")
        mode = stat.S_IMODE(info.st_mode)
        if stat.S_ISREG(info.st_mode) and info.st_size <= max_bytes:
            old = real.read_bytes().decode("utf-8", errors="replace")
        else:
            old = ""
    try:
        real.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ToolError(f"cannot write {shown}: a parent in its path is a file") from None
    temp = real.parent / f".{real.name}.{token_hex(4)}.tmp"
    # A new file gets 0666 less the umask, like any editor; an old one keeps its mode.
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if mode is None else mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(temp, mode)
        os.replace(temp, real)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return old


class _SyntaxOnlyYamlLoader(yaml.SafeLoader):
    """Safe loading that accepts any tag (``!Ref``, ``!!python/…``): only syntax is judged."""


def _ignore_tag(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    return None


_SyntaxOnlyYamlLoader.add_constructor(None, _ignore_tag)

# JSON files that by convention allow comments and trailing commas.
_JSON_WITH_COMMENTS = re.compile(r"^(tsconfig|jsconfig)(\..+)?\.json$|^devcontainer\.json$")


def validation_problem(path: Path, content: str) -> str | None:
    """Why ``content`` is not valid for ``path``'s format, or None (also for unknown formats)."""
    suffix = path.suffix.lower()
    if suffix in (".py", ".pyi"):
        try:
            ast.parse(content, filename=path.name)
        except SyntaxError as exc:
            where = f"line {exc.lineno}, column {exc.offset}" if exc.lineno else "somewhere"
            source = f": {exc.text.strip()!r}" if exc.text and exc.text.strip() else ""
            return f"it is not valid Python ({where}: {exc.msg}{source})"
        except ValueError as exc:
            return f"it is not valid Python ({exc})"
    elif suffix == ".json":
        if _JSON_WITH_COMMENTS.match(path.name) or path.parent.name == ".vscode":
            return None
        try:
            json.loads(content)
        except json.JSONDecodeError as exc:
            return f"it is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
    elif suffix in (".yaml", ".yml"):
        try:
            for _document in yaml.load_all(content, Loader=_SyntaxOnlyYamlLoader):
                pass
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
            problem = getattr(exc, "problem", None) or str(exc)
            return f"it is not valid YAML ({where}{problem})"
    elif suffix == ".toml":
        try:
            tomllib.loads(content)
        except tomllib.TOMLDecodeError as exc:
            return f"it is not valid TOML ({exc})"
    return None


def _diff_stat(old: str, new: str) -> tuple[int, int]:
    added = removed = 0
    matcher = difflib.SequenceMatcher(None, old.splitlines(), new.splitlines())
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag in ("replace", "delete"):
            removed += i2 - i1
        if tag in ("replace", "insert"):
            added += j2 - j1
    return added, removed


def _diff_excerpt(old: str, new: str, shown: str) -> str:
    diff = list(
        difflib.unified_diff(
            old.splitlines(), new.splitlines(), f"a/{shown}", f"b/{shown}", n=2, lineterm=""
        )
    )
    excerpt = "\n".join(diff[:DIFF_EXCERPT_LINES])
    if len(excerpt) > DIFF_EXCERPT_CHARS:
        excerpt = excerpt[:DIFF_EXCERPT_CHARS]
    if len(diff) > DIFF_EXCERPT_LINES or len(excerpt) == DIFF_EXCERPT_CHARS:
        excerpt += "\n[diff excerpt cut]"
    return excerpt


def _match_lines(text: str, needle: str) -> list[int]:
    numbers: list[int] = []
    start = text.find(needle)
    while start != -1:
        numbers.append(text.count("\n", 0, start) + 1)
        start = text.find(needle, start + len(needle))
    return numbers


def _no_match_message(text: str, old_string: str, shown: str) -> str:
    message = f"old_string was not found in {shown}"
    if _LINE_NUMBER_PREFIX.search(old_string):
        return message + (
            "; it seems to include read_file's line-number prefixes (spaces, a number, "
            "a tab): leave those out and copy only the file's text"
        )
    tokens = old_string.split()
    if tokens:
        loose = re.search(r"\s+".join(re.escape(token) for token in tokens), text)
        if loose:
            first = text.count("\n", 0, loose.start()) + 1
            last = text.count("\n", 0, loose.end()) + 1
            lines = text.split("\n")[first - 1 : min(last, first + 5)]
            shown_lines = "\n".join(f"{first + i:>6}\t{line}" for i, line in enumerate(lines))
            return message + (
                f"; it matches at line {first} if whitespace is ignored, so check "
                f"indentation, tabs and line breaks. The file has there:\n{shown_lines}"
            )
        first_line = next(line.strip() for line in old_string.splitlines() if line.strip())
        near = [i + 1 for i, line in enumerate(text.split("\n")) if first_line in line][:5]
        if near:
            where = ", ".join(str(n) for n in near)
            return message + (
                f"; its first line appears at line {where}, but what follows differs. "
                "Read that range again and copy it exactly"
            )
    return message + "; read the file again with read_file and copy the text exactly"


@hookimpl
def register_tools(register: Callable[..., None], config: Config) -> None:
    register(read_file)
    register(write_file)
    register(edit_file)
