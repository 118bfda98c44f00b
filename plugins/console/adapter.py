"""Console adapter implementation (imported only when ``chat`` runs)."""

from __future__ import annotations

import asyncio
import getpass
import json
import signal
import sys
import threading
import uuid
from typing import IO, TYPE_CHECKING, Any

from bot.adapters import ChatAdapter
from bot.events import AgentEvent, AgentEventKind, ChatEvent, ChatEventKind, ThreadKey
from bot.policy.approval_view import approval_view
from bot.policy.approvals import (
    AllowingApprover,
    ApprovalDecision,
    ApprovalRequest,
    Approver,
    DenyingApprover,
)
from bot.render import describe_tool_call, footer

if TYPE_CHECKING:
    from bot.agent import AgentSession
    from bot.sessions import SessionManager

LOCAL_USER = "local"


class _Style:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.enabled else text


class ConsoleRenderer:
    """Writes one turn to the terminal (or JSON lines with ``--json``)."""

    def __init__(self, adapter: ConsoleAdapter) -> None:
        self.adapter = adapter
        self.out = adapter.out
        self.style = adapter.style
        self._mid_line = False

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def _line(self, text: str) -> None:
        if self._mid_line:
            self._write("\n")
            self._mid_line = False
        self._write(text + "\n")

    async def __call__(self, event: AgentEvent) -> None:
        if self.adapter.json_output:
            self._write(json.dumps(event.to_dict(), ensure_ascii=False) + "\n")
            return
        kind = event.kind
        if kind is AgentEventKind.TOKEN:
            self._write(event.text)
            self._mid_line = not event.text.endswith("\n")
        elif kind is AgentEventKind.THINKING:
            if self.adapter.verbose:
                self._write(self.style("2", event.text))
                self._mid_line = True
        elif kind is AgentEventKind.TOOL_CALL:
            args = event.data.get("arguments") or {}
            self._line(self.style("36", "⚙ " + describe_tool_call(event.text, args)))
        elif kind is AgentEventKind.TOOL_RESULT:
            ok = bool((event.data.get("result") or {}).get("ok"))
            self._line(self.style("32" if ok else "31", "  → " + event.text))
        elif kind is AgentEventKind.STEERING:
            self._line(self.style("35", f"↳ steering applied: {event.text}"))
        elif kind is AgentEventKind.NOTICE:
            self._line(self.style("33", event.text))
        elif kind is AgentEventKind.ERROR:
            if not event.data.get("recoverable"):
                self._line(self.style("31", "error: " + event.text))
        elif kind is AgentEventKind.DONE:
            stats = event.data.get("stats") or {}
            reason = event.data.get("reason", "")
            tail = [] if reason == "completed" else [str(reason)]
            tail += [str(item) for item in event.data.get("footer") or []]
            self._line(self.style("2", "— " + footer(stats, extra=tail)))

    async def close(self) -> None:
        if self._mid_line:
            self._write("\n")
            self._mid_line = False
        self.adapter.turn_finished()


class ConsoleApprover:
    """Asks y/n at the terminal; the next line typed answers."""

    def __init__(self, adapter: ConsoleAdapter) -> None:
        self.adapter = adapter

    async def request_approval(self, request: ApprovalRequest) -> ApprovalDecision:
        # The whole call, with escapes and bidi controls spelled out: the terminal
        # must show what runs, not what the call's own bytes make it draw.
        question = approval_view(request, timeout=0).plain(whole=True)
        kept = [line for line in question.splitlines() if not line.startswith("🔁")]
        prompt = "\n" + "\n".join(kept) + "\nApprove? [y/N] "
        answer = await self.adapter.ask(prompt)
        if answer.strip().lower() in {"y", "yes"}:
            return ApprovalDecision(approved=True, by=self.adapter.user_name)
        return ApprovalDecision(approved=False, by=self.adapter.user_name, reason="denied by you")


