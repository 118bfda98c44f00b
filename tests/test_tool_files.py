"""read_file, write_file and edit_file against real files, and path confinement."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from bot.config import Config, load_config
from bot.tools.base import Tool, ToolContext, ToolError
from bot.tools.environment import build_tool_env
from bot.tools.workspace import is_binary_file, resolve_in_workspace
from plugins.tools import files as files_plugin

READ = Tool.from_function(files_plugin.read_file)
WRITE = Tool.from_function(files_plugin.write_file)
EDIT = Tool.from_function(files_plugin.edit_file)


def make_config(tmp_path: Path, **file_ops: Any) -> Config:
    file = tmp_path / "agent_config.yaml"
    file.write_text("{}\n")
    overrides = {"tools": {"file_ops": file_ops}} if file_ops else None
    return load_config(file, env={}, overrides=overrides)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    return path.resolve()


@pytest.fixture
def ctx(tmp_path: Path, workspace: Path) -> ToolContext:
    return context(tmp_path, workspace)


def context(tmp_path: Path, workspace: Path, **file_ops: Any) -> ToolContext:
    config = make_config(tmp_path, **file_ops)
    env = build_tool_env(config, workspace, home=tmp_path / "home")
    return ToolContext(workspace=workspace, config=config, env=env)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory next to the workspace holding a file nobody may touch."""
    path = tmp_path / "outside"
    path.mkdir()
    (path / "secret.txt").write_text("top secret\n")
    return path


# --- reading ---------------------------------------------------------------


async def test_read_numbers_lines(ctx: ToolContext, workspace: Path) -> None:
    (workspace / "a.py").write_text("first\nsecond\nthird\n")
    result = await READ(ctx, {"path": "a.py"})
    assert result.ok is True
    assert result.stdout == "     1\tfirst\n     2\tsecond\n     3\tthird"
    assert result.metadata["total_lines"] == 3


async def test_read_range(ctx: ToolContext, workspace: Path) -> None:
    (workspace / "a.txt").write_text("".join(f"line {n}\n" for n in range(1, 11)))
    result = await READ(ctx, {"path": "a.txt", "start_line": 4, "end_line": 5})
    assert result.stdout == "     4\tline 4\n     5\tline 5"
    past = await READ(ctx, {"path": "a.txt", "start_line": 11})
    assert past.ok is False and "has 10 lines" in (past.error or "")
    backwards = await READ(ctx, {"path": "a.txt", "start_line": 5, "end_line": 2})
    assert backwards.ok is False


async def test_read_is_capped_with_a_note_on_how_to_go_on(tmp_path: Path, workspace: Path) -> None:
    ctx = context(tmp_path, workspace, max_read_lines=3)
    (workspace / "a.txt").write_text("".join(f"line {n}\n" for n in range(1, 11)))
    result = await READ(ctx, {"path": "a.txt"})
    lines = result.stdout.splitlines()
    assert lines[:3] == ["     1\tline 1", "     2\tline 2", "     3\tline 3"]
    assert "start_line=4" in lines[3] and "of 10" in lines[3]
    last = await READ(ctx, {"path": "a.txt", "start_line": 9})
    assert last.stdout == "     9\tline 9\n    10\tline 10"


