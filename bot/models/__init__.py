"""Model clients: one interface, one implementation per wire protocol."""

from bot.models.base import (
    ChatRequest,
    ModelAuthError,
    ModelChunk,
    ModelClient,
    ModelError,
    ModelNotFoundError,
    ModelOverloadedError,
    ModelStreamError,
    ModelTimeoutError,
    ModelUnavailableError,
    ToolCall,
)

__all__ = [
    "ChatRequest",
    "ModelAuthError",
    "ModelChunk",
    "ModelClient",
    "ModelError",
    "ModelNotFoundError",
    "ModelOverloadedError",
    "ModelStreamError",
    "ModelTimeoutError",
    "ModelUnavailableError",
    "ToolCall",
]
