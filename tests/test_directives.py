"""Markdown directives: parsing, expansion, layering, memory, prompts and hot reload."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Literal

import pytest

from bot.directives import (
    BUILTIN_COMMANDS,
    MEMORY_FILE_LIMIT,
    PACKAGED_DEFAULTS,
    Command,
    DirectiveLoader,
    DirectiveProblem,
    DirectiveSet,
    directive_target,
    format_problems,
    is_directive_path,
    parse_command_invocation,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_COMMANDS = ("refactor", "review", "test", "explain", "fix")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / ".agent" / "commands").mkdir(parents=True)
    return root


def load(workspace: Path, *, read_claude_commands: bool = True) -> DirectiveSet:
    """Load without the packaged defaults, so only the test's files count."""
    loader = DirectiveLoader(
        workspace, defaults_dir=None, read_claude_commands=read_claude_commands
    )
    return loader.load()


def problems_for(ds: DirectiveSet, name: str) -> list[DirectiveProblem]:
    return [p for p in ds.problems if p.file.name == name]


def command(body: str) -> Command:
    return Command(name="t", body=body, source=Path("t.md"))


# -- front matter ----------------------------------------------------------------------


def test_every_front_matter_field_is_read(workspace: Path) -> None:
    write(
        workspace / ".agent/commands/migrate.md",
        "---\n"
        "name: /db-migrate\n"
        "description: Write a database migration\n"
        "argument-hint: <table> [column]\n"
        "complexity: HIGH\n"
        "allowed-tools: [bash, read_file, edit_file]\n"
        "model: qwen3-coder:30b\n"
        "local_only: yes\n"
        "permission_mode: plan\n"
        "---\n"
        "Migrate $1.\n",
    )
    ds = load(workspace)
    cmd = ds.commands["db-migrate"]
    assert "migrate" not in ds.commands
    assert cmd.name == "db-migrate"
    assert cmd.description == "Write a database migration"
    assert cmd.argument_hint == "<table> [column]"
    assert cmd.complexity == "high"
    assert cmd.allowed_tools == ["bash", "read_file", "edit_file"]
    assert cmd.tool_patterns == {}
    assert cmd.model == "qwen3-coder:30b"
    assert cmd.local_only is True
    assert cmd.permission_mode == "plan"
    assert cmd.extra == {}
    assert cmd.source == workspace.resolve() / ".agent/commands/migrate.md"
    assert cmd.layer == "agent"
    assert cmd.body == "Migrate $1."
    assert ds.problems == []


def test_defaults_when_fields_are_absent(workspace: Path) -> None:
    write(workspace / ".agent/commands/Lint.md", "---\ndescription: Run the linter\n---\nLint.\n")
    cmd = load(workspace).commands["lint"]
    assert (cmd.argument_hint, cmd.complexity, cmd.allowed_tools, cmd.model) == (
        None,
        None,
        None,
        None,
    )
    assert cmd.local_only is False
    assert cmd.permission_mode is None


def test_claude_code_command_file(workspace: Path) -> None:
    write(
        workspace / ".claude/commands/commit.md",
        "---\n"
        "allowed-tools: Bash(git add:*), Bash(git status:*), Bash(git commit:*), Read\n"
        "argument-hint: [message]\n"
        "description: Create a git commit\n"
        "model: claude-3-5-haiku-20241022\n"
        "disable-model-invocation: true\n"
        "---\n"
        "## Context\n\n- Current status: !`git status`\n\nCommit with message: $ARGUMENTS\n",
    )
    ds = load(workspace)
    cmd = ds.commands["commit"]
    assert cmd.layer == "claude"
    assert cmd.allowed_tools == ["bash", "read_file"]
    assert cmd.tool_patterns == {"bash": ["git add:*", "git status:*", "git commit:*"]}
    assert cmd.model == "claude-3-5-haiku-20241022"
    assert cmd.description == "Create a git commit"
    # Unquoted brackets, as Claude's docs write them, stay display text.
    assert cmd.argument_hint == "[message]"
    assert cmd.extra == {"disable-model-invocation": True}
    [warning] = problems_for(ds, "commit.md")
    assert warning.severity == "warning"
    assert warning.key == "disable-model-invocation"
    assert warning.line == 6
    expanded = cmd.expand("fix typo")
    assert expanded.endswith("Commit with message: fix typo")
    assert "!`git status`" in expanded  # never executed while expanding


