"""What an approval question shows: the whole call, every character visible, no markup.

A person approving a tool call must see what will run, all of it, and nothing
the call's own text could dress up. The question is built here once, for
every platform; adapters only format the parts:

- **The whole call.** For ``bash`` the command text, for other tools each
  argument. Up to :data:`LONG_CALL_CHARS` it is shown whole; a longer call
  shows its start and end, the question says how long it is, and the adapter
  posts the whole text beside the question (a file on Slack, follow-up code
  blocks elsewhere; :meth:`ApprovalView.whole_chunks`).
- **Nothing invisible.** Characters that do not show as themselves — C0 and
  C1 control characters (ESC, ``\\r``, backspace), bidi overrides and
  isolates, zero-width and other format characters, unusual spaces, blank
  "letters", unassigned code points — are spelled out (``\\x1b``,
  ``<U+202E>``) and counted in a warning. Long runs of blanks or empty lines,
  which push the rest of a line off screen or below a "show more", become
  ``<40 blanks>`` / ``<12 empty lines>``.
- **No way out of the code block.** :meth:`ApprovalView.markdown` fences the
  call with more backticks than any run inside it and backslash-escapes the
  prose it quotes; Slack (rich text, literal) and Matrix (escaped
  ``<pre><code>``) take :attr:`ApprovalView.parts` and escape them their way.
- Secrets the model quoted are redacted before anything else.

"Allow for the rest of this thread" covers exactly the call shown — the same
tool with the same arguments, character for character (:func:`scope_key`) —
and the question says so.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.policy.redaction import redact

if TYPE_CHECKING:
    from bot.policy.approvals import ApprovalRequest

# Over this many (visible) characters a question shows only the start and end.
LONG_CALL_CHARS = 1_500
HEAD_CHARS = 700
TAIL_CHARS = 600
# The whole text of a long call is posted beside the question up to this size.
MAX_WHOLE_CHARS = 200_000
REASON_CHARS = 600
BLANK_RUN = 16  # this many spaces/tabs in a row are shown as a count
NEWLINE_RUN = 4  # this many line breaks in a row (3 empty lines) are shown as a count

# Letters and marks that render as nothing (Hangul fillers, braille blank,
# combining grapheme joiner) or select a variant of the previous character.
_BLANK_LOOKING = frozenset({0x034F, 0x115F, 0x1160, 0x2800, 0x3164, 0xFFA0})
_INVISIBLE_CATEGORIES = frozenset({"Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>&|~])")


def spelling(char: str) -> str | None:
    """The visible spelling of a character that would not show as itself; None if it does."""
    code = ord(char)
    if char in "\n\t":
        return None
    if code < 0x20 or 0x7F <= code <= 0x9F:
        return f"\\x{code:02x}"
    category = unicodedata.category(char)
    if (
        category in _INVISIBLE_CATEGORIES
        or (category == "Zs" and char != " ")
        or code in _BLANK_LOOKING
        or 0xFE00 <= code <= 0xFE0F
        or 0xE0100 <= code <= 0xE01EF
    ):
        return f"<U+{code:04X}>"
    return None


def visible_tokens(text: str) -> tuple[list[str], int]:
    """``text`` as visible pieces (one per character or run), and how many were spelled out."""
    tokens: list[str] = []
    spelled = 0
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char in " \t\n":
            j = i
            run = " \t" if char != "\n" else "\n"
            while j < n and text[j] in run:
                j += 1
            count = j - i
            if char == "\n" and count >= NEWLINE_RUN:
                tokens.append(f"\n<{count - 1} empty lines>\n")
            elif char != "\n" and count >= BLANK_RUN:
                tokens.append(f"<{count} blanks>")
            else:
                tokens.extend(text[i:j])
            i = j
            continue
        shown = spelling(char)
        if shown is not None:
            spelled += 1
            tokens.append(shown)
        else:
            tokens.append(char)
        i += 1
    return tokens, spelled


def visible(text: str) -> str:
    """``text`` with every character that would not show as itself spelled out."""
    return "".join(visible_tokens(text)[0])


def call_text(tool: str, arguments: Mapping[str, Any]) -> str:
    """What a call runs, as one text: the command for bash, ``name: value`` lines otherwise."""
    if tool == "bash" and set(arguments) <= {"command"}:
        return str(arguments.get("command", ""))
    lines: list[str] = []
    for key, value in arguments.items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        if "\n" in text:
            lines.append(f"{key}:\n{text}")
        else:
            lines.append(f"{key}: {text}")
    return "\n".join(lines)


def scope_key(request: ApprovalRequest) -> str:
    """What "allow for this thread" remembers: the tool and its exact arguments."""
    return json.dumps(
        [request.tool, request.arguments], sort_keys=True, ensure_ascii=False, default=repr
    )


def markdown_escape(text: str) -> str:
    """Prose for a Markdown renderer: every character that could start markup escaped."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def fenced(text: str) -> str:
    """A Markdown code block that no line of ``text`` can close."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{text.rstrip(chr(10))}\n{fence}"


def _take(tokens: list[str], budget: int) -> tuple[str, int]:
    """The first tokens that fit ``budget`` characters (at least one), joined, and how many."""
    taken: list[str] = []
    size = 0
    for token in tokens:
        if size + len(token) > budget and taken:
            break
        taken.append(token)
        size += len(token)
    return "".join(taken), len(taken)


@dataclass(frozen=True, slots=True)
class ApprovalView:
    """One approval question, platform-neutral; every text in it is already visible-safe.

    ``parts`` is the call text as the question shows it: one part (whole) or
    two (start, end). Sentences (:meth:`sentences`) are plain text of our own
    plus the visible reason; each adapter escapes them for its platform.
    """

    request: ApprovalRequest
    tool: str
    parts: tuple[str, ...]
    whole: str
    length: int
    spelled: int
    reason: str
    timeout_s: int

    @property
    def clipped(self) -> bool:
        return len(self.parts) > 1

    @property
    def is_command(self) -> bool:
        return self.request.tool == "bash"

    @property
    def whole_too_long(self) -> bool:
        return len(self.whole) > MAX_WHOLE_CHARS

    @property
    def filename(self) -> str:
        return f"{re.sub(r'[^A-Za-z0-9_-]', '_', self.request.tool)[:40]}-call.txt"

    def headline(self) -> str:
        if self.is_command:
            return "🔐 I want to run this command:"
        return f"🔐 I want to run {self.tool} with:"

    def gap_line(self) -> str:
        shown = sum(len(p) for p in self.parts)
        return f"… {len(self.whole) - shown:,} characters not shown here …"

    def sentences(self, where: str) -> list[str]:
        """The lines under the call: why, what is left out, warnings, scope, how to answer."""
        lines = [f"It needs approval because {self.reason}."]
        if self.clipped:
            what = "command" if self.is_command else "call"
            if self.whole_too_long:
                lines.append(
                    f"⚠️ The {what} is {self.length:,} characters long, too long to post whole: "
                    "only its start and end are shown. Deny it unless you know what it is."
                )
            else:
                lines.append(
                    f"The {what} is {self.length:,} characters long: only its start and end "
                    f"are shown here; the whole text is {where}."
                )
        if self.spelled:
            lines.append(
                f"⚠️ It contains {self.spelled} invisible or control character"
                f"{'' if self.spelled == 1 else 's'}, shown as \\xNN or <U+XXXX>."
            )
        lines.append(self.scope_line())
        return lines

    def scope_line(self) -> str:
        if self.is_command:
            return (
                "🔁 allows exactly this command again in this thread (the same text, "
                "character for character); any other command asks again."
            )
        return (
            f"🔁 allows exactly this {self.tool} call again in this thread (the same "
            "arguments, character for character); any other call asks again."
        )

    def answer_line(self) -> str:
        return (
            "React ✅ to allow once, 🔁 to allow it for the rest of this thread, ❌ to deny "
            f"(no answer in {self.timeout_s} s means deny)."
        )

    def markdown(self, where: str = "in the messages just above") -> str:
        """The question as Markdown no part of the call can break out of."""
        blocks = [markdown_escape(self.headline()), fenced(self.parts[0])]
        if self.clipped:
            blocks += [markdown_escape(self.gap_line()), fenced(self.parts[1])]
        body = [markdown_escape(line) for line in self.sentences(where)]
        blocks.append("\n".join([*body, markdown_escape(self.answer_line())]))
        return "\n".join(blocks)

    def plain(self, *, where: str = "below", whole: bool = False) -> str:
        """Plain text for a terminal or a text node; ``whole`` shows the whole call."""
        parts = (self.whole,) if whole else self.parts
        lines = [self.headline(), *_indented(parts[0])]
        if len(parts) > 1:
            lines += [self.gap_line(), *_indented(parts[1])]
        sentences = self.sentences(where)
        if whole:
            sentences = [s for s in sentences if "only its start and end" not in s]
        return "\n".join(lines + sentences)

    def whole_chunks(self, limit: int) -> list[str]:
        """The whole call text in pieces of at most ``limit`` characters (empty if not clipped
        or too long to post), cut at line breaks where one is near."""
        if not self.clipped or self.whole_too_long:
            return []
        chunks: list[str] = []
        rest = self.whole
        while rest:
            if len(rest) <= limit:
                chunks.append(rest)
                break
            cut = rest.rfind("\n", limit // 2, limit)
            cut = cut + 1 if cut > 0 else limit
            chunks.append(rest[:cut])
            rest = rest[cut:]
        return chunks

    def whole_markdown(self, limit: int = 3_000) -> list[str]:
        """Follow-up Markdown messages holding the whole call, each fenced."""
        chunks = self.whole_chunks(limit - 40)
        return [
            f"Whole {'command' if self.is_command else 'call'}, part {i} of {len(chunks)}:\n"
            + fenced(chunk)
            for i, chunk in enumerate(chunks, 1)
        ]


def _indented(text: str) -> list[str]:
    return ["    " + line for line in text.split("\n")]


def approval_view(request: ApprovalRequest, *, timeout: float) -> ApprovalView:
    """The question for ``request``: see the module docstring for what it guarantees."""
    raw = redact(call_text(request.tool, request.arguments))
    tokens, spelled = visible_tokens(raw)
    whole = "".join(tokens)
    if len(whole) <= LONG_CALL_CHARS:
        parts: tuple[str, ...] = (whole,)
    else:
        head, used = _take(tokens, HEAD_CHARS)
        rest = tokens[used:]
        _, count = _take(rest[::-1], TAIL_CHARS)
        parts = (head, "".join(rest[len(rest) - count :]))
    reason = " ".join(visible(redact(request.reason or "the policy asks")).split())
    if len(reason) > REASON_CHARS:
        reason = reason[: REASON_CHARS - 1] + "…"
    return ApprovalView(
        request=request,
        tool=visible(request.tool),
        parts=parts,
        whole=whole,
        length=len(raw),
        spelled=spelled,
        reason=reason.rstrip("."),
        timeout_s=int(timeout),
    )
