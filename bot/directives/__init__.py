"""Markdown directives: the agent's behaviour lives in version-controlled files, not code.

A workspace describes how threadwright behaves in it with Markdown files under
``.agent/`` (Claude Code's ``.claude/commands/`` are read too)::

    .agent/system.md                    persona: a template with {workspace}, {date}, {tools}
    .agent/commands/refactor.md         /refactor   (front matter + directive body)
    .agent/commands/git/commit.md       /git:commit (subfolders namespace names)
    .agent/skills/python-testing/SKILL.md   loaded by the model on demand; other files are resources
    .agent/agents/reviewer.md           a sub-agent: description, tools, model, instructions
    AGENTS.md, CLAUDE.md                project memory, at the workspace root

Anything a workspace does not define comes from the packaged defaults in
``bot/defaults/`` (found from an installed package too). The repository's own
``.agent/`` holds the same files as ``bot/defaults/`` so the project dogfoods
them; ``tests/test_directives.py`` fails if the two drift apart, so edit one and
copy it to the other.

Command front matter (all optional; a file without front matter is a command
whose whole text is the directive and whose name is the file name)::

    name: /refactor            leading slash optional; default: the file's path
    description: ...           shown by /help
    argument-hint: <path>      shown by /help after the name
    complexity: medium         low | medium | high; feeds the router's score
    allowed-tools: Bash(git diff:*), Read   list or string; Claude names mapped
    model: qwen3-coder         a model the router may prefer for this command
    local_only: true           never route this command's steps to a cloud model
    permission_mode: plan      default | acceptEdits | plan | bypassPermissions

Keys may use ``-`` or ``_``. Unknown keys land in ``Command.extra`` with a
warning. See :mod:`bot.directives.parse` for tool-name mapping,
:mod:`bot.directives.command` for ``$ARGUMENTS``/``$1``… expansion,
:mod:`bot.directives.loader` for lookup order, shadowing and the
last-good-version rule, and :mod:`bot.directives.reload` for hot reload.
``local_only`` and ``permission_mode`` come from the repository, so the host
may let them tighten its policy but never loosen it.

API::

    from bot.directives import DirectiveLoader, DirectiveSet, parse_command_invocation

    loader = DirectiveLoader(workspace, agent_dir=".agent")
    ds = loader.load()                   # sync; never raises for a bad file
    ds.commands["refactor"].expand("src/a.py")
    ds.system_prompt(tools=["bash", "read_file"], workspace=workspace)
    ds.help_text(); ds.problems; format_problems(ds.problems, relative_to=workspace)
    parse_command_invocation("/refactor src/a.py")   # ("refactor", "src/a.py")
    is_directive_path("AGENTS.md")       # True: writing it needs a person's approval
    loader.refresh()                     # reloads only if a file changed
    await loader.watch(on_change, stop=stop_event)   # hot reload until stop is set
"""

from bot.directives.command import (
    COMPLEXITY_LEVELS,
    PERMISSION_MODES,
    Command,
    Complexity,
    parse_command_invocation,
)
from bot.directives.directive_set import BUILTIN_COMMANDS, DirectiveSet, Shadowing
from bot.directives.discovery import PACKAGED_DEFAULTS
from bot.directives.loader import DirectiveLoader
from bot.directives.memory import MEMORY_FILE_LIMIT
from bot.directives.paths import directive_target, is_directive_path
from bot.directives.problems import DirectiveError, DirectiveProblem, format_problems
from bot.directives.skills import Skill
from bot.directives.subagents import SubAgent

__all__ = [
    "BUILTIN_COMMANDS",
    "COMPLEXITY_LEVELS",
    "MEMORY_FILE_LIMIT",
    "PACKAGED_DEFAULTS",
    "PERMISSION_MODES",
    "Command",
    "Complexity",
    "DirectiveError",
    "DirectiveLoader",
    "DirectiveProblem",
    "DirectiveSet",
    "Shadowing",
    "Skill",
    "SubAgent",
    "directive_target",
    "format_problems",
    "is_directive_path",
    "parse_command_invocation",
]
