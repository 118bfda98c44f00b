"""What known builtins, wrappers and tools do with their arguments.

The shell policy (:mod:`bot.policy.shell`) checks program names; this
module holds the knowledge of the commands whose *arguments* decide what
runs: wrappers that start another program (``env``, ``xargs``, ``timeout``,
``sudo``…), shells that take a script (``sh -c``), builtins that are safe
only with plain arguments, and allowed tools with options that run commands
(``git -c``, ``tar --to-command``, ``rg --pre``). Option parsing here is
deliberately strict: an option it does not know makes the analysis
uncertain rather than guessing where the wrapped program starts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bot.policy.shell_words import NAME_RE, Word


# Assigning these makes a later or wrapped program find a different binary,
# load a library or module, run a hook, or read a config file that runs
# commands. The set is the usual suspects, not a proof of completeness.
def _words(names: str) -> frozenset[str]:
    return frozenset(names.split())


_DANGEROUS_VARIABLES = _words(
    "PATH IFS ENV BASH_ENV SHELLOPTS BASHOPTS PS4 PROMPT_COMMAND HOME XDG_CONFIG_HOME SHELL "
    "PAGER EDITOR VISUAL MANPAGER LESSOPEN LESSCLOSE PYTHONPATH PYTHONHOME PYTHONSTARTUP "
    "PYTHONUSERBASE PYTHONWARNINGS PYTHONBREAKPOINT PYTEST_ADDOPTS PYTEST_PLUGINS NODE_OPTIONS "
    "NODE_PATH PERL5OPT PERL5LIB PERLLIB RUBYOPT RUBYLIB GCONV_PATH TAR_OPTIONS "
    "RIPGREP_CONFIG_PATH"
)
_DANGEROUS_PREFIXES = ("LD_", "DYLD_", "BASH_FUNC_", "GIT_")
# Git variables that only label commits or silence prompts.
_HARMLESS_GIT_VARIABLES = ("GIT_AUTHOR_", "GIT_COMMITTER_", "GIT_TERMINAL_PROMPT")

SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "posh"})


def dangerous_variable(name: str) -> bool:
    if name in _DANGEROUS_VARIABLES:
        return True
    if name.startswith(_HARMLESS_GIT_VARIABLES):
        return False
    return name.startswith(_DANGEROUS_PREFIXES)


def name_doubt(name: str, what: str) -> str | None:
    """Why assigning the variable ``name`` is not harmless, or None."""
    if not NAME_RE.fullmatch(name):
        # `a[$(cmd)]` as a name evaluates the subscript as arithmetic.
        return f"the {what} `{name}` is not a plain variable name"
    if dangerous_variable(name):
        return f"the {what} `{name}` changes which programs run or what they load"
    return None


# -- options ----------------------------------------------------------------


class OptionError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class OptionSpec:
    flags: str = ""  # short options without a value
    with_arg: str = ""  # short options with a value, attached or the next word
    optional_arg: str = ""  # short options whose value can only be attached
    long_flags: frozenset[str] = frozenset()  # may carry an attached =value
    long_with_arg: frozenset[str] = frozenset()
    numeric: bool = False  # `nice -10`
    lone_dash: bool = False  # `env -` means `env -i`


def first_operand(args: list[Word], spec: OptionSpec) -> tuple[int, list[tuple[str, str | None]]]:
    """Index of the first operand in ``args``, and the options before it, getopt-style."""
    used: list[tuple[str, str | None]] = []
    index = 0
    while index < len(args):
        text = args[index].text
        if text == "--":
            return index + 1, used
        if text == "-" and spec.lone_dash:
            used.append(("-", None))
            index += 1
            continue
        if not text.startswith("-") or text == "-":
            break
        if not args[index].literal:
            raise OptionError(f"has an option computed at run time: `{text}`")
        if text.startswith("--"):
            name, equals, value = text[2:].partition("=")
            if name in spec.long_flags:
                used.append(("--" + name, value if equals else None))
            elif name in spec.long_with_arg and equals:
                used.append(("--" + name, value))
            elif name in spec.long_with_arg and index + 1 < len(args):
                index += 1
                used.append(("--" + name, args[index].text))
            else:
                raise OptionError(f"has an option the checker does not know: `{text}`")
            index += 1
            continue
        index = _short_cluster(args, index, spec, used) + 1
    return index, used


def _short_cluster(
    args: list[Word], index: int, spec: OptionSpec, used: list[tuple[str, str | None]]
) -> int:
    text = args[index].text
    if spec.numeric and text[1:].isdigit():
        used.append((text, None))
        return index
    for position, letter in enumerate(text[1:], start=1):
        attached = text[position + 1 :]
        if letter in spec.flags:
            used.append(("-" + letter, None))
        elif letter in spec.optional_arg:
            used.append(("-" + letter, attached or None))
            return index
        elif letter in spec.with_arg and attached:
            used.append(("-" + letter, attached))
            return index
        elif letter in spec.with_arg and index + 1 < len(args):
            used.append(("-" + letter, args[index + 1].text))
            return index + 1
        else:
            raise OptionError(f"has an option the checker does not know: `{text}`")
    return index


def mentions_option(
    args: list[Word], long_options: frozenset[str], letters: str, first_is_options: bool = False
) -> str | None:
    """The first argument that is (an abbreviation of) one of the given options."""
    for position, arg in enumerate(args):
        text = arg.text
        if text == "--":
            return None
        if text.startswith("--"):
            name = text.partition("=")[0]
            # GNU and git accept any unambiguous prefix of a long option.
            if len(name) > 3 and any(option.startswith(name) for option in long_options):
                return text
        elif (text.startswith("-") or (first_is_options and position == 0)) and any(
            letter in text for letter in letters
        ):
            return text
    return None


# -- wrappers ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WrapperSpec:
    """A command that starts the program named by its first operand."""

    options: OptionSpec = OptionSpec()
    assignments: bool = False  # NAME=VALUE operands come before the program
    skip_operands: int = 0  # operands before the program (timeout's duration)
    refuse: frozenset[str] = frozenset()  # options that build the command at run time
    no_program: frozenset[str] = frozenset()  # options under which nothing runs
    bare_program: str | None = None  # what the wrapper is without a program
    bare_doubt: str | None = None
    always_ask: str | None = None


WRAPPERS: dict[str, WrapperSpec] = {
    "env": WrapperSpec(
        OptionSpec(
            flags="i0v",
            with_arg="uCS",
            long_flags=_words(
                "ignore-environment null debug default-signal ignore-signal block-signal "
                "list-signal-handling"
            ),
            long_with_arg=frozenset({"unset", "chdir", "split-string"}),
            lone_dash=True,
        ),
        assignments=True,
        refuse=frozenset({"-S", "--split-string"}),
        # Alone, env prints the environment: a program like any other.
        bare_program="env",
    ),
    "nice": WrapperSpec(
        OptionSpec(with_arg="n", long_with_arg=frozenset({"adjustment"}), numeric=True)
    ),
    "nohup": WrapperSpec(),
    "timeout": WrapperSpec(
        OptionSpec(
            flags="v",
            with_arg="sk",
            long_flags=frozenset({"preserve-status", "foreground", "verbose"}),
            long_with_arg=frozenset({"signal", "kill-after"}),
        ),
        skip_operands=1,
    ),
    "time": WrapperSpec(
        OptionSpec(
            flags="pavq",
            with_arg="fo",
            long_flags=frozenset({"portability", "append", "verbose", "quiet"}),
            long_with_arg=frozenset({"format", "output"}),
        )
    ),
    "stdbuf": WrapperSpec(
        OptionSpec(with_arg="ioe", long_with_arg=frozenset({"input", "output", "error"}))
    ),
    "command": WrapperSpec(OptionSpec(flags="pvV"), no_program=frozenset({"-v", "-V"})),
    "exec": WrapperSpec(
        OptionSpec(flags="cl", with_arg="a"),
        bare_doubt="`exec` without a program rewires the shell's own input and output",
    ),
    # Without a program xargs runs echo.
    "xargs": WrapperSpec(
        OptionSpec(
            flags="0prtx",
            with_arg="adEILnPs",
            optional_arg="eil",
            long_flags=_words(
                "null interactive no-run-if-empty verbose exit open-tty show-limits replace eof "
                "max-lines"
            ),
            long_with_arg=_words(
                "arg-file delimiter max-args max-procs max-chars process-slot-var"
            ),
        )
    ),
    "sudo": WrapperSpec(
        OptionSpec(flags="AbEeHiKklnPSsVv", with_arg="CDghprTtUu"),
        always_ask="`sudo` runs a command as another user; that always needs approval",
    ),
    "doas": WrapperSpec(
        OptionSpec(flags="nsL", with_arg="uC"),
        always_ask="`doas` runs a command as another user; that always needs approval",
    ),
}


# -- shells -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShellInvocation:
    script: Word | None = None  # the -c script
    has_operands: bool = False
    problem: str | None = None


_SHELL_LONG_OPTIONS = frozenset(
    {"--norc", "--noprofile", "--posix", "--login", "--noediting", "--restricted", "--verbose"}
)
_SHELL_LETTERS = "abefhklmnprstuvxBCEHPT"


def shell_invocation(args: list[Word]) -> ShellInvocation:
    """Read ``sh [options] [-c script | file] [args]`` far enough to find the script."""
    has_script_option = False
    index = 0
    while index < len(args):
        text = args[index].text
        if text[:1] in ("-", "+") and not args[index].literal:
            return ShellInvocation(problem=f"has an option computed at run time: `{text}`")
        if text in ("-", "--"):
            index += 1
            break
        if text in _SHELL_LONG_OPTIONS:
            index += 1
            continue
        if text.startswith("--") or text[:1] not in ("-", "+") or len(text) < 2:
            if text.startswith("--"):
                return ShellInvocation(problem=f"has an option the checker does not know: `{text}`")
            break
        for letter in text[1:]:
            if letter == "c":
                has_script_option = True
            elif letter in "oO":
                index += 1  # the option name
            elif letter == "i":
                return ShellInvocation(problem="runs an interactive shell, which reads rc files")
            elif letter not in _SHELL_LETTERS:
                return ShellInvocation(problem=f"has an option the checker does not know: `{text}`")
        index += 1
    operands = args[index:]
    if has_script_option and not operands:
        return ShellInvocation(problem="has -c without a script")
    script = operands[0] if has_script_option else None
    return ShellInvocation(script=script, has_operands=bool(operands))


# -- builtins ---------------------------------------------------------------


def _no_doubts(args: list[Word]) -> list[str]:
    return []


def _names(names: list[str], what: str) -> list[str]:
    return [reason for name in names if (reason := name_doubt(name, what))]


def _printf(args: list[Word]) -> list[str]:
    # `printf -v 'a[$(cmd)]'` evaluates the subscript, running cmd.
    if args and args[0].text == "-v":
        return _names([arg.text for arg in args[1:2]], "printf -v variable")
    return []


def _test(args: list[Word]) -> list[str]:
    # `test -v 'a[$(cmd)]'` evaluates the subscript too.
    names = [args[i + 1].text for i, a in enumerate(args[:-1]) if a.text in ("-v", "-R")]
    return _names(names, "test -v variable")


def _read(args: list[Word]) -> list[str]:
    try:
        index, options = first_operand(args, OptionSpec(flags="ers", with_arg="adinNptu"))
    except OptionError as exc:
        return [f"`read` {exc}"]
    array = [value or "" for option, value in options if option == "-a"]
    return _names(array + [arg.text for arg in args[index:]], "read variable")


def _export(args: list[Word]) -> list[str]:
    try:
        index, _options = first_operand(args, OptionSpec(flags="fnp"))
    except OptionError as exc:
        return [f"`export` {exc}"]
    if index >= len(args):
        return ["`export` without names prints every exported variable, secrets included"]
    return _names([arg.text.partition("=")[0] for arg in args[index:]], "exported variable")


def _set(args: list[Word]) -> list[str]:
    if not args:
        return ["`set` without arguments prints every variable, secrets included"]
    return []


# Builtins that only touch the shell's own state, allowed without listing.
# Each is paired with the check of arguments that would make it unsafe.
HARMLESS_BUILTINS: dict[str, Callable[[list[Word]], list[str]]] = {
    "cd": _no_doubts,
    "echo": _no_doubts,
    "printf": _printf,
    "true": _no_doubts,
    "false": _no_doubts,
    "test": _test,
    "[": _test,
    "pwd": _no_doubts,
    "export": _export,
    "set": _set,
    "exit": _no_doubts,
    "return": _no_doubts,
    "break": _no_doubts,
    "continue": _no_doubts,
    "shift": _no_doubts,
    "read": _read,
    ":": _no_doubts,
}

# Builtins whose effect is code the analysis cannot see.
RISKY_BUILTINS: dict[str, str] = {
    "eval": "`eval` runs a string built at run time as a command",
    "source": "`source` runs the commands in a file, which cannot be checked here",
    ".": "`.` runs the commands in a file, which cannot be checked here",
    "trap": "`trap` registers a command to run later",
    "alias": "`alias` can make a harmless-looking name run something else",
    "builtin": "`builtin` bypasses functions and changes what a name runs",
    "enable": "`enable` changes which builtins exist",
    "hash": "`hash` can make a program name run a different file",
}


# -- tools with options that run commands -----------------------------------

# Allowed programs whose options start other programs: (long options, letters).
EXEC_OPTIONS: dict[str, tuple[frozenset[str], str]] = {
    "tar": (
        _words(
            "--to-command --use-compress-program --checkpoint-action --info-script "
            "--new-volume-script --rsh-command --rmt-command"
        ),
        "IF",
    ),
    "rg": (_words("--pre"), ""),
    "sort": (_words("--compress-program"), ""),
    "rsync": (_words("--rsh --rsync-path"), "e"),
    "man": (_words("--pager --html"), "PH"),
}

_GIT_EXEC_OPTIONS = _words(
    "--upload-pack --receive-pack --exec --extcmd --open-files-in-pager --config --template --tool"
)
_GIT_EXEC_LETTERS = {
    "clone": "uc",
    "fetch": "u",
    "pull": "u",
    "ls-remote": "u",
    "rebase": "x",
    "difftool": "xt",
    "grep": "O",
}
_GIT_REMOTE_COMMANDS = _words(
    "clone fetch pull push ls-remote archive remote submodule rebase difftool grep"
)
_GIT_GLOBAL_WITH_ARG = frozenset(
    {"-C", "--git-dir", "--work-tree", "--namespace", "--super-prefix", "--list-cmds"}
)
_GIT_READ_CONFIG = frozenset(
    {"--get", "--get-all", "--get-regexp", "--get-urlmatch", "--list", "-l", "get", "list"}
)


def git_doubt(args: list[Word]) -> str | None:
    """Why this git invocation may run commands of its own, or None.

    Git configuration can run programs (core.pager, core.fsmonitor,
    core.sshCommand, alias.x=!cmd), so setting it on the command line is
    as good as running a command; so are transports like ``ext::``.
    """
    index = 0
    while index < len(args) and args[index].text.startswith("-"):
        text = args[index].text
        if not args[index].literal:
            return f"git's option `{text}` is computed at run time"
        if text.startswith(("-c", "--config-env", "--exec-path=")):
            return f"`git {text}` sets configuration, which can run commands (core.pager, alias.*)"
        index += 2 if text in _GIT_GLOBAL_WITH_ARG else 1
    if index >= len(args):
        return None
    subcommand, rest = args[index].text, args[index + 1 :]
    if not args[index].literal:
        return f"the git subcommand `{subcommand}` is computed at run time"
    texts = [arg.text for arg in rest]
    if any("ext::" in text or "fd::" in text for text in texts):
        return "a git `ext::` transport runs a command"
    runs = (
        (subcommand == "config" and not _GIT_READ_CONFIG.intersection(texts))
        or (subcommand == "bisect" and texts[:1] == ["run"])
        or (subcommand == "submodule" and "foreach" in texts)
        or subcommand in ("filter-branch", "mergetool")
    )
    if runs:
        return f"`git {subcommand}` can run commands given on the command line or in config"
    letters = _GIT_EXEC_LETTERS.get(subcommand, "")
    option = mentions_option(rest, _GIT_EXEC_OPTIONS, letters)
    if option:
        return f"`git {subcommand} {option}` runs a command"
    dynamic = next((arg.text for arg in rest if could_be_option(arg)), None)
    if dynamic and subcommand in _GIT_REMOTE_COMMANDS:
        return f"`git {subcommand}` gets `{dynamic}`, which could expand to an option"
    return None


def could_be_option(word: Word) -> bool:
    """A glob or expansion that may turn into ``--option=…`` once bash expands it.

    The model can create files named like options, so ``tar *`` or
    ``git fetch $X`` may pass options the checker never saw.
    """
    return not word.literal and word.text[:1] in ("*", "?", "[", "$", "-")
