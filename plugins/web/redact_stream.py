"""Redaction for text that arrives in pieces (model tokens, thinking).

Redacting each token alone misses a secret the model writes across two
tokens (``hunter2-ve`` + ``ry-secret``). :class:`StreamRedactor` holds back
the end of the text while it could still be the start of a configured
secret or of a token-shaped credential (``xoxb-…``, ``ghp_…``, ``AKIA…``), and
releases it, redacted, once the next piece shows what it was, or when the
stream moves on to something else (:meth:`flush`). Ordinary prose passes
through at once, so the first token is not delayed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from bot.policy.redaction import MIN_SECRET_LENGTH, Redactor

# Starts of the credential shapes bot.policy.redaction knows.
_SHAPE_PREFIXES = (
    "xoxa-",
    "xoxb-",
    "xoxp-",
    "xoxo-",
    "xoxs-",
    "xoxr-",
    "xapp-",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "AKIA",
    "ASIA",
    "sk-",
    "syt_",
    "-----BEGIN",
)
# The word being written at the end of the text, if it is credential-shaped.
_TRAILING_WORD = re.compile(r"[A-Za-z0-9_=-]+$")
# Never hold back more than this: an endless credential-shaped word is let go.
MAX_HOLD = 8192


class StreamRedactor:
    def __init__(self, redactor: Redactor, secrets: Iterable[str] = ()) -> None:
        self.redactor = redactor
        self.secrets = [s for s in set(secrets) if s and len(s) >= MIN_SECRET_LENGTH]
        self.pending = ""

    def feed(self, text: str) -> str:
        """Add a piece; return what can be shown now (redacted)."""
        text = self.pending + text
        hold = self._hold(text)
        if hold > MAX_HOLD:
            hold = 0
        self.pending = text[len(text) - hold :] if hold else ""
        return self.redactor(text[: len(text) - hold])

    def flush(self) -> str:
        text, self.pending = self.pending, ""
        return self.redactor(text)

    def _hold(self, text: str) -> int:
        hold = 0
        for secret in self.secrets:
            for k in range(min(len(secret) - 1, len(text)), hold, -1):
                if text.endswith(secret[:k]):
                    hold = k
                    break
        word = _TRAILING_WORD.search(text)
        if word is not None:
            tail = word.group()
            for prefix in _SHAPE_PREFIXES:
                # Inside a credential (it may go on), or at what may become its start.
                if tail.startswith(prefix) or prefix.startswith(tail):
                    hold = max(hold, len(tail))
                    break
        # A private key block runs until its END line.
        begin = text.rfind("-----BEGIN")
        if begin >= 0 and "PRIVATE KEY" in text[begin:] and "-----END" not in text[begin:]:
            hold = max(hold, len(text) - begin)
        return hold
