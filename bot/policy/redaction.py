"""Redaction: secret values and common token shapes never leave in text.

Applied to logs, chat messages, stored transcripts, model prompts and tool
output. Configured secret values are replaced exactly; well-known token
shapes are replaced even when nobody configured them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "[REDACTED]"

# Shapes of credentials that should never be echoed, configured or not.
TOKEN_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{8,}"),  # Slack bot/user tokens
    re.compile(r"\bxapp-[A-Za-z0-9-]{8,}"),  # Slack app-level tokens
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"),  # GitHub tokens
    re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}"),
    re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),  # AWS access key ids
    re.compile(r"\bsk-[A-Za-z0-9_-]{20,}"),  # OpenAI-style keys
    re.compile(r"\bsyt_[A-Za-z0-9_=-]{10,}"),  # Synapse access tokens
    re.compile(
        r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
        re.DOTALL,
    ),
)

# Shorter values would mask ordinary words; such secrets are still matched by shape.
MIN_SECRET_LENGTH = 6


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values = {s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}
        # Longest first so a secret containing another is masked whole.
        self._secrets = sorted(values, key=len, reverse=True)
        self._exact = (
            re.compile("|".join(re.escape(s) for s in self._secrets)) if self._secrets else None
        )

    def redact(self, text: str) -> str:
        if not text:
            return text
        if self._exact is not None:
            text = self._exact.sub(MASK, text)
        for pattern in TOKEN_PATTERNS:
            text = pattern.sub(MASK, text)
        return text

    def __call__(self, text: str) -> str:
        return self.redact(text)


_process_redactor = Redactor()


def configure(secrets: Iterable[str]) -> Redactor:
    """Set the process-wide redactor (the runtime calls this with the configured secrets).

    Text leaving through paths that do not carry the configuration (a chat
    reply rendered by an adapter) is redacted with it.
    """
    global _process_redactor
    _process_redactor = Redactor(secrets)
    return _process_redactor


def redact(text: str) -> str:
    """Redact with the process-wide redactor: configured secrets and token shapes."""
    return _process_redactor.redact(text)