@pytest.mark.parametrize(
    "hint", ["[pr-number] [priority] [assignee]", "{a|b} <c>", "['quoted' x]", "add [id] | list"]
)
def test_argument_hint_is_literal_text(workspace: Path, hint: str) -> None:
    write(workspace / ".agent/commands/h.md", f"---\nargument-hint: {hint}\n---\nBody\n")
    ds = load(workspace)
    assert ds.commands["h"].argument_hint == hint
    assert ds.problems == []


def test_tool_names_are_mapped_and_patterns_kept(workspace: Path) -> None:
    write(
        workspace / ".agent/agents/helper.md",
        "---\n"
        "tools: [Write, Edit, MultiEdit, Grep, Glob, LS, WebFetch, think, my_plugin_tool,"
        " 'Read(./src/**)', Read]\n"
        "---\nHelp.\n",
    )
    ds = load(workspace)
    agent = ds.agents["helper"]
    assert agent.tools == [
        "write_file",
        "edit_file",
        "grep",
        "glob",
        "think",
        "my_plugin_tool",
        "read_file",
    ]
    # Read is also listed bare, so its pattern does not restrict it.
    assert agent.tool_patterns == {}
    [warning] = problems_for(ds, "helper.md")
    assert "WebFetch" in warning.message and warning.severity == "warning"


def test_underscore_and_hyphen_keys_are_the_same(workspace: Path) -> None:
    write(
        workspace / ".agent/commands/a.md",
        "---\nargument_hint: <x>\nallowed_tools: bash grep\nlocal-only: true\n"
        "permission-mode: acceptedits\n---\nA\n",
    )
    cmd = load(workspace).commands["a"]
    assert cmd.argument_hint == "<x>"
    assert cmd.allowed_tools == ["bash", "grep"]
    assert cmd.local_only is True
    assert cmd.permission_mode == "acceptEdits"


def test_file_without_front_matter_is_a_command(workspace: Path) -> None:
    body = "Summarise the repository.\n\n---\n\nkey: value looks like YAML but is body\n"
    write(workspace / ".agent/commands/summary.md", body)
    ds = load(workspace)
    cmd = ds.commands["summary"]
    assert cmd.body == body.strip()
    assert cmd.description == ""
    assert ds.problems == []


@pytest.mark.parametrize(
    ("front", "key", "expected", "line"),
    [
        ("complexity: extreme", "complexity", "must be one of low, medium, high", 3),
        ("local_only: maybe", "local_only", "must be true or false", 3),
        ("description: [a, b]", "description", "must be text", 3),
        ("permission_mode: yolo", "permission_mode", "default, acceptEdits, plan", 3),
        ("allowed-tools: {bash: 1}", "allowed-tools", "list of tool names", 3),
        ("allowed-tools: Bash(git", "allowed-tools", "cannot read tool", 3),
        ("name: 'not a name'", "name", "is not a command name", 3),
    ],
)
def test_wrong_value_names_the_key(
    workspace: Path, front: str, key: str, expected: str, line: int
) -> None:
    write(workspace / ".agent/commands/bad.md", f"---\nmodel: m\n{front}\n---\nBody\n")
    write(workspace / ".agent/commands/good.md", "Good\n")
    ds = load(workspace)
    assert "bad" not in ds.commands
    assert "good" in ds.commands
    [problem] = problems_for(ds, "bad.md")
    assert problem.severity == "error"
    assert problem.key == key
    assert expected in problem.message
    assert problem.line == line


def test_malformed_yaml_reports_the_file_line(workspace: Path) -> None:
    write(
        workspace / ".agent/commands/broken.md",
        "\n\n---\nname: broken\ndescription: Commit: now: please\n---\nBody\n",
    )
    write(workspace / ".agent/commands/fine.md", "---\ndescription: ok\n---\nFine\n")
    ds = load(workspace)
    assert set(ds.commands) == {"fine"}
    [problem] = ds.problems
    assert problem.file.name == "broken.md"
    assert problem.line == 5  # two blank lines, '---', name, then the bad line
    assert "invalid YAML" in problem.message
    assert "mapping values are not allowed" in problem.message


