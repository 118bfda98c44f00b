"""Shell-command policy: which programs a bash command line would run.

A chat bot with a shell is a remote shell for everyone in the channel unless
its commands are checked. ``tools.bash.allowed_commands`` names the
programs the bot may start without asking; this module enforces it for real.
The command is parsed with a bash grammar (see :mod:`bot.policy.shell_parse`)
and *every* program that would run must be allowed: programs in pipelines,
lists, subshells, groups, loop and ``if`` bodies, function bodies, ``$(…)``,
backquotes and ``<(…)``, and programs started through wrappers (``env``,
``xargs``, ``sh -c``, ``timeout``, ``find -exec``…). Whatever the analysis
cannot be sure of (a program name computed at run time, ``eval``, ``source``,
a construct the parser cannot read) makes the verdict "ask": a person
decides. There is no "deny" here; refusing is the approver's answer.

What this does not do. Listing a program trusts everything that program can
do. An interpreter (``python``, ``node``, ``bash`` as a script runner) can
run anything, and so can tools that execute files from the workspace the
model may have just written: ``pytest`` imports ``conftest.py``, ``git``
runs hooks and honours ``.git/config``, ``make`` runs a Makefile, ``sed``
has an ``e`` command and ``awk`` has ``system()``. Allowing those is the
operator's choice; the sandbox, not this module, contains what they do. The
module also decides nothing about files: it exposes every redirection so
the caller can confine writes to the workspace.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from bot.policy.shell_parse import ParsedScript, ShellParseError, parse_script
from bot.policy.shell_programs import (
    EXEC_OPTIONS,
    HARMLESS_BUILTINS,
    RISKY_BUILTINS,
    SHELLS,
    WRAPPERS,
    OptionError,
    could_be_option,
    first_operand,
    git_doubt,
    mentions_option,
    name_doubt,
    shell_invocation,
)
from bot.policy.shell_words import Word

# A path names the program it seems to only in the system's own bin
# directories; ``./ls`` or ``../x/ls`` is whatever file the workspace holds.
SYSTEM_BIN_DIRS = frozenset({"/bin", "/usr/bin", "/usr/local/bin", "/sbin", "/usr/sbin"})
# ``sh -c "sh -c '…'"`` is legitimate a level or two deep; beyond that it is
# obfuscation, and the bound keeps the analysis finite.
MAX_SHELL_DEPTH = 4
_WRITE_OPERATORS = frozenset({">", ">>", ">|", "&>", "&>>", "<>", ">&"})
_HARMLESS_SINKS = frozenset({"/dev/null", "/dev/stdout", "/dev/stderr"})


class Redirection(NamedTuple):
    """One redirection as written: ``op`` with its fd prefix (``2>``), and its target."""

    op: str
    target: str

    @property
    def writes_file(self) -> bool:
        """True for ``>``-style redirections to a file (not ``2>&1`` or ``/dev/null``)."""
        operator = self.op.lstrip("0123456789")
        if operator not in _WRITE_OPERATORS or self.target in _HARMLESS_SINKS:
            return False
        return not (operator == ">&" and (self.target.isdigit() or self.target == "-"))


@dataclass(frozen=True, slots=True)
class ShellAnalysis:
    """What a command line would run, and what the analysis could not be sure of.

    ``programs`` lists each program once, in the order the shell starts them
    (a substitution before the command that uses its output), as written:
    ``/usr/bin/ls`` stays a path. Builtins that only touch the shell's own
    state (``cd``, ``echo``, ``test``…) and wrappers that were looked through
    (``env``, ``timeout``, ``sh -c``…) are not programs here. ``redirections``
    are as written too: a target with ``$`` or ``~`` is unexpanded text.
    """

    command: str
    programs: list[str] = field(default_factory=list)
    uncertain: list[str] = field(default_factory=list)
    redirections: list[Redirection] = field(default_factory=list)

    @property
    def written_files(self) -> list[str]:
        """Targets of redirections that write files, for the caller to confine."""
        return [r.target for r in self.redirections if r.writes_file]


@dataclass(frozen=True, slots=True)
class ShellVerdict:
    decision: Literal["allow", "ask"]
    reasons: list[str]
    programs: list[str]


@functools.lru_cache(maxsize=1024)
def analyze_command(command: str) -> ShellAnalysis:
    """Find every program ``command`` would run; pure, no I/O.

    Memoised: parsing costs about a millisecond and agents rerun the same
    commands (``pytest -q``, ``git status``) all the time. The analysis is
    shared between callers, so treat it as read-only.
    """
    analysis = ShellAnalysis(command)
    if not command.strip():
        analysis.uncertain.append("empty command")
        return analysis
    analyzer = _Analyzer(analysis)
    try:
        analyzer.script(command, depth=0)
    except Exception as exc:  # a checker bug must end in a question, not a crash
        analysis.uncertain.append(f"internal error while checking the command: {exc!r}")
    if not analyzer.saw_command and not analysis.uncertain:
        analysis.uncertain.append("empty command")  # only comments
    return analysis


def check_command(command: str, allowed: Iterable[str]) -> ShellVerdict:
    """Allow ``command`` only if every program is in ``allowed`` and nothing is uncertain."""
    allowed_names = frozenset(allowed)
    analysis = analyze_command(command)
    reasons = [
        f"`{program}` is not in tools.bash.allowed_commands"
        + ("" if "/" not in program else " (a path counts only in a system bin directory)")
        for program in analysis.programs
        if not is_allowed(program, allowed_names)
    ]
    reasons.extend(analysis.uncertain)
    return ShellVerdict("ask" if reasons else "allow", reasons, list(analysis.programs))


def is_allowed(program: str, allowed: frozenset[str]) -> bool:
    name = system_name(program)
    return program in allowed or (name is not None and name in allowed)


def system_name(program: str) -> str | None:
    """The name ``program`` runs by: itself if bare, the basename if in a system bin dir."""
    if "/" not in program:
        return program
    directory, _, base = program.rpartition("/")
    return base if directory in SYSTEM_BIN_DIRS and base else None


@dataclass(slots=True)
class _Scope:
    """One shell process's view: its parsed text and the functions it has defined."""

    parsed: ParsedScript
    depth: int
    functions: dict[str, int] = field(default_factory=dict)  # name -> end offset of definition


