"""The limits of one run, and what it means to the user when one ends it.

A run is one task or reply, from the message to the answer (one
``AgentSession.run_turn``). It may take ``routing.max_loop_iterations``
steps, ``limits.max_run_tokens`` tokens (prompt + output of every step, as the
footer counts them) and ``limits.max_run_seconds`` of wall-clock time; each
model step may stream ``limits.max_step_tokens`` output tokens for at most
``limits.max_step_seconds``, and stops early when its tail repeats itself for
``limits.max_repeated_chars`` characters.

The run caps are checked at loop boundaries, and the run's deadline also
bounds the stream in flight; the step limits are enforced on the stream by
:func:`bot.models.stream_limits.limit_stream`. Every way of stopping is a
:class:`Stop`: the end reason (never ``completed``), the setting to raise, and
one plain sentence for the thread.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bot.config import Config
from bot.events import DoneReason
from bot.models import stream_limits as sl

RAISE_IT = "Reply to continue, or raise the setting."
# The done_reason of a stream cut by the run's deadline rather than the step's own.
RUN_DEADLINE = "max_run_seconds"


def _n(value: float) -> str:
    return f"{value:,.0f}"


def _s(seconds: float) -> str:
    return f"{seconds:,g} s"


@dataclass(frozen=True, slots=True)
class Stop:
    """Why a run ended early: its end reason, the setting that ended it, what to say."""

    reason: DoneReason
    setting: str | None
    message: str


class RunLimits:
    """The limits of one run that started at ``started`` (``time.monotonic()``)."""

    def __init__(self, config: Config, started: float | None = None) -> None:
        self.config = config
        self.limits = config.limits
        self.started = time.monotonic() if started is None else started
        seconds = self.limits.max_run_seconds
        self.deadline = None if seconds is None else self.started + seconds

    def options(self) -> dict[str, int]:
        """What a request asks the server for, so a server that honours it stops itself."""
        cap = self.limits.max_step_tokens
        return {} if cap is None else {"num_predict": cap}

    def for_stream(self) -> sl.StreamLimits:
        """The limits of the step starting now: its own deadline, or the run's if sooner."""
        deadline, reason = None, sl.MAX_SECONDS
        if self.limits.max_step_seconds is not None:
            deadline = time.monotonic() + self.limits.max_step_seconds
        if self.deadline is not None and (deadline is None or self.deadline < deadline):
            deadline, reason = self.deadline, RUN_DEADLINE
        return sl.StreamLimits(
            max_tokens=self.limits.max_step_tokens,
            deadline=deadline,
            deadline_reason=reason,
            repeated_chars=self.limits.max_repeated_chars,
        )

    def before_step(self, steps: int, tokens: int) -> Stop | None:
        """A stop when the run may not take another step (``steps`` taken so far)."""
        max_steps = self.config.routing.max_loop_iterations
        if steps >= max_steps:
            return Stop(
                DoneReason.MAX_ITERATIONS,
                "routing.max_loop_iterations",
                f"Stopped after {steps} steps: the limit is "
                f"routing.max_loop_iterations = {max_steps}. Reply to continue.",
            )
        max_tokens = self.limits.max_run_tokens
        if max_tokens is not None and tokens >= max_tokens:
            return Stop(
                DoneReason.LIMIT_REACHED,
                "limits.max_run_tokens",
                f"Stopped after {steps} steps: this run used {_n(tokens)} tokens, and the "
                f"limit is limits.max_run_tokens = {_n(max_tokens)}. {RAISE_IT}",
            )
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return self._out_of_time(steps)
        return None

    def _out_of_time(self, steps: int) -> Stop:
        seconds = self.limits.max_run_seconds or 0
        return Stop(
            DoneReason.LIMIT_REACHED,
            "limits.max_run_seconds",
            f"Stopped after {steps} steps: this run passed its time limit, "
            f"limits.max_run_seconds = {_s(seconds)}. {RAISE_IT}",
        )

    def step_cut(
        self, done_reason: str | None, output_tokens: int, steps: int, dropped_calls: int
    ) -> Stop | None:
        """A stop when the step's answer was cut short (``done_reason`` in
        :data:`~bot.models.stream_limits.TRUNCATING`, or the run's deadline)."""
        if done_reason == RUN_DEADLINE:
            return self._out_of_time(steps)
        if done_reason not in sl.TRUNCATING:
            return None
        cap = self.limits.max_step_tokens
        setting: str | None
        if done_reason == sl.MAX_TOKENS or (
            done_reason == sl.SERVER_LENGTH and cap is not None and output_tokens >= cap
        ):
            setting = "limits.max_step_tokens"
            what = f"the model's answer passed {_n(cap or 0)} tokens ({setting})"
        elif done_reason == sl.SERVER_LENGTH:
            setting = "context.num_ctx"
            what = (
                f"the server cut the model's answer at its length limit after about "
                f"{_n(output_tokens)} tokens: the context window ({setting} = "
                f"{_n(self.config.context.num_ctx)}) or the server's own output limit is full"
            )
        elif done_reason == sl.MAX_SECONDS:
            setting = "limits.max_step_seconds"
            seconds = self.limits.max_step_seconds or 0
            what = f"the model's answer ran past {_s(seconds)} ({setting})"
        elif done_reason == sl.REPETITION:
            setting = "limits.max_repeated_chars"
            what = (
                "the model kept repeating the same text for over "
                f"{_n(self.limits.max_repeated_chars)} characters ({setting})"
            )
        else:
            setting = None
            what = "the server's content filter cut the model's answer"
        unrun = ""
        if dropped_calls:
            unrun = f" Its {dropped_calls} tool call{'s' if dropped_calls > 1 else ''} did not run."
        tail = RAISE_IT if setting else "Reply to continue."
        return Stop(
            DoneReason.TRUNCATED,
            setting,
            f"Stopped: {what}. The answer above is incomplete.{unrun} {tail}",
        )
