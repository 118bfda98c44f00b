"""Finding many literal strings, and long runs of them, in text at C speed.

Redaction runs on every tool result, chat render and model request, with a
few hundred forms to look for (each secret plain, reversed, hex, base64 at
three alignments…, see :mod:`bot.policy.redaction_forms`), any long run of
which must be found. A regex alternation of them costs ~0.1 µs per form per
character in CPython; this scanner costs about one set lookup per four bytes.

Every 4-byte window of every form goes into a hash set, as a 32-bit
integer. The text's UTF-8 bytes are read as consecutive 4-byte integers
(``array.frombytes``, no Python loop) and intersected with that set: any run
of at least 7 bytes of a form contains one whole aligned 4-byte chunk, so
nothing of 7 bytes or more can slip between chunks. Text without a hit (nearly
all text) is done. A hit is only a candidate: each occurrence is extended
byte-wise in both directions along the form it came from, and kept if the run
is long enough for that form (see :class:`Form`). Forms shorter than 7 bytes
(only whole short secrets) go through a small regex instead.
"""

from __future__ import annotations

import re
import sys
from array import array
from collections.abc import Iterable

from bot.policy.redaction_forms import Form, mixes_classes

_GRAM = 4
# Any run this long contains an aligned chunk of _GRAM bytes.
_MIN_INDEXED = 2 * _GRAM - 1
_WORD = next(code for code in "IL" if array(code).itemsize == _GRAM)
_ORDER = sys.byteorder


def _gram_key(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + _GRAM], _ORDER)


def _common_forward(data: bytes, at: int, form: bytes, fat: int) -> int:
    """How many bytes from ``data[at:]`` equal ``form[fat:]`` (binary search, C compares)."""
    lo, hi = 0, min(len(data) - at, len(form) - fat)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if data.startswith(form[fat : fat + mid], at):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _common_backward(data: bytes, end: int, form: bytes, fend: int) -> int:
    """How many bytes before ``data[end]`` equal those before ``form[fend]``."""
    lo, hi = 0, min(end, fend)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if data[end - mid : end] == form[fend - mid : fend]:
            lo = mid
        else:
            hi = mid - 1
    return lo


class FormScanner:
    def __init__(self, forms: Iterable[Form]) -> None:
        self.forms = list(forms)
        self._data = [f.text.encode() for f in self.forms]
        self._index: dict[int, list[tuple[int, int]]] = {}
        short: list[bytes] = []
        for number, data in enumerate(self._data):
            if len(data) < _MIN_INDEXED:
                short.append(data)
                continue
            for at in range(len(data) - _GRAM + 1):
                self._index.setdefault(_gram_key(data, at), []).append((number, at))
        self._keys = set(self._index)
        short.sort(key=len, reverse=True)
        self._short = re.compile(b"|".join(re.escape(s) for s in short)) if short else None

    def __bool__(self) -> bool:
        return bool(self.forms)

    def spans(self, data: bytes) -> list[tuple[int, int]]:
        """Byte ranges of ``data`` to mask (unsorted, may overlap)."""
        found: list[tuple[int, int]] = []
        usable = len(data) - len(data) % _GRAM
        if self._keys and usable:
            chunks = array(_WORD)
            chunks.frombytes(data[:usable])
            hits = self._keys.intersection(chunks)
            if hits:
                found += self._extend(data, chunks, hits)
        if self._short is not None:
            found += [m.span() for m in self._short.finditer(data)]
        return found

    def _extend(self, data: bytes, chunks: array[int], hits: set[int]) -> list[tuple[int, int]]:
        found: list[tuple[int, int]] = []
        # (form, diagonal) -> the run already measured there: later chunks of
        # the same occurrence lie on it and need no second look.
        measured: dict[tuple[int, int], tuple[int, int]] = {}
        for at in self._aligned_hits(data, chunks, hits):
            after = at + _GRAM
            for number, offset in self._index[chunks[at // _GRAM]]:
                diagonal = at - offset
                known = measured.get((number, diagonal))
                if known is not None and known[0] <= at < known[1]:
                    continue
                form = self._data[number]
                before_matches = at and offset and data[at - 1] == form[offset - 1]
                after_matches = (
                    after < len(data)
                    and offset + _GRAM < len(form)
                    and data[after] == form[offset + _GRAM]
                )
                if not (before_matches or after_matches):
                    continue  # a chance 4-byte match: nothing masks a run this short
                back = _common_backward(data, at, form, offset)
                ahead = _common_forward(data, at, form, offset)
                start, end = at - back, at + ahead
                measured[(number, diagonal)] = (start, end)
                if self._counts(number, offset - back, end - start, data[start:end]):
                    found.append((start, end))
        return found

    @staticmethod
    def _aligned_hits(data: bytes, chunks: array[int], hits: set[int]) -> list[int]:
        """Byte offsets of the aligned chunks that are in ``hits``, in order.

        Every run worth masking holds an aligned chunk, so only those are
        starting points. A few hit keys are found with ``bytes.find`` (C);
        many (hex-heavy output against hex secrets) with one pass over the chunks.
        """
        if len(hits) > 4:
            return [i * _GRAM for i, key in enumerate(chunks) if key in hits]
        places: list[int] = []
        for key in hits:
            gram = key.to_bytes(_GRAM, _ORDER)
            at = data.find(gram)
            while at >= 0:
                if at % _GRAM == 0:
                    places.append(at)
                at = data.find(gram, at + 1)
        places.sort()
        return places

    def _counts(self, number: int, form_start: int, length: int, run: bytes) -> bool:
        form = self.forms[number]
        if form_start == 0 and length == len(self._data[number]):
            return True  # the whole form
        if form.whole_only or length < form.min_run:
            return False
        return mixes_classes(run.decode("utf-8", "replace"))

    def hold(self, text: str) -> int:
        """How many characters at the end of ``text`` may be the start of something masked.

        A stream (model tokens) holds these back until the next piece shows
        whether the run goes on: a trailing piece of a form (it may grow into
        a masked run, or continue one already long enough), or a prefix of a
        whole-only form.
        """
        best = 0
        for form in self.forms:
            limit = min(len(text), len(form.text) - 1)
            if form.whole_only:
                for k in range(limit, best, -1):
                    if form.text.startswith(text[-k:]):
                        best = k
                        break
                continue
            # Being a substring is monotone: if the last k characters are not
            # in the form, no longer ending is either.
            k = best + 1
            while k <= limit and text[-k:] in form.text:
                k += 1
            best = max(best, k - 1)
        return best