def test_unclosed_front_matter_and_non_mapping(workspace: Path) -> None:
    write(workspace / ".agent/commands/open.md", "---\nname: x\nBody with no closing line\n")
    write(workspace / ".agent/commands/list.md", "---\n- a\n- b\n---\nBody\n")
    ds = load(workspace)
    assert ds.commands == {}
    [unclosed] = problems_for(ds, "open.md")
    assert unclosed.line == 1 and "never closed" in unclosed.message
    [listed] = problems_for(ds, "list.md")
    assert "mapping" in listed.message


def test_unreadable_and_oversized_files_are_problems(workspace: Path) -> None:
    (workspace / ".agent/commands/binary.md").write_bytes(b"\xff\xfe\x00bad")
    write(workspace / ".agent/commands/huge.md", "x" * (300 * 1024))
    write(workspace / ".agent/commands/empty.md", "---\ndescription: nothing\n---\n")
    ds = load(workspace)
    assert ds.commands == {}
    messages = {p.file.name: p.message for p in ds.problems}
    assert "UTF-8" in messages["binary.md"]
    assert "limit" in messages["huge.md"]
    assert "no directive text" in messages["empty.md"]


def test_subdirectories_namespace_command_names(workspace: Path) -> None:
    write(workspace / ".agent/commands/git/commit.md", "Commit.\n")
    write(workspace / ".agent/commands/git/pr.md", "---\nname: /pull-request\n---\nOpen a PR.\n")
    write(workspace / ".agent/commands/.hidden/secret.md", "Hidden.\n")
    ds = load(workspace)
    assert set(ds.commands) == {"git:commit", "pull-request"}
    assert ds.find_command("/Git:Commit") is ds.commands["git:commit"]


def test_duplicate_names_in_one_layer_and_builtin_names(workspace: Path) -> None:
    write(workspace / ".agent/commands/a.md", "---\nname: deploy\n---\nFirst\n")
    write(workspace / ".agent/commands/b.md", "---\nname: deploy\n---\nSecond\n")
    write(workspace / ".agent/commands/help.md", "My help\n")
    ds = load(workspace)
    assert ds.commands["deploy"].body == "First"
    assert "help" not in ds.commands
    [duplicate] = problems_for(ds, "b.md")
    assert "duplicate" in duplicate.message and duplicate.severity == "error"
    [reserved] = problems_for(ds, "help.md")
    assert "built-in" in reserved.message


def test_agent_commands_shadow_claude_commands(workspace: Path) -> None:
    ours = write(workspace / ".agent/commands/deploy.md", "---\ndescription: ours\n---\nOurs\n")
    theirs = write(workspace / ".claude/commands/deploy.md", "Theirs\n")
    write(workspace / ".claude/commands/only-claude.md", "Claude only\n")
    ds = load(workspace)
    assert ds.commands["deploy"].body == "Ours"
    assert ds.commands["only-claude"].layer == "claude"
    [shadow] = ds.shadowed
    assert (shadow.name, shadow.winner, shadow.hidden) == (
        "deploy",
        ours.resolve(),
        theirs.resolve(),
    )
    assert shadow.hidden_layer == "claude"
    help_text = ds.help_text()
    assert ".claude/commands/deploy.md" in help_text
    assert "ignored" in help_text


def test_claude_commands_can_be_turned_off(workspace: Path) -> None:
    write(workspace / ".claude/commands/x.md", "X\n")
    assert "x" not in load(workspace, read_claude_commands=False).commands


# -- expansion -------------------------------------------------------------------------


def test_arguments_placeholder_gets_the_whole_string() -> None:
    assert command("Refactor $ARGUMENTS now").expand("  src/a.py  keep API ") == (
        "Refactor src/a.py  keep API now"
    )


def test_positionals_are_split_shell_style() -> None:
    cmd = command("from=$1 to=$2 third=[$3] all=$ARGUMENTS")
    assert cmd.expand("\"src/my file.py\" 'dst dir'") == (
        "from=src/my file.py to=dst dir third=[] all=\"src/my file.py\" 'dst dir'"
    )


def test_unbalanced_quotes_fall_back_to_whitespace_split() -> None:
    assert command("$1|$2|$3").expand('it"s broken') == 'it"s|broken|'


def test_without_placeholders_arguments_are_appended() -> None:
    cmd = command("Explain the module.")
    assert cmd.expand("src/a.py") == "Explain the module.\n\nArguments: src/a.py"
    assert cmd.expand("   ") == "Explain the module."