@dataclass(frozen=True, slots=True)
class _Stdin:
    text: str | None  # the literal text a here-document or here-string feeds, if known


class _Analyzer:
    def __init__(self, analysis: ShellAnalysis) -> None:
        self.analysis = analysis
        self.saw_command = False

    def doubt(self, reason: str) -> None:
        if reason not in self.analysis.uncertain:
            self.analysis.uncertain.append(reason)

    def program(self, name: str) -> None:
        if name not in self.analysis.programs:
            self.analysis.programs.append(name)

    def script(self, text: str, depth: int) -> None:
        if depth > MAX_SHELL_DEPTH:
            self.doubt(f"shells nested more than {MAX_SHELL_DEPTH} deep")
            return
        try:
            parsed = parse_script(text)
        except ShellParseError as exc:
            self.doubt(str(exc))
            return
        for reason in parsed.doubts:
            self.doubt(reason)
        self.saw_command = self.saw_command or bool(parsed.trees)
        scope = _Scope(parsed, depth)
        for tree in parsed.trees:
            self.node(tree, scope, top_level=True)

    # -- the tree ---------------------------------------------------------

    def node(self, node: Any, scope: _Scope, top_level: bool = False) -> None:
        kind = node.kind
        if kind == "command":
            self.command(node, scope)
        elif kind == "list":
            self.sequence(node.parts, scope, top_level)
        elif kind == "function":
            self.function(node, scope, register=top_level)
        elif kind == "compound":
            for child in node.list:
                self.node(child, scope)
            for redirect in node.redirects:
                self.redirect(redirect, scope)
        elif kind == "for":
            self.for_loop(node, scope)
        elif kind in ("pipeline", "if", "while", "until"):
            for child in node.parts:
                self.node(child, scope)
        # operator, pipe and reservedword nodes carry no programs

    def sequence(self, parts: list[Any], scope: _Scope, top_level: bool) -> None:
        for index, part in enumerate(parts):
            if part.kind == "function" and top_level:
                before = getattr(parts[index - 1], "op", None) if index else ";"
                after = getattr(parts[index + 1], "op", None) if index + 1 < len(parts) else ";"
                # Only a definition that surely runs, in this shell, before
                # the call can stand in for a program: not one behind && or
                # ||, and not one sent to a background subshell with &.
                self.function(part, scope, register=before in (";", "\n") and after != "&")
            else:
                self.node(part, scope)

    def function(self, node: Any, scope: _Scope, register: bool) -> None:
        name = scope.parsed.word(node.name).text
        shadowed = (HARMLESS_BUILTINS, RISKY_BUILTINS, WRAPPERS, SHELLS)
        if any(name in names for names in shadowed) or "/" in name:
            self.doubt(f"the function `{name}` shadows the command of the same name")
        self.node(node.body, scope)
        if register:
            scope.functions[name] = node.pos[1]

    def for_loop(self, node: Any, scope: _Scope) -> None:
        words = [part for part in node.parts if part.kind == "word"]
        if words:
            self.assigned_name(scope.parsed.word(words[0]).text, "for loop variable")
        for word in words[1:]:
            self.substitutions(scope.parsed.word(word), scope)
        for part in node.parts:
            if part.kind not in ("word", "reservedword"):
                self.node(part, scope)

    def command(self, node: Any, scope: _Scope) -> None:
        argv: list[Word] = []
        stdin: _Stdin | None = None
        for part in node.parts:
            if part.kind == "redirect":
                stdin = self.redirect(part, scope) or stdin
                continue
            word = scope.parsed.word(part)
            self.substitutions(word, scope)
            if part.kind == "assignment":
                self.assigned_name(word.text.partition("=")[0].removesuffix("+"), "assignment")
            else:
                argv.append(word)
        if argv:
            self.invoke(argv, scope, stdin=stdin)

    def substitutions(self, word: Word, scope: _Scope) -> None:
        for command in word.substitutions:
            self.node(command, scope)

    def redirect(self, node: Any, scope: _Scope) -> _Stdin | None:
        op = f"{node.input}{node.type}" if node.input is not None else node.type
        if not isinstance(node.output, type(node)):
            self.analysis.redirections.append(Redirection(op, str(node.output)))
            return None
        word = scope.parsed.word(node.output)
        self.substitutions(word, scope)
        self.analysis.redirections.append(Redirection(op, word.text))
        if Redirection(op, word.text).writes_file and not word.literal:
            self.doubt(f"`{op} {word.text}` writes to a path computed at run time")
        if word.text.startswith(("/dev/tcp/", "/dev/udp/")):
            # bash itself opens these as network connections, for reading too.
            self.doubt(f"`{op} {word.text}` opens a network connection")
        if node.input not in (None, 0):
            return None
        if node.type in ("<<", "<<-"):
            heredoc = scope.parsed.heredocs.get(id(node))
            if heredoc is None:
                return _Stdin(None)
            # An unquoted body is expanded first, and its backslashes
            # removed: `\`rm\`` reaches the reader as a substitution.
            literal = heredoc.quoted or not any(c in heredoc.body for c in "$`\\")
            return _Stdin(heredoc.body if literal else None)
        if node.type == "<<<":
            return _Stdin(word.text + "\n" if word.literal else None)
        return _Stdin(None) if node.type in ("<", "<>") else None

    def assigned_name(self, name: str, what: str) -> None:
        reason = name_doubt(name, what)
        if reason:
            self.doubt(reason)

    # -- one program and its arguments ------------------------------------

    def invoke(
        self,
        argv: list[Word],
        scope: _Scope,
        stdin: _Stdin | None = None,
        via: str | None = None,
    ) -> None:
        """Check what ``argv`` runs; ``via`` names the wrapper that started it, if any."""
        head, args = argv[0], argv[1:]
        if not head.literal:
            self.doubt(f"the program name `{head.text}` is computed at run time")
            return
        name = head.text
        defined_at = scope.functions.get(name)
        # A wrapper execs a program from PATH; only the shell itself calls functions.
        if via is None and defined_at is not None and defined_at <= head.start:
            return
        base = system_name(name)
        if base is None:
            self.program(name)
        elif base in HARMLESS_BUILTINS:
            for reason in HARMLESS_BUILTINS[base](args):
                self.doubt(reason)
        elif base in RISKY_BUILTINS:
            self.doubt(RISKY_BUILTINS[base])
        elif base in WRAPPERS:
            self.unwrap(base, args, scope, stdin, via)
        elif base in SHELLS:
            self.shell(base, args, scope, stdin, via)
        else:
            self.program(name)
            self.program_options(base, args, scope, via)

    def unwrap(
        self, wrapper: str, args: list[Word], scope: _Scope, stdin: _Stdin | None, via: str | None
    ) -> None:
        spec = WRAPPERS[wrapper]
        if spec.always_ask:
            self.doubt(spec.always_ask)
        try:
            index, options = first_operand(args, spec.options)
        except OptionError as exc:
            if not spec.always_ask:
                self.doubt(f"`{wrapper}` {exc}")
            return
        for option, _value in options:
            if option in spec.refuse:
                self.doubt(f"`{wrapper} {option}` builds its command at run time")
                return
            if option in spec.no_program:
                return  # e.g. `command -v`: a lookup, nothing runs
        while index < len(args) and spec.assignments and "=" in args[index].text:
            self.assigned_name(args[index].text.partition("=")[0], "assignment")
            index += 1
        index += spec.skip_operands
        rest = args[index:]
        if wrapper == "xargs":
            rest = _xargs_command(rest, options)
        if rest:
            # xargs appends its input to whatever it starts, through any
            # wrappers in between, and keeps stdin from it; later checks
            # need to know that.
            if "xargs" in (via, wrapper):
                self.invoke(rest, scope, via="xargs")
            else:
                self.invoke(rest, scope, stdin=stdin, via=wrapper)
        elif via == "xargs":
            self.doubt(f"`{wrapper}` runs a program named by the input of xargs")
        elif spec.bare_program:
            self.program(spec.bare_program)
        elif spec.bare_doubt:
            self.doubt(spec.bare_doubt)

    def shell(
        self, name: str, args: list[Word], scope: _Scope, stdin: _Stdin | None, via: str | None
    ) -> None:
        invocation = shell_invocation(args)
        if invocation.problem:
            self.doubt(f"`{name}` {invocation.problem}")
        elif invocation.script is not None:
            if invocation.script.literal:
                self.script(invocation.script.text, scope.depth + 1)
            else:
                self.doubt(f"`{name} -c` runs a script computed at run time")
        elif invocation.has_operands:
            self.doubt(f"`{name}` runs a script file whose commands cannot be checked here")
        elif via == "xargs":
            self.doubt(f"`{name}` runs a script given by the input of xargs")
        elif stdin is not None and stdin.text is not None:
            self.script(stdin.text, scope.depth + 1)
        else:
            self.doubt(f"`{name}` reads commands from standard input, which cannot be checked")

    def program_options(self, base: str, args: list[Word], scope: _Scope, via: str | None) -> None:
        """Options of allowed programs that make them start other programs."""
        if via == "xargs" and (base in EXEC_OPTIONS or base in ("git", "find")):
            self.doubt(f"xargs appends its input to `{base}`, whose options can run commands")
        if base == "git":
            reason = git_doubt(args)
            if reason:
                self.doubt(reason)
        elif base == "find":
            self.find_actions(args, scope)
        elif base in EXEC_OPTIONS:
            option = mentions_option(args, *EXEC_OPTIONS[base], first_is_options=base == "tar")
            if option:
                self.doubt(f"`{base} {option}` runs another program")
        if base in EXEC_OPTIONS or base == "find":
            dynamic = next((arg.text for arg in args if could_be_option(arg)), None)
            if dynamic:
                self.doubt(f"`{base}` gets `{dynamic}`, which could expand to an option")

    def find_actions(self, args: list[Word], scope: _Scope) -> None:
        index = 0
        while index < len(args):
            if args[index].text in ("-exec", "-execdir", "-ok", "-okdir"):
                end = index + 1
                while end < len(args) and args[end].text not in (";", "+"):
                    end += 1
                command = args[index + 1 : end]
                if command and "{}" in command[0].text:
                    self.doubt(f"`find {args[index].text} {command[0].text}` runs found files")
                elif command:
                    self.invoke(command, scope, via="find")
                index = end
            index += 1


def _xargs_command(rest: list[Word], options: list[tuple[str, str | None]]) -> list[Word]:
    """With ``-I``/``-i``, xargs pastes its input into the command: those words are dynamic."""
    replace = None
    for option, value in options:
        if option in ("-I", "-i", "--replace"):
            replace = value or "{}"
    if replace is None:
        return rest
    return [Word(w.text, w.literal and replace not in w.text, w.start) for w in rest]
