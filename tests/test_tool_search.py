"""grep and glob over real files, in and out of a git repository."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from bot.config import Config, load_config
from bot.tools.base import Tool, ToolContext
from bot.tools.environment import build_tool_env
from plugins.tools import search as search_plugin
from plugins.tools.search import compile_glob

GREP = Tool.from_function(search_plugin.grep)
GLOB = Tool.from_function(search_plugin.glob)


def make_config(tmp_path: Path, **tools: Any) -> Config:
    file = tmp_path / "agent_config.yaml"
    file.write_text("{}\n")
    return load_config(file, env={}, overrides={"tools": tools} if tools else None)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    return path.resolve()


def context(tmp_path: Path, workspace: Path, **tools: Any) -> ToolContext:
    config = make_config(tmp_path, **tools)
    env = build_tool_env(config, workspace, home=tmp_path / "home")
    return ToolContext(workspace=workspace, config=config, env=env)


@pytest.fixture
def ctx(tmp_path: Path, workspace: Path) -> ToolContext:
    return context(tmp_path, workspace)


def write(root: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def git_init(workspace: Path, tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "GIT_CONFIG_NOSYSTEM": "1"}
    subprocess.run(["git", "init", "-q", str(workspace)], check=True, env=env)


async def test_grep_finds_lines(ctx: ToolContext, workspace: Path) -> None:
    write(workspace, {"a.py": "import os\ndef main():\n    pass\n", "sub/b.txt": "def x\n"})
    result = await GREP(ctx, {"pattern": r"^def \w+"})
    assert result.ok is True
    assert result.stdout.splitlines() == ["a.py:2: def main():", "sub/b.txt:1: def x"]
    assert result.metadata["matches"] == 2


async def test_grep_in_git_skips_dot_git_and_ignored_files(
    ctx: ToolContext, workspace: Path, tmp_path: Path
) -> None:
    git_init(workspace, tmp_path)
    write(
        workspace,
        {
            ".gitignore": "ignored.txt\nbuild/\n",
            "kept.txt": "needle here\n",
            "untracked/new.txt": "needle too\n",
            "ignored.txt": "needle ignored\n",
            "build/out.txt": "needle built\n",
            ".git/needle-file": "needle in git\n",
            "image.bin": b"needle\x00binary",
        },
    )
    result = await GREP(ctx, {"pattern": "needle"})
    assert sorted(result.stdout.splitlines()) == [
        "kept.txt:1: needle here",
        "untracked/new.txt:1: needle too",
    ]


async def test_grep_outside_git_skips_junk_dirs(ctx: ToolContext, workspace: Path) -> None:
    write(
        workspace,
        {
            "src/app.js": "needle\n",
            "node_modules/lib/index.js": "needle\n",
            ".venv/lib/site.py": "needle\n",
            ".git/config": "needle\n",
        },
    )
    result = await GREP(ctx, {"pattern": "needle"})
    assert result.stdout.splitlines() == ["src/app.js:1: needle"]


async def test_grep_options(tmp_path: Path, workspace: Path) -> None:
    ctx = context(tmp_path, workspace, grep_max_results=3)
    write(
        workspace,
        {
            "a.py": "Alpha\nalpha\n",
            "docs/a.md": "alpha\n",
            "src/deep/c.py": "alpha\n",
            "many.txt": "hit\n" * 10,
        },
    )
    py_only = await GREP(ctx, {"pattern": "alpha", "glob": "*.py"})
    assert py_only.stdout.splitlines() == ["a.py:2: alpha", "src/deep/c.py:1: alpha"]
    insensitive = await GREP(ctx, {"pattern": "ALPHA", "ignore_case": True, "glob": "a.py"})
    assert insensitive.stdout.splitlines() == ["a.py:1: Alpha", "a.py:2: alpha"]
    under_src = await GREP(ctx, {"pattern": "alpha", "path": "src"})
    assert under_src.stdout.splitlines() == ["src/deep/c.py:1: alpha"]
    pathy = await GREP(ctx, {"pattern": "alpha", "glob": "src/**/*.py"})
    assert pathy.stdout.splitlines() == ["src/deep/c.py:1: alpha"]
    capped = await GREP(ctx, {"pattern": "hit", "path": "many.txt"})
    assert capped.stdout.splitlines()[:3] == [
        "many.txt:1: hit",
        "many.txt:2: hit",
        "many.txt:3: hit",
    ]
    assert "results capped at 3" in capped.stdout and capped.truncated is True
    two = await GREP(ctx, {"pattern": "hit", "max_results": 2})
    assert two.metadata["matches"] == 2
    none = await GREP(ctx, {"pattern": "zebra"})
    assert none.ok is True and none.stdout.startswith("no matches for 'zebra'")


async def test_grep_invalid_regex_and_escape(ctx: ToolContext, workspace: Path) -> None:
    invalid = await GREP(ctx, {"pattern": "foo(bar"})
    assert invalid.ok is False
    assert (invalid.error or "").startswith("invalid regular expression: missing )")
    outside = await GREP(ctx, {"pattern": "root", "path": "/etc"})
    assert outside.ok is False and "outside the workspace" in (outside.error or "")


async def test_catastrophic_backtracking_is_stopped(tmp_path: Path, workspace: Path) -> None:
    ctx = context(tmp_path, workspace, bash={"timeout": 1})
    write(workspace, {"evil.txt": "a" * 40 + "b\n"})
    started = time.monotonic()
    result = await GREP(ctx, {"pattern": "(a+)+$"})
    assert time.monotonic() - started < 5
    assert result.ok is False
    assert "grep stopped after 1 s" in (result.error or "")
    assert "backtrack" in (result.error or "")


async def test_long_lines_are_shown_around_the_match(ctx: ToolContext, workspace: Path) -> None:
    write(workspace, {"min.js": "x" * 5000 + "NEEDLE" + "y" * 5000 + "\n"})
    result = await GREP(ctx, {"pattern": "NEEDLE"})
    line = result.stdout
    assert line.startswith("min.js:1: …") and "NEEDLE" in line
    assert len(line) < 400


async def test_glob(tmp_path: Path, workspace: Path) -> None:
    ctx = context(tmp_path, workspace)
    write(
        workspace,
        {
            "top.py": "",
            "pkg/mod.py": "",
            "pkg/sub/deep.py": "",
            "web/app.ts": "",
            "web/view.tsx": "",
            "web/style.css": "",
            ".git/hook.py": "",
        },
    )
    everywhere = await GLOB(ctx, {"pattern": "**/*.py"})
    assert everywhere.stdout.splitlines() == ["pkg/mod.py", "pkg/sub/deep.py", "top.py"]
    top_only = await GLOB(ctx, {"pattern": "*.py"})
    assert top_only.stdout.splitlines() == ["top.py"]
    braces = await GLOB(ctx, {"pattern": "*.{ts,tsx}", "path": "web"})
    assert braces.stdout.splitlines() == ["web/app.ts", "web/view.tsx"]
    nothing = await GLOB(ctx, {"pattern": "*.rs"})
    assert nothing.ok is True and nothing.stdout.startswith("no files match")
    escape = await GLOB(ctx, {"pattern": "../*"})
    assert escape.ok is False
    capped_ctx = context(tmp_path, workspace, grep_max_results=2)
    capped = await GLOB(capped_ctx, {"pattern": "**/*"})
    assert capped.truncated is True and len(capped.stdout.splitlines()) == 3
    assert "6 files match" in capped.stdout


async def test_glob_respects_gitignore(ctx: ToolContext, workspace: Path, tmp_path: Path) -> None:
    git_init(workspace, tmp_path)
    write(workspace, {".gitignore": "*.log\n", "a.txt": "", "debug.log": ""})
    result = await GLOB(ctx, {"pattern": "*"})
    assert result.stdout.splitlines() == [".gitignore", "a.txt"]


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("*.py", "a.py", True),
        ("*.py", "d/a.py", False),
        ("**/*.py", "a.py", True),
        ("**/*.py", "d/e/a.py", True),
        ("src/**", "src/x/y", True),
        ("a?c", "abc", True),
        ("a?c", "a/c", False),
        ("[!x]*.txt", "y.txt", True),
        ("[!x]*.txt", "x.txt", False),
        ("*.{js,ts}", "a.ts", True),
        ("*.{js,ts}", "a.tsx", False),
        ("a+b(c).txt", "a+b(c).txt", True),
    ],
)
def test_compile_glob(pattern: str, path: str, matches: bool) -> None:
    assert bool(compile_glob(pattern).match(path)) is matches


def test_register_tools_registers_grep_and_glob(tmp_path: Path) -> None:
    registered: list[Any] = []
    search_plugin.register_tools(registered.append, make_config(tmp_path))
    assert [fn.__name__ for fn in registered] == ["grep", "glob"]
    grep_schema = Tool.from_function(registered[0]).parameters
    assert grep_schema["required"] == ["pattern"]
    assert set(grep_schema["properties"]) == {
        "pattern",
        "path",
        "glob",
        "ignore_case",
        "max_results",
    }
