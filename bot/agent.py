"""AgentSession: the loop that turns a task into model steps and tool calls.

One turn: drain steering → build the prompt → route → stream the model's
answer as events → run the tool calls it asked for → feed typed results back
→ repeat, until the model stops calling tools, a limit of the run (steps,
tokens, time: :mod:`bot.limits`) or of the step's answer, an error or a stop.
An answer cut short is never taken for a finished one: the run ends as
``truncated`` and says which setting cut it. Each boundary persists the new
messages, so a crash loses at most the step in flight.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.context import ContextWindow
from bot.events import AgentEvent, AgentEventKind, DoneReason, ThreadKey
from bot.limits import RunLimits, Stop
from bot.logs import bind_log_context
from bot.models.base import ChatRequest, ModelError, ToolCall
from bot.models.stream_limits import limit_stream
from bot.policy.approvals import Approver
from bot.policy.redaction import redact
from bot.render import stop_mark
from bot.routing import RouteDecision, SessionRouting
from bot.steering import SteeringMessage, SteeringQueue
from bot.toolcall_text import extract_text_tool_calls
from bot.tools.base import ToolContext, ToolResult

if TYPE_CHECKING:
    from bot.runtime import Runtime
    from bot.store.base import SessionRecord

log = logging.getLogger(__name__)

Listener = Callable[[AgentEvent], "Awaitable[None] | None"]
# Runs as a turn ends, before DONE (e.g. the workspace commit); returns footer items.
TurnEndHook = Callable[["AgentSession", DoneReason], Awaitable[list[str]]]


@dataclass(slots=True)
class TurnOptions:
    """What a command (or the caller) changes about one turn."""

    allowed_tools: set[str] | None = None
    model: str | None = None
    local_only: bool = False
    command: str | None = None
    complexity: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe, stored with the session so a resumed turn keeps its limits."""
        allowed = sorted(self.allowed_tools) if self.allowed_tools is not None else None
        return {
            "allowed_tools": allowed,
            "model": self.model,
            "local_only": self.local_only,
            "command": self.command,
            "complexity": self.complexity,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TurnOptions:
        allowed = data.get("allowed_tools")
        return cls(
            allowed_tools=set(allowed) if allowed is not None else None,
            model=data.get("model"),
            local_only=bool(data.get("local_only", False)),
            command=data.get("command"),
            complexity=data.get("complexity"),
        )


@dataclass(slots=True)
class TurnStats:
    steps: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tool_calls: int = 0
    tool_errors: int = 0
    models: dict[str, int] = field(default_factory=dict)
    routes: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    duration_s: float = 0.0
    cost_usd: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "tool_calls": self.tool_calls,
            "tool_errors": self.tool_errors,
            "models": dict(self.models),
            "routes": dict(self.routes),
            "duration_s": round(self.duration_s, 3),
            "cost_usd": round(self.cost_usd, 6),
        }


@dataclass(slots=True)
class StepAnswer:
    """What one model step said, and how its stream ended (``done_reason``)."""

    content: str
    calls: list[ToolCall]
    done_reason: str | None = None
    output_tokens: int = 0


@dataclass(slots=True)
class TurnOutcome:
    reason: DoneReason
    text: str
    stats: TurnStats
    error: str | None = None
    stopped_by: str | None = None  # the setting that ended the run early, if one did

    @property
    def ok(self) -> bool:
        return self.reason == DoneReason.COMPLETED