async def test_read_refuses_binary_big_missing_and_directories(
    tmp_path: Path, workspace: Path
) -> None:
    ctx = context(tmp_path, workspace, max_file_bytes=100)
    (workspace / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (workspace / "big.txt").write_text("x" * 101)
    (workspace / "dir").mkdir()
    assert is_binary_file(workspace / "image.png") and not is_binary_file(workspace / "big.txt")
    binary = await READ(ctx, {"path": "image.png"})
    assert binary.ok is False and "binary" in (binary.error or "")
    big = await READ(ctx, {"path": "big.txt"})
    assert big.ok is False and "over the 100-byte limit" in (big.error or "")
    missing = await READ(ctx, {"path": "nope.txt"})
    assert missing.error == "no such file: nope.txt"
    directory = await READ(ctx, {"path": "dir"})
    assert directory.ok is False and "is a directory" in (directory.error or "")


async def test_read_cuts_very_long_lines(ctx: ToolContext, workspace: Path) -> None:
    (workspace / "min.js").write_text("x" * 5000 + "\n")
    result = await READ(ctx, {"path": "min.js"})
    assert result.truncated is True
    assert "[3,000 more characters]" in result.stdout
    assert len(result.stdout) < 2100


# --- confinement -------------------------------------------------------------


def _escapes(workspace: Path, outside: Path) -> dict[str, str]:
    (workspace / "link.txt").symlink_to(outside / "secret.txt")
    (workspace / "linkdir").symlink_to(outside, target_is_directory=True)
    return {
        "dotdot": "../outside/secret.txt",
        "absolute": "/etc/passwd",
        "symlink": "link.txt",
        "symlinked_parent": "linkdir/secret.txt",
    }


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "symlinked_parent"])
async def test_read_cannot_leave_the_workspace(
    ctx: ToolContext, workspace: Path, outside: Path, kind: str
) -> None:
    path = _escapes(workspace, outside)[kind]
    result = await READ(ctx, {"path": path})
    assert result.ok is False
    assert "outside the workspace" in (result.error or "")
    assert "top secret" not in result.for_model()


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "symlinked_parent"])
async def test_write_cannot_leave_the_workspace(
    ctx: ToolContext, workspace: Path, outside: Path, kind: str
) -> None:
    path = _escapes(workspace, outside)[kind]
    result = await WRITE(ctx, {"path": path, "content": "pwned\n"})
    assert result.ok is False and "outside the workspace" in (result.error or "")
    assert (outside / "secret.txt").read_text() == "top secret\n"
    new_file = await WRITE(ctx, {"path": "linkdir/new.txt", "content": "x"})
    assert new_file.ok is False and not (outside / "new.txt").exists()
    edit = await EDIT(ctx, {"path": path, "old_string": "top", "new_string": "no"})
    assert edit.ok is False and (outside / "secret.txt").read_text() == "top secret\n"


def test_resolution_inside_the_workspace(workspace: Path) -> None:
    (workspace / "sub").mkdir()
    assert resolve_in_workspace(workspace, "sub/../a.txt") == workspace / "a.txt"
    assert resolve_in_workspace(workspace, str(workspace / "sub")) == workspace / "sub"
    assert resolve_in_workspace(workspace, "new/dir/f.txt", for_write=True) == (
        workspace / "new/dir/f.txt"
    )
    with pytest.raises(ToolError, match="empty"):
        resolve_in_workspace(workspace, "")


async def test_git_internals_are_not_writable(ctx: ToolContext, workspace: Path) -> None:
    (workspace / ".git").mkdir()
    (workspace / ".git" / "config").write_text("[core]\n")
    result = await WRITE(ctx, {"path": ".git/config", "content": "[core]\nhooksPath=/tmp\n"})
    assert result.ok is False and ".git" in (result.error or "")
    hook = await WRITE(ctx, {"path": "sub/.git/hooks/pre-commit", "content": "#!/bin/sh\n"})
    assert hook.ok is False
    readable = await READ(ctx, {"path": ".git/config"})
    assert readable.ok is True
    assert (workspace / ".git" / "config").read_text() == "[core]\n"


async def test_a_git_file_target_is_not_writable(ctx: ToolContext, workspace: Path) -> None:
    (workspace / "gitstore").mkdir()
    (workspace / ".git").write_text("gitdir: gitstore\n")
    result = await WRITE(ctx, {"path": "gitstore/config", "content": "x"})
    assert result.ok is False and ".git points to" in (result.error or "")
    assert not (workspace / "gitstore" / "config").exists()
    fine = await WRITE(ctx, {"path": "src/code.txt", "content": "x"})
    assert fine.ok is True


async def test_a_bare_repository_is_not_writable(ctx: ToolContext, workspace: Path) -> None:
    bare = workspace / "mirror.git"
    (bare / "objects").mkdir(parents=True)
    (bare / "HEAD").write_text("ref: refs/heads/main\n")
    result = await WRITE(ctx, {"path": "mirror.git/hooks/post-update", "content": "#!/bin/sh\n"})
    assert result.ok is False and "is a git directory" in (result.error or "")


# --- writing ---------------------------------------------------------------