def test_only_one_digit_and_dollar_dollar_is_not_special() -> None:
    assert command("$10 $$1 $0 $").expand("a b") == "a0 $a $0 $"


def test_substituted_text_is_not_expanded_again() -> None:
    assert command("[$1] [$2]").expand("'$2' x") == "[$2] [x]"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/refactor src/a.py", ("refactor", "src/a.py")),
        ("!refactor src/a.py", ("refactor", "src/a.py")),
        ("  \n /Refactor   src/a.py  ", ("refactor", "src/a.py")),
        ("/help", ("help", "")),
        ("/git:commit -m 'x'", ("git:commit", "-m 'x'")),
        ("/fix the test\nit fails on CI", ("fix", "the test\nit fails on CI")),
        ("refactor src", None),
        ("/ refactor", None),
        ("/usr/bin/python is broken", None),
        ("/refactor: x", None),
        ("", None),
    ],
)
def test_parse_command_invocation(text: str, expected: tuple[str, str] | None) -> None:
    assert parse_command_invocation(text) == expected


# -- skills and sub-agents -------------------------------------------------------------


def test_skills_are_listed_in_the_prompt_but_their_bodies_are_not(workspace: Path) -> None:
    skill_dir = workspace / ".agent/skills/release"
    write(
        skill_dir / "SKILL.md",
        "---\nname: release\ndescription: Cut a release\n---\nSECRET-BODY: bump the version.\n",
    )
    write(skill_dir / "checklist.md", "- tag\n")
    write(skill_dir / "scripts/bump.py", "print(1)\n")
    write(skill_dir / ".DS_Store", "junk")
    (workspace / ".agent/skills/empty-folder").mkdir()
    ds = load(workspace)
    skill = ds.skills["release"]
    assert skill.description == "Cut a release"
    assert skill.body == "SECRET-BODY: bump the version."
    root = skill_dir.resolve()
    assert skill.resources == (root / "checklist.md", root / "scripts/bump.py")
    prompt = ds.system_prompt(["bash"], workspace)
    assert "- release: Cut a release (`.agent/skills/release/SKILL.md`)" in prompt
    assert "SECRET-BODY" not in prompt
    loaded = skill.as_prompt()
    assert "SECRET-BODY" in loaded and str(root / "scripts/bump.py") in loaded
    [warning] = [p for p in ds.problems if p.file.name == "empty-folder"]
    assert "SKILL.md" in warning.message


def test_skill_without_description_warns(workspace: Path) -> None:
    write(workspace / ".agent/skills/x/SKILL.md", "Do x.\n")
    ds = load(workspace)
    assert ds.skills["x"].description == ""
    assert [p.severity for p in ds.problems] == ["warning"]


def test_sub_agent_is_parsed(workspace: Path) -> None:
    write(
        workspace / ".agent/agents/security.md",
        "---\nname: security-auditor\ndescription: Finds vulnerabilities\n"
        "tools: Read, Grep, Bash(git log:*)\nmodel: qwen3:8b\ncolor: red\n---\n"
        "You audit code for security bugs.\n",
    )
    ds = load(workspace)
    agent = ds.agents["security-auditor"]
    assert agent.description == "Finds vulnerabilities"
    assert agent.tools == ["read_file", "grep", "bash"]
    assert agent.tool_patterns == {"bash": ["git log:*"]}
    assert agent.model == "qwen3:8b"
    assert agent.instructions == "You audit code for security bugs."
    assert agent.extra == {"color": "red"}


# -- project memory and the system prompt ----------------------------------------------


def test_project_memory_reads_agents_then_claude(workspace: Path) -> None:
    write(workspace / "CLAUDE.md", "Claude notes\n")
    write(workspace / "AGENTS.md", "Use tabs.\n")
    ds = load(workspace)
    assert ds.project_memory.index("## AGENTS.md") < ds.project_memory.index("## CLAUDE.md")
    assert "Use tabs." in ds.project_memory and "Claude notes" in ds.project_memory