class AgentSession:
    """One conversation with the agent, bound to one thread."""

    def __init__(
        self,
        runtime: Runtime,
        record: SessionRecord,
        thread: ThreadKey,
        *,
        workspace: Path,
        history: list[dict[str, Any]] | None = None,
        approver: Approver | None = None,
        system_prompt: str | None = None,
    ) -> None:
        self.runtime = runtime
        # A sub-agent brings its own instructions instead of the persona.
        self.system_prompt_override = system_prompt
        self.record = record
        self.thread = thread
        self.workspace = workspace
        self.history: list[dict[str, Any]] = list(history or [])
        self.approver = approver
        self.steering = SteeringQueue()
        self._listeners: list[Listener] = []
        self._seq = 0
        self._unsaved: list[dict[str, Any]] = []
        self._task: asyncio.Task[TurnOutcome] | None = None
        self._stop_requested_by: str | None = None
        self._pause_requested = False
        self.turn_end_hooks: list[TurnEndHook] = []
        self.context = ContextWindow(runtime.config.context, runtime.router.tokens)
        self.routing = SessionRouting(runtime, record, thread)
        self._compaction_told = False
        from bot.tools.environment import build_tool_env

        self.tool_context = ToolContext(
            workspace=workspace,
            config=runtime.config,
            session_id=record.id,
            env=build_tool_env(runtime.config, workspace),
            scratchpad=list(record.scratchpad),
        )
        # Tools that work with the session itself (skills, sub-agents) find it here.
        self.tool_context.extras["session"] = self

    # --- identity and state -------------------------------------------------

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def requester(self) -> str:
        return self.record.requester

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Receive every event; returns the function that unsubscribes."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    # --- control ------------------------------------------------------------

    def start_turn(
        self, text: str, author: str, options: TurnOptions | None = None
    ) -> asyncio.Task[TurnOutcome]:
        """Run one turn in a task the session owns (so it can be cancelled)."""
        if self.running:
            raise RuntimeError(f"session {self.id} is already running")
        self._stop_requested_by = None
        self._pause_requested = False
        self._task = asyncio.create_task(
            self.run_turn(text, author, options), name=f"session-{self.id}"
        )
        return self._task

    def request_stop(self, by: str) -> bool:
        """Abort the model stream and any running tool; False when nothing runs."""
        if not self.running or self._task is None:
            return False
        self._stop_requested_by = by
        self._task.cancel()
        return True

    def request_pause(self) -> bool:
        """End the turn at the next loop boundary as ``interrupted`` (the bot is restarting)."""
        if not self.running:
            return False
        self._pause_requested = True
        return True

    def interrupt(self) -> bool:
        """Cancel now as ``interrupted`` (not ``cancelled``): the step in flight is lost,
        the transcript up to the last boundary is kept, and the session can resume."""
        if not self.running or self._task is None:
            return False
        self._task.cancel()
        return True

    async def wait(self) -> TurnOutcome | None:
        if self._task is None:
            return None
        return await asyncio.shield(self._task)

    async def add_steering(self, author: str, text: str, message_id: str = "") -> SteeringMessage:
        """Persist, then queue, a steering message for the next boundary."""
        received = time.time()
        store_id = await self.runtime.store.add_steering(
            self.id, author, text, message_id, received
        )
        message = SteeringMessage(author, text, message_id, store_id, received)
        self.steering.put(message)
        return message

    # --- events -------------------------------------------------------------

    async def emit(self, kind: AgentEventKind, text: str = "", **data: Any) -> AgentEvent:
        self._seq += 1
        event = AgentEvent(kind, self.id, text, data, self._seq)
        for listener in list(self._listeners):
            try:
                result = listener(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("session %s: a listener failed on %s", self.id, kind)
        await self.runtime.plugins.acall_each("session_event", session=self, event=event)
        return event

    # --- the loop -----------------------------------------------------------

    async def run_turn(
        self, text: str, author: str, options: TurnOptions | None = None
    ) -> TurnOutcome:
        options = options or TurnOptions()
        stats = TurnStats()
        config = self.runtime.config
        store = self.runtime.store
        final_text = ""
        error: str | None = None
        reason = DoneReason.COMPLETED
        limits = RunLimits(config)
        stop: Stop | None = None
        bind_log_context(self.id, str(self.thread))
        self.record.status = "running"
        self.record.meta["turn_options"] = options.to_dict()
        await store.update_session(self.id, status="running", meta=self.record.meta)
        if text:
            self._append({"role": "user", "content": text, "_author": author})
            await self._flush()  # a crash in the first step must not lose what was asked
        tools = self.runtime.tools
        allowed = options.allowed_tools
        schemas = tools.schemas(allowed)
        known = set(allowed) if allowed is not None else set(tools.names())
        system_prompt = self.system_prompt_override or self.runtime.system_prompt(
            sorted(known), self.workspace
        )
        try:
            await self.routing.begin_turn(
                text,
                command_model=options.model,
                declared=options.complexity,
                local_only=options.local_only,
            )
            while True:
                if self._pause_requested:
                    reason = DoneReason.INTERRUPTED
                    break
                stop = limits.before_step(
                    stats.steps, stats.prompt_tokens + stats.completion_tokens
                )
                if stop is not None:
                    reason = stop.reason
                    await self.emit(AgentEventKind.NOTICE, stop.message)
                    break
                await self._apply_steering()
                stats.steps += 1
                last = self.context.last
                local_ctx = await self.runtime.resolve_num_ctx(config.routing.local_model)
                decision = await self.routing.decide(
                    stats.steps, last.tokens if last else 0, last.budget if last else local_ctx
                )
                answer = await self._routed_step(decision, system_prompt, schemas, stats, limits)
                content, calls = answer.content, answer.calls
                stop = limits.step_cut(
                    answer.done_reason, answer.output_tokens, stats.steps, len(calls)
                )
                if stop is not None:
                    # Its calls stay unrun: the model was cut mid-answer. Keeping the
                    # partial text lets a reply continue from it.
                    self._append({"role": "assistant", "content": content})
                    final_text = content
                    reason = stop.reason
                    await self.emit(AgentEventKind.NOTICE, stop.message)
                    break
                if not calls and content:
                    calls, content = extract_text_tool_calls(content, known)
                assistant: dict[str, Any] = {"role": "assistant", "content": content}
                if calls:
                    assistant["tool_calls"] = [c.to_message() for c in calls]
                self._append(assistant)
                if not calls:
                    final_text = content
                    if self.steering:
                        continue  # steering arrived during the answer: act on it
                    break
                for call in calls:
                    await self._run_tool(call, options, stats)
                await self._flush()
        except asyncio.CancelledError:
            if self._stop_requested_by is None:
                reason = DoneReason.INTERRUPTED
                await self._finish(reason, final_text, stats, None)
                raise
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            reason = DoneReason.CANCELLED
            await self.emit(AgentEventKind.NOTICE, f"Stopped by {self._stop_requested_by}.")
        except ModelError as exc:
            reason = DoneReason.ERROR
            error = exc.user_message
            await self.emit(AgentEventKind.ERROR, exc.user_message, error_type=type(exc).__name__)
        except Exception as exc:  # a bug must end this session, not the bot
            log.exception("session %s failed", self.id)
            reason = DoneReason.ERROR
            error = f"internal error: {type(exc).__name__}: {exc}"
            await self.emit(AgentEventKind.ERROR, error, error_type=type(exc).__name__)
        return await self._finish(reason, final_text, stats, error, stop)

    async def _finish(
        self,
        reason: DoneReason,
        text: str,
        stats: TurnStats,
        error: str | None,
        stop: Stop | None = None,
    ) -> TurnOutcome:
        stats.duration_s = time.perf_counter() - stats.started
        self.routing.end_turn()
        status = {
            DoneReason.COMPLETED: "idle",
            DoneReason.MAX_ITERATIONS: "idle",
            DoneReason.TRUNCATED: "idle",
            DoneReason.LIMIT_REACHED: "idle",
            DoneReason.CANCELLED: "cancelled",
            DoneReason.ERROR: "failed",
            DoneReason.INTERRUPTED: "interrupted",
        }[reason]
        self.record.status = status
        totals = dict(self.record.stats)
        for key in ("steps", "prompt_tokens", "completion_tokens", "tool_calls", "tool_errors"):
            totals[key] = int(totals.get(key, 0)) + int(getattr(stats, key))
        totals["turns"] = int(totals.get("turns", 0)) + 1
        self.record.stats = totals
        try:
            await self._flush()
            await self.runtime.store.update_session(
                self.id,
                status=status,
                stats=totals,
                scratchpad=self.tool_context.scratchpad,
            )
        except Exception:
            log.exception("session %s: could not persist the end of the turn", self.id)
        stopped_by = stop.setting if stop is not None and stop.reason is reason else None
        footer: list[str] = [stop_mark(reason.value, stopped_by)] if stopped_by else []
        for hook in list(self.turn_end_hooks):
            try:
                footer.extend(await hook(self, reason))
            except Exception:
                log.exception("session %s: a turn-end hook failed", self.id)
        await self.emit(
            AgentEventKind.DONE,
            text,
            reason=reason.value,
            error=error,
            stats=stats.to_dict(),
            footer=footer,
            stopped_by=stopped_by,
        )
        return TurnOutcome(reason, text, stats, error, stopped_by)

    async def _apply_steering(self) -> None:
        messages = self.steering.drain()
        if not messages:
            return
        for message in messages:
            self.routing.observe_text(message.text)
            self._append(
                {"role": "user", "content": message.as_user_content(), "_author": message.author}
            )
        ids = [m.store_id for m in messages if m.store_id is not None]
        await self._flush()
        await self.runtime.store.mark_steering_applied(ids, time.time())
        for message in messages:
            await self.emit(
                AgentEventKind.STEERING,
                message.text,
                author=message.author,
                message_id=message.message_id,
            )

    async def _routed_step(
        self,
        decision: RouteDecision,
        system_prompt: str,
        schemas: list[dict[str, Any]],
        stats: TurnStats,
        limits: RunLimits,
    ) -> StepAnswer:
        """One model step on the decided model; on the big model's failure, once more on
        ``routing.fallback_model`` (the thread is told why once). Every call is recorded."""
        while True:
            notice = self.routing.notice_for(decision)
            if notice:
                await self.emit(AgentEventKind.NOTICE, notice)
            route = self.routing.route_key(decision)
            await self.emit(AgentEventKind.STEP, step=stats.steps, **decision.to_dict())
            before = (stats.prompt_tokens, stats.completion_tokens)
            started = time.perf_counter()
            try:
                result = await self._model_step(decision, system_prompt, schemas, stats, limits)
            except ModelError as exc:
                latency = (time.perf_counter() - started) * 1000
                await self.routing.record(
                    decision, stats.steps, latency_ms=latency, prompt_tokens=0,
                    completion_tokens=0, error=type(exc).__name__,
                )  # fmt: skip
                fallback = self.routing.fallback_for(decision, exc)
                if fallback is None:
                    raise
                decision = fallback
                continue
            stats.models[decision.model] = stats.models.get(decision.model, 0) + 1
            stats.routes[route] = stats.routes.get(route, 0) + 1
            stats.cost_usd += await self.routing.record(
                decision,
                stats.steps,
                latency_ms=(time.perf_counter() - started) * 1000,
                prompt_tokens=stats.prompt_tokens - before[0],
                completion_tokens=stats.completion_tokens - before[1],
            )
            return result

    async def _summarise(self, messages: list[dict[str, Any]]) -> str:
        """Auto-compaction: the local model writes one summary of older steps."""
        from bot.context import summarise_request

        model = self.runtime.config.routing.local_model
        num_ctx = await self.runtime.resolve_num_ctx(model)
        request = summarise_request(model, messages, num_ctx, self.record.task)
        request.keep_alive = self.runtime.config.routing.keep_alive
        limits = RunLimits(self.runtime.config)
        request.options = limits.options() | request.options
        parts: list[str] = []
        stream = self.runtime.models.client_for(model).stream_chat(request)
        async with aclosing(limit_stream(stream, limits.for_stream())) as chunks:
            async for chunk in chunks:
                parts.append(chunk.content)
        return "".join(parts)

    async def _model_step(
        self,
        decision: RouteDecision,
        system_prompt: str,
        schemas: list[dict[str, Any]],
        stats: TurnStats,
        limits: RunLimits,
    ) -> StepAnswer:
        config = self.runtime.config
        num_ctx = await self.runtime.resolve_num_ctx(decision.model)
        options: dict[str, Any] = {"num_ctx": num_ctx, **limits.options()}
        if config.routing.temperature is not None:
            options["temperature"] = config.routing.temperature
        built = await self.context.prepare(
            system_prompt,
            self.history,
            num_ctx=num_ctx,
            model=decision.model,
            tools=schemas,
            summarise=self._summarise if config.context.auto_compact else None,
        )
        if built.compaction is not None:
            self._append(built.compaction)
            if not self._compaction_told:
                self._compaction_told = True
                await self.emit(
                    AgentEventKind.NOTICE,
                    "The conversation outgrew the model's context window: I summarised "
                    "the older steps to keep going.",
                )
        await self.runtime.router.gpu.prepare(decision.model)
        request = ChatRequest(
            model=decision.model,
            messages=built.messages,
            tools=schemas,
            options=options,
            keep_alive=config.routing.keep_alive,
            think=config.routing.think,
        )
        client = self.runtime.models.client_for(decision.model)
        answer = StepAnswer("", [])
        content: list[str] = []
        stream = limit_stream(client.stream_chat(request), limits.for_stream())
        async with aclosing(stream):
            async for chunk in stream:
                if chunk.thinking:
                    await self.emit(AgentEventKind.THINKING, chunk.thinking)
                if chunk.content:
                    content.append(chunk.content)
                    await self.emit(AgentEventKind.TOKEN, chunk.content)
                if chunk.tool_calls:
                    answer.calls.extend(chunk.tool_calls)
                if chunk.done:
                    answer.done_reason = chunk.done_reason
                    answer.output_tokens = chunk.completion_tokens or 0
                    # A cut stream (or a server without usage) reports no prompt
                    # count: the estimate keeps the run's token cap honest.
                    prompt = chunk.prompt_tokens
                    stats.prompt_tokens += built.tokens if prompt is None else prompt
                    stats.completion_tokens += answer.output_tokens
                    self.runtime.router.tokens.observe(decision.model, built.raw_tokens, prompt)
        answer.content = "".join(content)
        return answer

    async def _run_tool(self, call: ToolCall, options: TurnOptions, stats: TurnStats) -> None:
        stats.tool_calls += 1
        await self.emit(
            AgentEventKind.TOOL_CALL,
            call.name,
            id=call.id,
            name=call.name,
            arguments=call.arguments,
        )
        result: ToolResult = await self.runtime.runner.run(
            call,
            self.tool_context,
            session=self,
            approver=self.approver,
            allowed_tools=options.allowed_tools,
            requester=self.requester,
            thread=str(self.thread),
        )
        self.routing.observe_tool(call, result)
        if not result.ok:
            stats.tool_errors += 1
            await self.emit(
                AgentEventKind.ERROR,
                f"{call.name}: {result.summary()}",
                tool=call.name,
                id=call.id,
                recoverable=True,
            )
        await self.emit(
            AgentEventKind.TOOL_RESULT,
            result.summary(),
            id=call.id,
            name=call.name,
            arguments=call.arguments,
            result=result.to_dict(),
        )
        message: dict[str, Any] = {
            "role": "tool",
            "tool_name": call.name,
            "tool_call_id": call.id,
            "content": result.for_model(),
            "_summary": f"{call.name}({_short_args(call.arguments)}) → {result.summary()}",
        }
        if call.name == "think":
            message["_reasoning"] = True
        self._append(message)

    # --- persistence ----------------------------------------------------------

    def _append(self, message: dict[str, Any]) -> None:
        # Whatever enters the history (a pasted token, a model's echo) is redacted
        # before it reaches the store or the next prompt. Tool output was redacted
        # by the runner already, before any event carried it.
        content = message.get("content")
        if isinstance(content, str) and content and message.get("role") != "tool":
            message["content"] = redact(content)
        self.history.append(message)
        self._unsaved.append(message)

    async def _flush(self) -> None:
        if not self._unsaved:
            return
        batch, self._unsaved = self._unsaved, []
        await self.runtime.store.append_messages(self.id, batch)


def _short_args(arguments: dict[str, Any], limit: int = 60) -> str:
    text = ", ".join(f"{k}={v!r}" for k, v in arguments.items())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def new_session_id() -> str:
    return uuid.uuid4().hex[:12]