async def test_write_creates_parents_atomically_with_a_diff_stat(
    ctx: ToolContext, workspace: Path
) -> None:
    result = await WRITE(ctx, {"path": "pkg/mod/a.txt", "content": "one\ntwo\n"})
    assert result.ok is True
    assert (workspace / "pkg/mod/a.txt").read_text() == "one\ntwo\n"
    assert result.metadata["bytes_written"] == 8
    assert result.metadata["diff_stat"] == "+2 -0" and result.metadata["created"] is True
    target = workspace / "pkg/mod/a.txt"
    target.chmod(0o751)
    again = await WRITE(ctx, {"path": "pkg/mod/a.txt", "content": "one\nTWO\nthree\n"})
    assert again.metadata["diff_stat"] == "+2 -1" and again.metadata["created"] is False
    assert stat.S_IMODE(target.stat().st_mode) == 0o751
    assert sorted(os.listdir(workspace / "pkg/mod")) == ["a.txt"]  # no temp file left


async def test_write_size_limit(tmp_path: Path, workspace: Path) -> None:
    ctx = context(tmp_path, workspace, max_file_bytes=10)
    result = await WRITE(ctx, {"path": "a.txt", "content": "x" * 11})
    assert result.ok is False and "nothing was written" in (result.error or "")
    assert not (workspace / "a.txt").exists()


async def test_write_onto_a_directory_fails(ctx: ToolContext, workspace: Path) -> None:
    (workspace / "d").mkdir()
    result = await WRITE(ctx, {"path": "d", "content": "x"})
    assert result.ok is False and "is a directory" in (result.error or "")


INVALID = [
    ("bad.py", "def f(:\n    pass\n", "not valid Python (line 1"),
    ("bad.json", '{"a": 1,}', "not valid JSON (line 1"),
    ("bad.yaml", "a: [1, 2\nb: 3\n", "not valid YAML (line"),
    ("bad.yml", "key: value\n  - broken: [\n", "not valid YAML"),
    ("bad.toml", "a = \n", "not valid TOML"),
]


@pytest.mark.parametrize(("name", "content", "message"), INVALID)
async def test_write_validation_refuses_broken_content(
    ctx: ToolContext, workspace: Path, name: str, content: str, message: str
) -> None:
    (workspace / name).write_text("original\n")
    result = await WRITE(ctx, {"path": name, "content": content})
    assert result.ok is False
    assert message in (result.error or "")
    assert "Nothing was written" in (result.error or "")
    assert (workspace / name).read_text() == "original\n"


@pytest.mark.parametrize(("name", "content", "message"), INVALID)
async def test_write_validation_can_be_turned_off(
    tmp_path: Path, workspace: Path, name: str, content: str, message: str
) -> None:
    ctx = context(tmp_path, workspace, write_validation=False)
    result = await WRITE(ctx, {"path": name, "content": content})
    assert result.ok is True
    assert (workspace / name).read_text() == content


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("ok.py", "def f():\n    return 1\n"),
        ("ok.json", '{"a": [1, 2]}'),
        ("stack.yaml", "Resources:\n  B: !Ref Bucket\n---\nsecond: doc\n"),
        ("ok.toml", "[tool]\nname = 'x'\n"),
        ("tsconfig.json", '{\n  // comments are fine here\n  "compilerOptions": {},\n}\n'),
        ("notes.md", "# anything {goes\n"),
    ],
)
async def test_valid_content_is_written(
    ctx: ToolContext, workspace: Path, name: str, content: str
) -> None:
    result = await WRITE(ctx, {"path": name, "content": content})
    assert result.ok is True, result.error
    assert (workspace / name).read_text() == content


# --- editing ---------------------------------------------------------------


async def test_edit_one_match(ctx: ToolContext, workspace: Path) -> None:
    (workspace / "a.py").write_text("def f():\n    return 1\n\n\ndef g():\n    return 2\n")
    result = await EDIT(
        ctx, {"path": "a.py", "old_string": "    return 1", "new_string": "    return 10"}
    )
    assert result.ok is True, result.error
    assert (workspace / "a.py").read_text() == (
        "def f():\n    return 10\n\n\ndef g():\n    return 2\n"
    )
    assert "-    return 1\n+    return 10" in result.stdout
    assert result.metadata["replacements"] == 1 and result.metadata["diff_stat"] == "+1 -1"


