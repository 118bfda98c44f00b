"""The audit log: every tool call, who asked, where, what ran, the verdict, the outcome.

An ``after_tool_call`` hook like any plugin's; the runner calls it for every
outcome, so refusals are audited as well as what ran. ``threadwright audit``
lists and filters the log.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from bot import hookimpl
from bot.render import describe_tool_call
from bot.store.base import AuditEntry

log = logging.getLogger(__name__)


def what_ran(call: Any) -> str:
    """For bash, the programs the parser found; for other tools, the compact call."""
    if call.name == "bash":
        from bot.policy.shell import analyze_command  # loads the bash grammar: not at start-up

        command = str(call.arguments.get("command", ""))
        programs = analyze_command(command).programs
        return f"bash: {' | '.join(programs) if programs else '(nothing recognised)'}"
    return describe_tool_call(call.name, call.arguments, limit=200)


@hookimpl
async def after_tool_call(call: Any, result: Any, session: Any) -> None:
    if session is None:
        return
    entry = AuditEntry(
        ts=time.time(),
        session_id=session.id,
        thread=str(session.thread),
        requester=session.requester,
        tool=call.name,
        arguments=dict(call.arguments),
        ran=what_ran(call),
        verdict=str(result.metadata.get("verdict", "")),
        ok=bool(result.ok),
        exit_code=result.exit_code,
        duration_ms=float(result.metadata.get("duration_ms", 0.0)),
    )
    try:
        await session.runtime.store.add_audit(entry)
    except Exception:  # the audit must never break a run; it must be loud though
        log.exception("could not write the audit entry for %s in %s", call.name, session.id)
