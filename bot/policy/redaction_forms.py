"""The forms a secret can take in text, and how much of each form is a leak.

A model that wants a secret past the redactor prints it transformed:
hex (``xxd -p``, ``.hex()``), base64 (``base64``, at any byte offset in a
longer input, standard or URL-safe alphabet), URL-encoded, reversed
(``rev``), or in pieces over several tool calls (``cut -c1-10``, then
``cut -c11-20``). :func:`secret_forms` lists the texts each of those
produces, computed once when the redactor is built; the scanner
(:mod:`bot.policy.redaction_scan`) then finds them like literal values.

**Fragments.** Of a *long, random-looking* secret, any run of at least
:func:`fragment_length` characters is masked, in the plain form and in each
encoding (scaled to the encoding's length). The length is chosen so that a
masked run carries at least ``FRAGMENT_BITS`` bits of the secret:

- 40 bits is far beyond what ordinary text matches by chance: for a random
  base62 token an 8-character run is ~48 bits, so the chance that some
  8-character window of a 40-character token occurs at a given position of
  unrelated text is ~33 * 62**-8, about 1e-13;
- never fewer than 8 characters, so a 16-character token cut in two always
  leaves one half (>= 8 characters) that is caught: re-assembling a 16+
  character token takes at least three pieces, each shorter than 8;
- a run must also mix character classes (letters and digits, or both
  cases): a word, number or slug that happens to sit inside a secret
  (``-extended``, the numeric team id inside a Slack token) is not masked
  wherever it appears.

**Short or non-random secrets** (under 16 characters, with whitespace, a
single character class, mostly lower-case words, repetitive: human passwords
and passphrases, URLs, paths) are
masked only as whole values, in every form above: their pieces are words
and numbers that ordinary text contains, and half of a 12-character
password is 6 characters, below anything that can be masked safely.

What cannot be caught, and is documented as such: pieces shorter than the
fragment length (one character per tool call is always possible), case
changes (``tr a-z A-Z``), other encodings (base32, rot13, arithmetic on
character codes) and anything the model computes and never prints whole.
That is why the sandbox keeps secrets out of the tools' reach in the first
place (:mod:`bot.tools.environment`); redaction is the second line.
"""

from __future__ import annotations

import base64
import math
import re
import string
from collections import Counter
from dataclasses import dataclass
from urllib.parse import quote

# Values shorter than this would mask ordinary words; such secrets are still matched by shape.
MIN_SECRET_LENGTH = 6
# From this length a random-looking secret is also masked in pieces.
LONG_SECRET_LENGTH = 16
FRAGMENT_BITS = 40
MIN_FRAGMENT = 8
# A value this much made of lower-case words (runs of 4+ letters) is a
# passphrase, whose pieces are words of ordinary text: "hunter2-very-secret-value"
# is 0.84 words, a random base62 or hex token of 16+ characters is >= 0.5 in
# about 1 case in 50 (and then only masked whole), base36 in about half.
MAX_WORDINESS = 0.5
_WORD = re.compile(r"[a-z]{4,}")
# Repetition ("aaaaaaaaaaaaaaaa1") is no token either; random hex of 16 characters
# measures 2.7 bits per character or more in 99 cases of 100.
MIN_ENTROPY = 2.5


@dataclass(frozen=True, slots=True)
class Form:
    """One text a secret becomes; ``min_run`` characters of it in a row are masked."""

    text: str
    min_run: int
    kind: str

    @property
    def whole_only(self) -> bool:
        return self.min_run >= len(self.text)


def mixes_classes(value: str) -> bool:
    """Two of lower case, upper case and digits: not a word, a number or a dashed slug."""
    lower = any(c.islower() for c in value)
    upper = any(c.isupper() for c in value)
    digit = any(c.isdigit() for c in value)
    return lower + upper + digit >= 2


def _entropy(value: str) -> float:
    n = len(value)
    return -sum(k / n * math.log2(k / n) for k in Counter(value).values())


def _alphabet_bits(value: str) -> float:
    if all(c in string.hexdigits for c in value) and not value.isdigit():
        return 4.0
    size = (
        26 * any(c.islower() for c in value)
        + 26 * any(c.isupper() for c in value)
        + 10 * any(c.isdigit() for c in value)
        + 32 * any(not c.isalnum() for c in value)
    )
    return math.log2(max(size, 2))


def looks_random(value: str) -> bool:
    """Long enough, and random enough, to be masked in pieces without masking ordinary text."""
    return (
        len(value) >= LONG_SECRET_LENGTH
        and value.isascii()
        and not any(c.isspace() for c in value)
        and "://" not in value
        and not value.startswith(("/", "~", "./"))
        and mixes_classes(value)
        and sum(map(len, _WORD.findall(value))) < MAX_WORDINESS * len(value)
        and _entropy(value) >= MIN_ENTROPY
    )


def fragment_length(secret: str) -> int | None:
    """The shortest run of ``secret`` that is masked, or None: whole values only."""
    if not looks_random(secret):
        return None
    return max(MIN_FRAGMENT, math.ceil(FRAGMENT_BITS / _alphabet_bits(secret)))


# Characters of base64 output at the start of an encoding that depend on the
# bytes before the secret, when the secret begins 0, 1 or 2 bytes into a group.
_B64_LEAD = (0, 2, 3)


def base64_cores(raw: bytes) -> list[str]:
    """The base64 text that ``raw`` produces wherever it sits in a longer input.

    For each of the three alignments, the characters that depend only on
    ``raw`` (not on the bytes around it), standard alphabet then URL-safe.
    """
    cores: list[str] = []
    for offset in range(3):
        encoded = base64.b64encode(bytes(offset) + raw).decode().rstrip("=")
        end = len(encoded) - (1 if (offset + len(raw)) % 3 else 0)
        core = encoded[_B64_LEAD[offset] : end]
        cores.append(core)
    urlsafe = [c.replace("+", "-").replace("/", "_") for c in cores]
    return [*cores, *(u for u in urlsafe if u not in cores)]


def secret_forms(secret: str) -> list[Form]:
    """Every form of ``secret`` to mask, with the run of each that counts as a leak."""
    if len(secret) < MIN_SECRET_LENGTH:
        return []
    raw = secret.encode()
    n = fragment_length(secret)

    def form(text: str, kind: str, scale: float) -> Form:
        run = math.ceil(n * scale) if n is not None else len(text)
        return Form(text, min(run, len(text)), kind)

    forms = [form(secret, "plain", 1), form(secret[::-1], "reversed", 1)]
    forms += [form(raw.hex(), "hex", 2), form(raw.hex().upper(), "hex", 2)]
    forms += [form(core, "base64", 4 / 3) for core in base64_cores(raw)]
    quoted = quote(secret, safe="")
    if quoted != secret:
        forms.append(form(quoted, "url-encoded", 1))
    unique: dict[str, Form] = {}
    for f in forms:
        if len(f.text) >= MIN_SECRET_LENGTH and (
            f.text not in unique or f.min_run < unique[f.text].min_run
        ):
            unique[f.text] = f
    return list(unique.values())