async def test_edit_zero_matches_says_so_with_a_hint(ctx: ToolContext, workspace: Path) -> None:
    (workspace / "a.py").write_text("def f():\n        return 1\n")
    result = await EDIT(
        ctx, {"path": "a.py", "old_string": "def f():\n    return 1", "new_string": "x = 1"}
    )
    assert result.ok is False
    error = result.error or ""
    assert "old_string was not found in a.py" in error
    assert "matches at line 1 if whitespace is ignored" in error
    numbered = await EDIT(
        ctx, {"path": "a.py", "old_string": "     1\tdef f():", "new_string": "def h():"}
    )
    assert "line-number prefixes" in (numbered.error or "")
    absent = await EDIT(ctx, {"path": "a.py", "old_string": "nowhere", "new_string": "x"})
    assert "read the file again" in (absent.error or "")
    assert (workspace / "a.py").read_text() == "def f():\n        return 1\n"


async def test_edit_several_matches_lists_them(ctx: ToolContext, workspace: Path) -> None:
    (workspace / "a.txt").write_text("x = 1\ny = 2\nx = 1\nz = 3\nx = 1\n")
    result = await EDIT(ctx, {"path": "a.txt", "old_string": "x = 1", "new_string": "x = 9"})
    assert result.ok is False
    assert "occurs 3 times" in (result.error or "") and "lines 1, 3, 5" in (result.error or "")
    assert (workspace / "a.txt").read_text() == "x = 1\ny = 2\nx = 1\nz = 3\nx = 1\n"
    every = await EDIT(
        ctx, {"path": "a.txt", "old_string": "x = 1", "new_string": "x = 9", "replace_all": True}
    )
    assert every.ok is True and every.metadata["replacements"] == 3
    assert (workspace / "a.txt").read_text() == "x = 9\ny = 2\nx = 9\nz = 3\nx = 9\n"


async def test_edit_result_is_validated(ctx: ToolContext, workspace: Path) -> None:
    (workspace / "a.py").write_text("def f():\n    return 1\n")
    result = await EDIT(ctx, {"path": "a.py", "old_string": "():", "new_string": "(:"})
    assert result.ok is False and "not valid Python" in (result.error or "")
    assert (workspace / "a.py").read_text() == "def f():\n    return 1\n"


async def test_edit_keeps_crlf_line_endings(ctx: ToolContext, workspace: Path) -> None:
    (workspace / "w.txt").write_bytes(b"one\r\ntwo\r\nthree\r\n")
    result = await EDIT(
        ctx, {"path": "w.txt", "old_string": "one\ntwo", "new_string": "one\n2\nextra"}
    )
    assert result.ok is True, result.error
    assert (workspace / "w.txt").read_bytes() == b"one\r\n2\r\nextra\r\nthree\r\n"


async def test_edit_refuses_missing_binary_and_no_op(ctx: ToolContext, workspace: Path) -> None:
    (workspace / "b.bin").write_bytes(b"ab\x00cd")
    (workspace / "a.txt").write_text("abc\n")
    missing = await EDIT(ctx, {"path": "no.txt", "old_string": "a", "new_string": "b"})
    assert missing.error == "no such file: no.txt"
    binary = await EDIT(ctx, {"path": "b.bin", "old_string": "ab", "new_string": "x"})
    assert "binary" in (binary.error or "")
    same = await EDIT(ctx, {"path": "a.txt", "old_string": "abc", "new_string": "abc"})
    assert same.ok is False
    empty = await EDIT(ctx, {"path": "a.txt", "old_string": "", "new_string": "x"})
    assert empty.ok is False and "write_file" in (empty.error or "")


def test_register_tools_registers_the_file_tools(tmp_path: Path) -> None:
    registered: list[Any] = []
    files_plugin.register_tools(registered.append, make_config(tmp_path))
    assert [fn.__name__ for fn in registered] == ["read_file", "write_file", "edit_file"]
    schemas = [Tool.from_function(fn).parameters for fn in registered]
    assert schemas[0]["required"] == ["path"]
    assert schemas[2]["required"] == ["path", "old_string", "new_string"]
    assert all(s["properties"]["path"]["description"] for s in schemas)
