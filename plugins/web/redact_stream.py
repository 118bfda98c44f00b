"""Redaction for text that arrives in pieces (model tokens, thinking).

Redacting each token alone misses a secret the model writes across two
tokens (``hunter2-ve`` + ``ry-secret``). :class:`StreamRedactor` holds back
the end of the text while it could still be (part of) a configured secret,
in any form the redactor masks, or a token-shaped credential (``xoxb-…``,
``ghp_…``, ``AKIA…``; :meth:`bot.policy.redaction.Redactor.hold`), and
releases it, redacted, once the next piece shows what it was, or when the
stream moves on to something else (:meth:`flush`). Ordinary prose passes
through at once, so the first token is not delayed.
"""

from __future__ import annotations

from collections.abc import Iterable

from bot.policy.redaction import MIN_SECRET_LENGTH, Redactor

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
        # The redactor knows every form of its secrets (pieces, encodings) and
        # the credential shapes; these secrets are checked in case it has others.
        hold = self.redactor.hold(text)
        for secret in self.secrets:
            for k in range(min(len(secret) - 1, len(text)), hold, -1):
                if text.endswith(secret[:k]):
                    hold = k
                    break
        # A private key block runs until its END line.
        begin = text.rfind("-----BEGIN")
        if begin >= 0 and "PRIVATE KEY" in text[begin:] and "-----END" not in text[begin:]:
            hold = max(hold, len(text) - begin)
        return hold
