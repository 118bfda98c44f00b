"""Redaction: the secrets the bot holds never leave in text.

Applied to logs, chat messages, stored transcripts, model prompts and tool
output. Three rules, all precomputed when a :class:`Redactor` is built:

- **the secrets it is given** (configured values, and the secret-looking
  variables of the bot's own environment, :mod:`bot.policy.redaction_env`)
  are masked as literal values, and also hex-, base64- and URL-encoded,
  reversed, and — for long random tokens — in any run of 8+ characters, so
  a model cannot re-assemble one from pieces printed over several steps
  (:mod:`bot.policy.redaction_forms` says what is caught and what cannot be);
- **credential shapes** are masked even when nobody configured them: chat,
  GitHub, GitLab, cloud and registry tokens, JWTs, private keys, the
  password of ``scheme://user:password@host`` URLs, ``Authorization``
  headers and ``password=`` assignments (:mod:`bot.policy.redaction_shapes`);
- text arriving in pieces (a model stream) is composed with :meth:`Redactor.hold`:
  the caller keeps back the tail that may still become a secret.

It must be cheap, because it runs on every message: see ``bench/redaction.py``.
"""

from __future__ import annotations

from collections.abc import Iterable

from bot.policy.redaction_env import environment_secrets, held_secrets, secret_variable_names
from bot.policy.redaction_forms import MIN_SECRET_LENGTH, Form, secret_forms
from bot.policy.redaction_scan import FormScanner
from bot.policy.redaction_shapes import MASK, SHAPE_PREFIXES, mask_shapes

__all__ = [
    "MASK",
    "MIN_SECRET_LENGTH",
    "Redactor",
    "configure",
    "environment_secrets",
    "held_secrets",
    "redact",
    "secret_variable_names",
]


def _to_char_boundaries(data: bytes, start: int, end: int) -> tuple[int, int]:
    # A run of a non-ASCII secret may begin or end inside a UTF-8 sequence.
    while start > 0 and data[start] & 0xC0 == 0x80:
        start -= 1
    while end < len(data) and data[end] & 0xC0 == 0x80:
        end += 1
    return start, end


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values = sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH})
        forms: dict[str, Form] = {}
        for secret in values:
            for form in secret_forms(secret):
                known = forms.get(form.text)
                if known is None or form.min_run < known.min_run:
                    forms[form.text] = form
        self.secrets = values
        self._scanner = FormScanner(forms.values())

    def redact(self, text: str) -> str:
        if not text:
            return text
        if self._scanner:
            text = self._mask_secrets(text)
        return mask_shapes(text)

    def __call__(self, text: str) -> str:
        return self.redact(text)

    def _mask_secrets(self, text: str) -> str:
        data = text.encode("utf-8", "surrogatepass")
        spans = self._scanner.spans(data)
        if not spans:
            return text
        pieces: list[str] = []
        done = 0
        for start, end in sorted(spans):
            start, end = _to_char_boundaries(data, start, end)
            if pieces and start <= done:  # overlaps (or continues) the previous mask
                done = max(done, end)
                continue
            pieces.append(data[done:start].decode("utf-8", "surrogatepass"))
            pieces.append(MASK)
            done = end
        pieces.append(data[done:].decode("utf-8", "surrogatepass"))
        return "".join(pieces)

    def hold(self, text: str) -> int:
        """Characters at the end of ``text`` to keep back while more of it may follow.

        A trailing piece of a secret (in any of its forms) or the start of a
        credential shape: released, redacted, once the next piece shows what
        it was. Callers cap the hold so an endless token cannot stall a stream.
        """
        hold = self._scanner.hold(text) if self._scanner else 0
        word_start = len(text)
        while word_start > 0 and (text[word_start - 1].isalnum() or text[word_start - 1] in "_-.="):
            word_start -= 1
        tail = text[word_start:]
        if tail and len(tail) > hold:
            for prefix in SHAPE_PREFIXES:
                if tail.startswith(prefix) or prefix.startswith(tail):
                    hold = len(tail)
                    break
        if hold and self._scanner:
            hold = len(text) - self._uncut(text, len(text) - hold)
        return hold

    def _uncut(self, text: str, cut: int) -> int:
        """Move ``cut`` past any secret it would split: half a secret is not masked."""
        data = text.encode("utf-8", "surrogatepass")
        ascii_only = len(data) == len(text)
        for start, end in sorted(self._scanner.spans(data)):
            if not ascii_only:
                start, end = _to_char_boundaries(data, start, end)
                start = len(data[:start].decode("utf-8", "surrogatepass"))
                end = len(data[:end].decode("utf-8", "surrogatepass"))
            if start < cut < end:
                cut = end
        return cut


_process_redactor = Redactor()


def configure(secrets: Iterable[str]) -> Redactor:
    """Set the process-wide redactor (the runtime calls this with every secret it holds).

    Text leaving through paths that do not carry the configuration (a chat
    reply rendered by an adapter) is redacted with it.
    """
    global _process_redactor
    _process_redactor = Redactor(secrets)
    return _process_redactor


def redact(text: str) -> str:
    """Redact with the process-wide redactor: held secrets and credential shapes."""
    return _process_redactor.redact(text)


def process_redactor() -> Redactor:
    return _process_redactor
