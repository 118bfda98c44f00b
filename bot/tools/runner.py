"""The tool runner: look up, ask the policy hooks, approve if needed, run, report.

Every outcome is a :class:`ToolResult`, so the model always gets an answer:
an unknown tool, bad arguments, a denial and a crash are all error results.
Only cancellation propagates.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.models.base import ToolCall
from bot.policy.approvals import ApprovalDecision, ApprovalRequest, Approver
from bot.policy.redaction import Redactor
from bot.render import describe_tool_call
from bot.tools.base import ToolContext, ToolResult
from bot.tools.registry import ToolRegistry

if TYPE_CHECKING:
    from bot.plugins import PluginHost

log = logging.getLogger(__name__)

MALFORMED_ARGS_KEY = "__malformed__"


@dataclass(frozen=True, slots=True)
class PolicyVerdict:
    decision: str  # allow | deny | ask
    reason: str = ""
    plugin: str = ""


def _normalise_verdict(plugin: str, value: Any) -> PolicyVerdict | None:
    if value is None:
        return None
    if isinstance(value, tuple) and len(value) == 2:
        decision, reason = value
    else:
        decision, reason = value, ""
    decision = str(decision).lower()
    if decision not in {"allow", "deny", "ask"}:
        return PolicyVerdict("deny", f"plugin {plugin} returned an unknown verdict {value!r}")
    return PolicyVerdict(decision, str(reason or ""), plugin)


class ToolRunner:
    def __init__(
        self, registry: ToolRegistry, host: PluginHost, redactor: Redactor | None = None
    ) -> None:
        self.registry = registry
        self.host = host
        # Tool output is redacted before anything sees it: the model, the
        # transcript, the chat reply and the audit log all get the same text.
        self.redactor = redactor or Redactor()

    def _redacted(self, result: ToolResult) -> ToolResult:
        redact = self.redactor.redact
        result.stdout = redact(result.stdout)
        result.stderr = redact(result.stderr)
        if result.error:
            result.error = redact(result.error)
        return result

    async def policy_verdict(self, call: ToolCall, session: Any) -> PolicyVerdict:
        """Combine every ``before_tool_call`` answer: deny wins, then ask, then allow."""
        caller = self.host.pm.hook.before_tool_call
        if not caller.get_hookimpls():
            return PolicyVerdict("allow")
        failures_before = len(self.host.failures)
        results = await self.host.acall_each("before_tool_call", call=call, session=session)
        if len(self.host.failures) > failures_before:
            # A policy plugin that crashes must fail closed, not open.
            plugin = self.host.failures[-1][0]
            return PolicyVerdict("deny", f"policy plugin {plugin} failed", plugin)
        verdicts = [v for r in results if (v := _normalise_verdict(r.plugin, r.value))]
        for decision in ("deny", "ask"):
            for v in verdicts:
                if v.decision == decision:
                    return v
        return PolicyVerdict("allow")

    async def run(
        self,
        call: ToolCall,
        ctx: ToolContext,
        *,
        session: Any = None,
        approver: Approver | None = None,
        allowed_tools: set[str] | None = None,
        requester: str = "",
        thread: str = "",
    ) -> ToolResult:
        """Decide, run, and tell the ``after_tool_call`` hooks about every outcome —
        refusals included, so an audit sees what did not run as well as what did."""
        started = time.perf_counter()
        result = await self._decide_and_run(
            call, ctx, session, approver, allowed_tools, requester, thread
        )
        result.metadata.setdefault("duration_ms", round((time.perf_counter() - started) * 1000, 2))
        result.metadata.setdefault("verdict", "refused")
        if self.host.pm.hook.after_tool_call.get_hookimpls():
            await self.host.acall_each("after_tool_call", call=call, result=result, session=session)
        return result

    async def _decide_and_run(
        self,
        call: ToolCall,
        ctx: ToolContext,
        session: Any,
        approver: Approver | None,
        allowed_tools: set[str] | None,
        requester: str,
        thread: str,
    ) -> ToolResult:
        tool = self.registry.get(call.name)
        if tool is None or (allowed_tools is not None and call.name not in allowed_tools):
            names = sorted(allowed_tools) if allowed_tools is not None else self.registry.names()
            return ToolResult.failure(
                f"unknown tool {call.name!r}; available tools: {', '.join(names)}",
                metadata={"verdict": "unknown tool"},
            )
        if MALFORMED_ARGS_KEY in call.arguments:
            return ToolResult.failure(
                f"the arguments for {call.name} were not valid JSON: "
                f"{str(call.arguments[MALFORMED_ARGS_KEY])[:200]!r}; send a JSON object",
                metadata={"verdict": "malformed"},
            )
        verdict = await self.policy_verdict(call, session)
        approval: ApprovalDecision | None = None
        if verdict.decision == "deny":
            return ToolResult.failure(
                f"denied by policy: {verdict.reason or 'not allowed'}",
                metadata={"verdict": "denied", "policy": verdict.plugin},
            )
        if verdict.decision == "ask":
            if approver is None:
                return ToolResult.failure(
                    f"needs approval ({verdict.reason}) and no one can approve here",
                    metadata={"verdict": "denied"},
                )
            approval = await approver.request_approval(
                ApprovalRequest(
                    session_id=ctx.session_id,
                    thread=thread,
                    requester=requester,
                    tool=call.name,
                    arguments=dict(call.arguments),
                    reason=verdict.reason,
                    summary=describe_tool_call(call.name, call.arguments, limit=400),
                )
            )
            if not approval.approved:
                return ToolResult.failure(
                    f"not run: {approval.verdict()} (it needed approval because "
                    f"{verdict.reason or 'policy asked'}). Try another way, or ask the user.",
                    metadata={"verdict": approval.verdict()},
                )
        result = self._redacted(await tool(ctx, call.arguments))
        result.metadata.setdefault(
            "verdict", approval.verdict() if approval is not None else "allowed"
        )
        return result
