"""Policy: what the bot may do without asking a person first.

:mod:`bot.policy.shell` decides which bash commands stay within
``tools.bash.allowed_commands``; :mod:`bot.policy.approvals` asks a person
about the rest; :mod:`bot.policy.redaction` keeps secrets out of logs.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Redirection", "ShellAnalysis", "ShellVerdict", "analyze_command", "check_command"]


def __getattr__(name: str) -> Any:
    # Imported lazily: the shell parser loads bashlex's grammar tables (about
    # 0.1 s), which code that only needs approvals or redaction should not pay.
    if name in __all__:
        from bot.policy import shell

        return getattr(shell, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
