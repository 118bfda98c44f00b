"""The tool contract: plain typed async functions become model-callable tools.

A tool is ``async def name(ctx: ToolContext, arg: type, ...) -> ToolResult | str``.
Its JSON schema comes from the signature, its description from the
docstring's first paragraph, and each argument's description from the
docstring's ``Args:`` section. Arguments are validated with pydantic before
the function runs; a tool that raises becomes an error result for the model.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_type_hints

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

if TYPE_CHECKING:
    from bot.config import Config

# How many lines of stderr lead a failed tool's result, so the model sees why
# it failed before any stdout noise.
STDERR_LEAD_LINES = 12


class ToolError(Exception):
    """Raise inside a tool for an expected failure: the message reaches the model as-is."""


@dataclass(slots=True)
class ToolResult:
    """Every tool returns this shape, whatever it does."""

    ok: bool
    stdout: str = ""
    stderr: str = ""
    exit_code: int | None = None
    error: str | None = None
    truncated: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def failure(cls, error: str, **kw: Any) -> ToolResult:
        return cls(ok=False, error=error, **kw)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "exit_code": self.exit_code,
            "error": self.error,
            "truncated": self.truncated,
            "metadata": dict(self.metadata),
        }

    def for_model(self) -> str:
        """The text fed back to the model. A failure leads with the error and stderr."""
        parts: list[str] = []
        if not self.ok:
            head = self.error or "tool failed"
            if self.exit_code is not None:
                head = f"{head} (exit code {self.exit_code})"
            parts.append(f"ERROR: {head}")
            if self.stderr:
                lines = self.stderr.splitlines()
                parts.append("stderr (first lines):\n" + "\n".join(lines[:STDERR_LEAD_LINES]))
            if self.stdout:
                parts.append("stdout:\n" + self.stdout)
        else:
            if self.exit_code not in (None, 0):
                parts.append(f"exit code {self.exit_code}")
            if self.stdout:
                parts.append(self.stdout)
            if self.stderr:
                parts.append("stderr:\n" + self.stderr)
            if not parts:
                parts.append("(no output)")
        if self.truncated:
            parts.append("[output truncated]")
        return "\n".join(parts)

    def summary(self) -> str:
        """One short line for a chat reply: ``exit 0 (12 passed)`` or ``error: …``."""
        if not self.ok:
            first = (self.error or "failed").splitlines()[0] if (self.error or "") else "failed"
            tail = ""
            if self.exit_code is not None:
                tail = f"exit {self.exit_code}"
                err_line = _last_meaningful_line(self.stderr) or _last_meaningful_line(self.stdout)
                if err_line:
                    tail += f" ({_clip(err_line, 80)})"
                return tail
            return f"error: {_clip(first, 100)}"
        if self.exit_code is not None:
            last = _last_meaningful_line(self.stdout)
            return f"exit {self.exit_code}" + (f" ({_clip(last, 80)})" if last else "")
        text = str(self.metadata.get("summary") or _first_meaningful_line(self.stdout) or "ok")
        return _clip(text, 100)


def _first_meaningful_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def _last_meaningful_line(text: str) -> str:
    for line in reversed(text.splitlines()):
        if line.strip():
            return line.strip()
    return ""


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(slots=True)
class ToolContext:
    """What a running tool may know about the session that called it.

    ``workspace`` is the resolved root every file tool is confined to;
    ``env`` is the allow-listed environment for child processes;
    ``scratchpad`` collects think-tool traces kept out of the main history.
    """

    workspace: Path
    config: Config
    session_id: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    scratchpad: list[str] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)


ToolFunction = Callable[..., Awaitable["ToolResult | str"]]

_ARGS_HEADER = re.compile(r"^\s*(Args|Arguments|Parameters):\s*$")
_ARG_LINE = re.compile(r"^\s+(\w+)(?:\s*\([^)]*\))?:\s*(.+)$")


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into (description, {arg: description})."""
    lines = inspect.cleandoc(doc).splitlines() if doc else []
    desc_lines: list[str] = []
    args: dict[str, str] = {}
    in_args = False
    current: str | None = None
    for line in lines:
        if _ARGS_HEADER.match(line):
            in_args = True
            continue
        if in_args:
            m = _ARG_LINE.match(line)
            if m:
                current = m.group(1)
                args[current] = m.group(2).strip()
            elif line.strip() and current and line.startswith("        "):
                args[current] += " " + line.strip()
            elif line.strip() and not line.startswith(" "):
                in_args = False
                current = None
            continue
        desc_lines.append(line)
    description = "\n".join(desc_lines).strip()
    return description, args


@dataclass(slots=True)
class Tool:
    """A model-callable tool built from a typed async function."""

    name: str
    description: str
    parameters: dict[str, Any]
    function: ToolFunction
    arguments_model: type[BaseModel]
    plugin: str = ""

    @classmethod
    def from_function(cls, function: ToolFunction, *, name: str | None = None) -> Tool:
        if not inspect.iscoroutinefunction(function):
            raise TypeError(f"tool {function.__name__!r} must be an async function")
        sig = inspect.signature(function)
        hints = get_type_hints(function)
        description, arg_docs = _parse_docstring(function.__doc__ or "")
        fields: dict[str, Any] = {}
        params = list(sig.parameters.values())
        if not params or params[0].name != "ctx":
            raise TypeError(f"tool {function.__name__!r}: first parameter must be 'ctx'")
        for p in params[1:]:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise TypeError(f"tool {function.__name__!r}: *args/**kwargs are not supported")
            annotation = hints.get(p.name, Any)
            default = ... if p.default is inspect.Parameter.empty else p.default
            from pydantic import Field

            fields[p.name] = (annotation, Field(default, description=arg_docs.get(p.name)))
        model = create_model(
            f"{function.__name__}_arguments",
            __config__=ConfigDict(extra="forbid"),
            **fields,
        )
        schema = model.model_json_schema()
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
        schema.setdefault("properties", {})
        schema.setdefault("required", [])
        return cls(
            name=name or function.__name__,
            description=description or name or function.__name__,
            parameters=schema,
            function=function,
            arguments_model=model,
        )

    def schema(self) -> dict[str, Any]:
        """The tool's entry in a chat request's ``tools`` list."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }

    def validate(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Validated keyword arguments; raises :class:`ToolError` naming what is wrong."""
        try:
            parsed = self.arguments_model.model_validate(dict(arguments))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}"
                for err in exc.errors()
            )
            raise ToolError(f"invalid arguments for {self.name}: {problems}") from None
        return {k: getattr(parsed, k) for k in type(parsed).model_fields}

    async def __call__(self, ctx: ToolContext, arguments: Mapping[str, Any]) -> ToolResult:
        """Validate, run, and normalise the result. Never raises except on cancel."""
        try:
            kwargs = self.validate(arguments)
            value = await self.function(ctx, **kwargs)
        except ToolError as exc:
            return ToolResult.failure(str(exc))
        except Exception as exc:  # a tool's bug reaches the model, never the loop
            return ToolResult.failure(f"{type(exc).__name__}: {exc}")
        if isinstance(value, ToolResult):
            return value
        return ToolResult(ok=True, stdout=str(value))


def tool(function: ToolFunction | None = None, *, name: str | None = None) -> Any:
    """Decorator form of :meth:`Tool.from_function` (``@tool`` or ``@tool(name=…)``)."""

    def wrap(fn: ToolFunction) -> Tool:
        return Tool.from_function(fn, name=name)

    if function is not None:
        return wrap(function)
    return wrap
