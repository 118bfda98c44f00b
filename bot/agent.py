"""AgentSession: the loop that turns a task into model steps and tool calls.

One turn: drain steering → build the prompt → route → stream the model's
answer as events → run the tool calls it asked for → feed typed results back
→ repeat, until the model stops calling tools, the iteration cap, an error
or a stop. Each boundary persists the new messages, so a crash loses at most
the step in flight.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.context import ContextWindow
from bot.events import AgentEvent, AgentEventKind, DoneReason, ThreadKey
from bot.models.base import ChatRequest, ModelError, ToolCall
from bot.policy.approvals import Approver
from bot.routing import RouteDecision, StepInfo
from bot.steering import SteeringMessage, SteeringQueue
from bot.toolcall_text import extract_text_tool_calls
from bot.tools.base import ToolContext, ToolResult

if TYPE_CHECKING:
    from bot.runtime import Runtime
    from bot.store.base import SessionRecord

log = logging.getLogger(__name__)

Listener = Callable[[AgentEvent], "Awaitable[None] | None"]


@dataclass(slots=True)
class TurnOptions:
    """What a command (or the caller) changes about one turn."""

    allowed_tools: set[str] | None = None
    model: str | None = None
    local_only: bool = False
    command: str | None = None
    complexity: str | None = None


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
        }


@dataclass(slots=True)
class TurnOutcome:
    reason: DoneReason
    text: str
    stats: TurnStats
    error: str | None = None

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
        self.context = ContextWindow(runtime.config.context)
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
        plugins = self.runtime.plugins
        if plugins.pm.hook.session_event.get_hookimpls():
            await plugins.acall_each("session_event", session=self, event=event)
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
        self.record.status = "running"
        await store.update_session(self.id, status="running")
        if text:
            self._append({"role": "user", "content": text, "_author": author})
        tools = self.runtime.tools
        allowed = options.allowed_tools
        schemas = tools.schemas(allowed)
        known = set(allowed) if allowed is not None else set(tools.names())
        system_prompt = self.system_prompt_override or self.runtime.system_prompt(
            sorted(known), self.workspace
        )
        try:
            while True:
                if stats.steps >= config.routing.max_loop_iterations:
                    reason = DoneReason.MAX_ITERATIONS
                    await self.emit(
                        AgentEventKind.NOTICE,
                        f"Stopped after {stats.steps} steps: the limit is "
                        f"routing.max_loop_iterations = {config.routing.max_loop_iterations}. "
                        "Reply to continue.",
                    )
                    break
                await self._apply_steering()
                stats.steps += 1
                decision = await self.runtime.router.decide(
                    StepInfo(
                        session_id=self.id,
                        step=stats.steps,
                        task=self.record.task,
                        command_model=options.model,
                        local_only=options.local_only,
                    )
                )
                stats.models[decision.model] = stats.models.get(decision.model, 0) + 1
                route = "cloud" if self.runtime.models.is_cloud(decision.model) else "local"
                stats.routes[route] = stats.routes.get(route, 0) + 1
                await self.emit(AgentEventKind.STEP, step=stats.steps, **decision.to_dict())
                content, calls = await self._model_step(decision, system_prompt, schemas, stats)
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
        return await self._finish(reason, final_text, stats, error)

    async def _finish(
        self, reason: DoneReason, text: str, stats: TurnStats, error: str | None
    ) -> TurnOutcome:
        stats.duration_s = time.perf_counter() - stats.started
        status = {
            DoneReason.COMPLETED: "idle",
            DoneReason.MAX_ITERATIONS: "idle",
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
        await self.emit(
            AgentEventKind.DONE,
            text,
            reason=reason.value,
            error=error,
            stats=stats.to_dict(),
        )
        return TurnOutcome(reason, text, stats, error)

    async def _apply_steering(self) -> None:
        messages = self.steering.drain()
        if not messages:
            return
        for message in messages:
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

    async def _model_step(
        self,
        decision: RouteDecision,
        system_prompt: str,
        schemas: list[dict[str, Any]],
        stats: TurnStats,
    ) -> tuple[str, list[ToolCall]]:
        config = self.runtime.config
        options: dict[str, Any] = {"num_ctx": self.runtime.num_ctx(decision.model)}
        if config.routing.temperature is not None:
            options["temperature"] = config.routing.temperature
        request = ChatRequest(
            model=decision.model,
            messages=self.context.build(system_prompt, self.history),
            tools=schemas,
            options=options,
            keep_alive=config.routing.keep_alive,
            think=config.routing.think,
        )
        client = self.runtime.models.client_for(decision.model)
        content: list[str] = []
        calls: list[ToolCall] = []
        async for chunk in client.stream_chat(request):
            if chunk.thinking:
                await self.emit(AgentEventKind.THINKING, chunk.thinking)
            if chunk.content:
                content.append(chunk.content)
                await self.emit(AgentEventKind.TOKEN, chunk.content)
            if chunk.tool_calls:
                calls.extend(chunk.tool_calls)
            if chunk.done:
                stats.prompt_tokens += chunk.prompt_tokens or 0
                stats.completion_tokens += chunk.completion_tokens or 0
        return "".join(content), calls

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