def test_project_memory_is_capped_with_a_note(workspace: Path) -> None:
    line = "remember this rule about the code base\n"
    write(workspace / "AGENTS.md", line * (3 * MEMORY_FILE_LIMIT // len(line)))
    ds = load(workspace)
    assert len(ds.project_memory.encode()) < MEMORY_FILE_LIMIT + 500
    assert "AGENTS.md truncated" in ds.project_memory
    assert "of 60 KB" in ds.project_memory


def test_claude_md_linked_to_agents_md_is_included_once(workspace: Path) -> None:
    write(workspace / "AGENTS.md", "One rule.\n")
    os.symlink("AGENTS.md", workspace / "CLAUDE.md")
    assert load(workspace).project_memory.count("One rule.") == 1


def test_system_prompt_fills_placeholders_and_adds_memory(workspace: Path) -> None:
    write(
        workspace / ".agent/system.md",
        'Work in {workspace} on {date} with {tools}. Keep {other} and {"json": 1}.\n',
    )
    write(workspace / "AGENTS.md", "Run make test.\n")
    ds = load(workspace)
    prompt = ds.system_prompt(["bash", "grep"], Path("/srv/ws"), today=date(2025, 1, 2))
    assert prompt.startswith(
        'Work in /srv/ws on 2025-01-02 with bash, grep. Keep {other} and {"json": 1}.'
    )
    assert "# Project memory" in prompt and "Run make test." in prompt
    assert ds.system_source == (workspace / ".agent/system.md").resolve()


# -- packaged defaults -----------------------------------------------------------------


def test_packaged_defaults_are_found_without_an_agent_dir(tmp_path: Path) -> None:
    ds = DirectiveLoader(tmp_path).load()
    assert set(SHIPPED_COMMANDS) <= set(ds.commands)
    assert all(ds.commands[name].layer == "default" for name in SHIPPED_COMMANDS)
    assert ds.system_source == PACKAGED_DEFAULTS / "system.md"
    assert "python-testing" in ds.skills and "reviewer" in ds.agents
    assert ds.problems == []
    prompt = ds.system_prompt(["bash", "read_file"], tmp_path)
    assert str(tmp_path) in prompt and "bash, read_file" in prompt
    assert "{workspace}" not in prompt and "{tools}" not in prompt and "{date}" not in prompt
    # The packaged skill lies outside the workspace, so no path the file tools could not read.
    assert "\n- python-testing: Write and run pytest tests" in prompt
    assert "SKILL.md" not in prompt


def test_broken_workspace_system_prompt_falls_back(workspace: Path) -> None:
    write(workspace / ".agent/system.md", "---\ntitle: [unclosed\n---\nPersona\n")
    ds = DirectiveLoader(workspace).load()
    assert ds.system_source == PACKAGED_DEFAULTS / "system.md"
    [problem] = ds.problems
    assert problem.file.name == "system.md" and problem.line == 2
    # With no packaged defaults either, a minimal built-in persona still works.
    bare = load(workspace)
    assert bare.system_source is None
    assert "threadwright" in bare.system_prompt(["bash"], workspace)


def test_workspace_files_override_packaged_defaults(workspace: Path) -> None:
    write(workspace / ".agent/commands/refactor.md", "---\ndescription: house style\n---\nMine\n")
    write(workspace / ".agent/system.md", "Custom persona.\n")
    ds = DirectiveLoader(workspace).load()
    assert ds.commands["refactor"].body == "Mine"
    assert ds.commands["review"].layer == "default"
    assert ds.system_prompt([], workspace).startswith("Custom persona.")
    # Overriding a default is expected, so /help does not call it out.
    assert "ignored" not in ds.help_text()


def test_shipped_directives_load_cleanly_and_are_complete() -> None:
    ds = DirectiveLoader(REPO_ROOT).load()
    assert [p for p in ds.problems if p.file.is_relative_to(PACKAGED_DEFAULTS)] == []
    for name in SHIPPED_COMMANDS:
        cmd = ds.commands[name]
        assert cmd.description and cmd.complexity in {"low", "medium", "high"}
        assert "$ARGUMENTS" in cmd.body
    assert ds.commands["explain"].allowed_tools == ["read_file", "grep", "glob", "think"]
    assert len(ds.system_template.splitlines()) <= 60
    for placeholder in ("{workspace}", "{date}", "{tools}"):
        assert placeholder in ds.system_template


def test_repository_agent_dir_mirrors_packaged_defaults() -> None:
    packaged = sorted(p.relative_to(PACKAGED_DEFAULTS) for p in PACKAGED_DEFAULTS.rglob("*.md"))
    assert Path("system.md") in packaged
    assert {Path("commands") / f"{name}.md" for name in SHIPPED_COMMANDS} <= set(packaged)
    for relative in packaged:
        mirror = REPO_ROOT / ".agent" / relative
        assert mirror.is_file(), f".agent/{relative} is missing"
        assert mirror.read_bytes() == (PACKAGED_DEFAULTS / relative).read_bytes(), (
            f".agent/{relative} differs from bot/defaults/{relative}"
        )


# -- help and problem reports ----------------------------------------------------------


def test_help_text_lists_commands_controls_and_problems(workspace: Path) -> None:
    write(
        workspace / ".agent/commands/refactor.md",
        "---\ndescription: Restructure code\nargument-hint: <path>\n---\nGo\n",
    )
    write(workspace / ".agent/commands/bad.md", "---\ncomplexity: extreme\n---\nGo\n")
    text = load(workspace).help_text()
    assert "`/refactor <path>` — Restructure code" in text
    for name in BUILTIN_COMMANDS:
        assert f"`/{name}`" in text
    assert ".agent/commands/bad.md:2" in text and "complexity" not in text.split("bad.md")[0]


def test_format_problems(workspace: Path) -> None:
    write(workspace / ".agent/commands/bad.md", "---\ncomplexity: extreme\n---\nGo\n")
    write(workspace / ".agent/commands/odd.md", "---\nflavour: x\n---\nGo\n")
    ds = load(workspace)
    assert format_problems(ds.problems, relative_to=ds.workspace).splitlines() == [
        ".agent/commands/bad.md:2: error [complexity]: must be one of low, medium, high "
        "(got 'extreme'); file skipped",
        ".agent/commands/odd.md:2: warning [flavour]: unknown front-matter key 'flavour' "
        "kept in extra",
    ]
    assert format_problems([]) == "No problems found."


# -- refresh and hot reload ------------------------------------------------------------


def test_refresh_reloads_only_when_files_change(workspace: Path) -> None:
    path = write(workspace / ".agent/commands/a.md", "First\n")
    loader = DirectiveLoader(workspace, defaults_dir=None)
    first = loader.load()
    assert loader.refresh() is first
    write(path, "Second, longer\n")
    second = loader.refresh()
    assert second is not first and second.commands["a"].body == "Second, longer"
    assert loader.current is second
    # Same size, new mtime: still a change.
    write(path, "Third, longer!\n")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert loader.refresh().commands["a"].body == "Third, longer!"
    write(workspace / "AGENTS.md", "memo\n")
    assert "memo" in loader.refresh().project_memory
    path.unlink()
    assert "a" not in loader.refresh().commands


def test_broken_edit_keeps_the_last_good_version(workspace: Path) -> None:
    path = write(workspace / ".agent/commands/a.md", "---\ndescription: good\n---\nGood\n")
    loader = DirectiveLoader(workspace, defaults_dir=None)
    loader.load()
    write(path, "---\ndescription: [unclosed\n---\nHalf-edited\n")
    ds = loader.refresh()
    assert ds.commands["a"].body == "Good"
    [problem] = ds.problems
    assert "last version that loaded" in problem.message
    # A fresh loader never saw the good version, so the file is skipped.
    assert "a" not in DirectiveLoader(workspace, defaults_dir=None).load().commands


class ChangeRecorder:
    def __init__(self) -> None:
        self.sets: asyncio.Queue[DirectiveSet] = asyncio.Queue()

    async def __call__(self, directive_set: DirectiveSet) -> None:
        await self.sets.put(directive_set)

    async def next_matching(
        self, predicate: Callable[[DirectiveSet], bool], within_s: float = 3.0
    ) -> DirectiveSet:
        async def wait() -> DirectiveSet:
            while True:
                candidate = await self.sets.get()
                if predicate(candidate):
                    return candidate

        return await asyncio.wait_for(wait(), within_s)


async def wait_until_watching(workspace: Path, recorder: ChangeRecorder) -> None:
    # The watcher starts in a thread; touch a file until it reports one change.
    probe = workspace / ".agent/commands/probe.md"
    # Generous: on a loaded 2-core CI machine the watcher thread can start late.
    for attempt in range(40):
        write(probe, "probe " * (attempt + 1))
        try:
            await recorder.next_matching(lambda ds: "probe" in ds.commands, within_s=0.5)
            return
        except TimeoutError:
            continue
    raise AssertionError("the watcher never reported a change")


@pytest.mark.parametrize("backend", ["watchfiles", "poll"])
async def test_watch_reports_writes_edits_breakage_and_deletes(
    workspace: Path, backend: Literal["watchfiles", "poll"]
) -> None:
    loader = DirectiveLoader(workspace, defaults_dir=None)
    loader.load()
    recorder = ChangeRecorder()
    stop = asyncio.Event()
    # With watchfiles the periodic check is made rare, so file events must drive reloads.
    poll_interval = 30.0 if backend == "watchfiles" else 0.1
    task = asyncio.create_task(
        loader.watch(recorder, stop=stop, poll_interval=poll_interval, backend=backend)
    )
    try:
        await wait_until_watching(workspace, recorder)
        path = workspace / ".agent/commands/deploy.md"

        write(path, "---\ndescription: v1\n---\nDeploy\n")
        ds = await recorder.next_matching(lambda ds: "deploy" in ds.commands)
        assert ds.commands["deploy"].description == "v1"

        write(path, "---\ndescription: version two\n---\nDeploy\n")
        ds = await recorder.next_matching(
            lambda ds: ds.commands["deploy"].description == "version two"
        )

        write(path, "---\ndescription: broken: yaml: here\n---\nDeploy\n")
        ds = await recorder.next_matching(lambda ds: bool(ds.errors))
        assert ds.commands["deploy"].description == "version two"
        assert ds.errors[0].file == path.resolve() and ds.errors[0].line == 2

        path.unlink()
        ds = await recorder.next_matching(lambda ds: "deploy" not in ds.commands)
        assert ds.errors == [] and loader.current is ds
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=3)


async def test_watch_survives_a_failing_callback_and_sees_new_folders(tmp_path: Path) -> None:
    loader = DirectiveLoader(tmp_path, defaults_dir=None)
    loader.load()
    seen: list[DirectiveSet] = []
    complete = asyncio.Event()

    def on_change(directive_set: DirectiveSet) -> None:
        seen.append(directive_set)
        if {"one", "two"} <= set(directive_set.commands) and directive_set.project_memory:
            complete.set()
        if len(seen) == 1:
            raise RuntimeError("host bug")

    stop = asyncio.Event()
    task = asyncio.create_task(loader.watch(on_change, stop=stop, poll_interval=0.1))
    try:
        # No .agent/ exists yet: the periodic check must notice it appear.
        write(tmp_path / ".agent/commands/one.md", "One\n")
        write(tmp_path / "AGENTS.md", "notes\n")
        for _ in range(60):
            if seen:
                break
            await asyncio.sleep(0.05)
        assert seen, "the first change was never reported"
        write(tmp_path / ".agent/commands/two.md", "Two\n")
        await asyncio.wait_for(complete.wait(), timeout=3)
        assert len(seen) >= 2  # the callback raised once and watching went on
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=3)
    assert task.result() is None


# -- which paths are directives ------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("AGENTS.md", True),
        ("./CLAUDE.md", True),
        ("agents.md", True),  # a case-insensitive file system writes AGENTS.md
        ("src/../AGENTS.md", True),
        (".agent/system.md", True),
        (".agent/commands/git/commit.md", True),
        (".agent/skills/py/helper.py", True),
        (".agent/agents/reviewer.md", True),
        (".agent", True),
        (".claude/commands/deploy.md", True),
        ("docs/AGENTS.md", False),
        ("src/agent.py", False),
        (".claude/settings.json", False),
        ("../AGENTS.md", False),
        ("/etc/AGENTS.md", False),
    ],
)
def test_directive_paths(path: str, expected: bool) -> None:
    assert is_directive_path(path) is expected


def test_directive_targets_follow_links_and_the_agent_dir(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    write(root / "AGENTS.md", "memory\n")
    (root / "notes.md").symlink_to(root / "AGENTS.md")
    assert directive_target("notes.md", root) == "AGENTS.md"
    assert directive_target(str(root / ".agent" / "system.md"), root) == ".agent/system.md"
    assert directive_target("bot/x.md", root, agent_dir="bot") == "bot/x.md"
    assert directive_target("README.md", root) is None
