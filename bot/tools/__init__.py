"""Tools: the typed contract (:mod:`bot.tools.base`), the registry and the runner."""

from bot.tools.base import Tool, ToolContext, ToolError, ToolResult, tool

__all__ = ["Tool", "ToolContext", "ToolError", "ToolResult", "tool"]