class ConsoleAdapter(ChatAdapter):
    name = "console"

    def __init__(
        self,
        host: Any = None,
        *,
        out: IO[str] | None = None,
        json_output: bool = False,
        allow_all: bool = False,
        interactive: bool | None = None,
        verbose: bool = False,
    ) -> None:
        options = dict(getattr(host, "options", {}) or {})
        self.out = out or sys.stdout
        self.json_output = bool(options.get("json", json_output))
        self.allow_all = bool(options.get("yes", allow_all))
        self.verbose = bool(options.get("verbose", verbose))
        tty = sys.stdin.isatty() if sys.stdin else False
        self.interactive = tty if interactive is None else interactive
        self.style = _Style(self.out.isatty() and not self.json_output)
        try:
            self.user_name = getpass.getuser()
        except Exception:
            self.user_name = LOCAL_USER
        self.sessions: SessionManager | None = None
        self.thread = ThreadKey("console", "local", uuid.uuid4().hex[:12])
        self._lines: asyncio.Queue[str | None] = asyncio.Queue()
        self._answer: asyncio.Future[str] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    # --- ChatAdapter ---------------------------------------------------------

    async def start(self, sessions: SessionManager) -> None:
        self.sessions = sessions
        sessions.register_adapter(self)

    async def stop(self) -> None:
        self._idle.set()

    def renderer(self, session: AgentSession, trigger: ChatEvent | None) -> ConsoleRenderer:
        self._idle.clear()
        return ConsoleRenderer(self)

    async def post_message(self, thread: ThreadKey, text: str) -> str:
        await self.post_notice(thread, text)
        return ""

    async def post_notice(self, thread: ThreadKey, text: str) -> None:
        if self.json_output:
            self.out.write(json.dumps({"kind": "notice", "text": text}) + "\n")
        else:
            self.out.write(text + "\n")
        self.out.flush()

    def approver(self, session: AgentSession) -> Approver:
        if self.allow_all:
            return AllowingApprover()
        if self.interactive:
            return ConsoleApprover(self)
        return DenyingApprover(
            "this is a headless run with nobody to ask; rerun with --yes to allow such calls"
        )

    def turn_finished(self) -> None:
        self._idle.set()

    # --- input ----------------------------------------------------------------

    async def ask(self, prompt: str) -> str:
        self.out.write(prompt)
        self.out.flush()
        self._answer = asyncio.get_running_loop().create_future()
        try:
            return await self._answer
        finally:
            self._answer = None

    def _start_stdin_reader(self) -> None:
        """Read stdin on a daemon thread: blocking reads stay off the loop, and a
        thread stuck in ``readline`` never holds up interpreter exit."""
        loop = asyncio.get_running_loop()

        def deliver(line: str | None) -> None:
            if line is not None and self._answer is not None and not self._answer.done():
                self._answer.set_result(line)
                return
            self._lines.put_nowait(None if line is None else line.rstrip("\n"))

        def read() -> None:
            while True:
                try:
                    line = sys.stdin.readline()
                except (OSError, ValueError):
                    line = ""
                try:
                    loop.call_soon_threadsafe(deliver, line or None)
                except RuntimeError:  # the loop is closed: we are exiting
                    return
                if not line:
                    return

        threading.Thread(target=read, name="console-stdin", daemon=True).start()

    def _message(self, text: str) -> ChatEvent:
        return ChatEvent(
            kind=ChatEventKind.MESSAGE,
            thread=self.thread,
            user=LOCAL_USER,
            user_name=self.user_name,
            text=text,
            mentions_bot=True,
            message_id="",
        )

    def _current_session(self) -> AgentSession | None:
        if self.sessions is None:
            return None
        for session in self.sessions.active_sessions():
            if session.thread == self.thread:
                return session
        return None

    def _on_sigint(self, exit_event: asyncio.Event) -> None:
        session = self._current_session()
        if session is not None and session.running:
            session.request_stop(f"{self.user_name} (Ctrl-C)")
        else:
            exit_event.set()

    # --- modes ------------------------------------------------------------------

    def resume(self, session: AgentSession) -> None:
        self.thread = session.thread

    async def run_task(self, task: str) -> int:
        """Headless: one task, then exit. 0 when the turn completed."""
        assert self.sessions is not None
        loop = asyncio.get_running_loop()
        exit_event = asyncio.Event()
        loop.add_signal_handler(signal.SIGINT, self._on_sigint, exit_event)
        try:
            await self.sessions.handle(self._message(task))
            session = await self.sessions.get_session(self.thread)
            if session is None or not session.running:
                return 2
            outcome = await session.wait()
            await self._idle.wait()
            return 0 if outcome is not None and outcome.ok else 1
        finally:
            loop.remove_signal_handler(signal.SIGINT)

    async def repl(self) -> int:
        assert self.sessions is not None
        loop = asyncio.get_running_loop()
        exit_event = asyncio.Event()
        loop.add_signal_handler(signal.SIGINT, self._on_sigint, exit_event)
        self._start_stdin_reader()
        self.out.write(
            "threadwright — type a task. While it works, a line steers it; "
            "Ctrl-C stops the step; /help lists commands; Ctrl-D exits.\n"
        )
        try:
            while not exit_event.is_set():
                if self._idle.is_set():
                    self.out.write(self.style("1", "> "))
                    self.out.flush()
                get_line = asyncio.ensure_future(self._lines.get())
                stop = asyncio.ensure_future(exit_event.wait())
                done, _ = await asyncio.wait({get_line, stop}, return_when=asyncio.FIRST_COMPLETED)
                if get_line not in done:
                    get_line.cancel()
                    break
                stop.cancel()
                line = get_line.result()
                if line is None:
                    session = self._current_session()
                    if session is not None:
                        await session.wait()
                        await self._idle.wait()
                    break
                text = line.strip()
                if not text:
                    continue
                if text in {"/exit", "/quit"} and self._current_session() is None:
                    break
                await self.sessions.handle(self._message(text))
            return 0
        finally:
            loop.remove_signal_handler(signal.SIGINT)
            await self.stop()
