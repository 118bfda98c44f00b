"""Markdown from the model → Slack mrkdwn that can never ping anyone.

Prose goes through the maintained ``markdown-to-mrkdwn`` converter (bold,
italics, headings, lists, links, tables). Around it this module does what the
converter does not: fenced code blocks are passed through untouched (only
escaped, and the language tag dropped because Slack would show it as code),
inline code spans are shielded from the converter, and ``&``, ``<``, ``>`` are
escaped everywhere *before* conversion, so a ``<!here>``, ``<!channel>`` or
``<@U…>`` that a model or a file produced arrives as text. The only ``<…>``
left afterwards are the links the converter made, and a link whose target is
not a web or mail address is escaped too (``[x](!here)`` must not become
``<!here|x>``).

Text coming *from* Slack goes the other way with :func:`slack_to_plain`:
entities decoded, links and channel references made readable, the bot's own
mention removed.
"""

from __future__ import annotations

import re
from functools import lru_cache

from markdown_to_mrkdwn import SlackMarkdownConverter

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_INLINE_CODE = re.compile(r"(`+)(?!`)(.+?)(?<!`)\1(?!`)")
_PLACEHOLDER = re.compile("\x00(\\d+)\x00")
_QUOTE_MARKER = re.compile(r"^(\s*)>", re.MULTILINE)
_ANGLE = re.compile(r"<([^<>]*)>")
_SAFE_LINK = re.compile(r"^(?:https?://|mailto:)[^\s|<>]+(?:\|[^<>]*)?$", re.IGNORECASE)
# `__init__` outside backticks is far more common in a coding agent's prose than
# `__bold__`, so the converter's underscore-bold rule is left out.
_UNDERSCORE_BOLD = r"__(.+?)__"


def escape(text: str) -> str:
    """Slack's three control characters as entities (``&`` first)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


@lru_cache(maxsize=1)
def _converter() -> SlackMarkdownConverter:
    converter = SlackMarkdownConverter()
    converter.patterns = [p for p in converter.patterns if p[0].pattern != _UNDERSCORE_BOLD]
    converter.inline_patterns = [
        p for p in converter.inline_patterns if p[0].pattern != _UNDERSCORE_BOLD
    ]
    return converter


def markdown_to_mrkdwn(markdown: str) -> str:
    """Convert Markdown to mrkdwn for a message's ``text``; safe to call on partial text."""
    out: list[str] = []
    for is_code, segment in _split_fences(markdown):
        out.append(_code_block(segment) if is_code else _prose(segment))
    # A continuation message starts or ends where the streamer cut at a line break.
    return "".join(out).strip("\n")


def _split_fences(markdown: str) -> list[tuple[bool, str]]:
    """(is_code, text) segments; an unclosed fence runs to the end (text still streaming)."""
    segments: list[tuple[bool, str]] = []
    current: list[str] = []
    fence: str | None = None
    for line in markdown.splitlines(keepends=True):
        match = _FENCE.match(line.rstrip("\n"))
        if fence is None and match:
            if current:
                segments.append((False, "".join(current)))
            current, fence = [line], match.group(1)
        elif fence is not None and match and match.group(1).startswith(fence[0] * len(fence)):
            if not match.group(2).strip():
                current.append(line)
                segments.append((True, "".join(current)))
                current, fence = [], None
            else:
                current.append(line)
        else:
            current.append(line)
    if current:
        segments.append((fence is not None, "".join(current)))
    return segments


def _code_block(segment: str) -> str:
    lines = segment.splitlines(keepends=True)
    opening = "```" + ("\n" if lines[0].endswith("\n") else "")
    body = lines[1:]
    closing = ""
    if body and _FENCE.match(body[-1].rstrip("\n")):
        closing = "```" + ("\n" if body[-1].endswith("\n") else "")
        body = body[:-1]
    return opening + escape("".join(body)) + closing


def _prose(segment: str) -> str:
    if not segment.strip():
        return segment
    lead = segment[: len(segment) - len(segment.lstrip("\n"))]
    trail = segment[len(segment.rstrip()) :]
    codes: list[str] = []

    def shield(match: re.Match[str]) -> str:
        codes.append("`" + escape(match.group(2)) + "`")
        return f"\x00{len(codes) - 1}\x00"

    text = _INLINE_CODE.sub(shield, segment.strip("\n").rstrip())
    text = _QUOTE_MARKER.sub(lambda m: m.group(1) + "\x01", text)
    text = escape(text).replace("\x01", ">")
    converted = _converter().convert(text)
    converted = _ANGLE.sub(_checked_link, converted)
    converted = _PLACEHOLDER.sub(lambda m: codes[int(m.group(1))], converted)
    return lead + converted + trail


def _checked_link(match: re.Match[str]) -> str:
    """Keep ``<https://…|text>`` links; escape anything else the converter bracketed."""
    inner = match.group(1)
    if _SAFE_LINK.match(inner):
        return match.group(0)
    return "&lt;" + inner + "&gt;"


_SLACK_LINK = re.compile(r"<([^<>|]+)(?:\|([^<>]*))?>")


def slack_to_plain(text: str, bot_user_id: str | None = None) -> str:
    """What a person typed, for the model: no bot mention, readable links, no entities."""
    if bot_user_id:
        text = re.sub(rf"[ \t]*<@{re.escape(bot_user_id)}(?:\|[^>]*)?>[ \t]*", " ", text)

    def readable(match: re.Match[str]) -> str:
        target, label = match.group(1), match.group(2)
        if target.startswith("#"):  # <#C123|general>
            return f"#{label}" if label else target
        if target.startswith("@"):  # <@U123> stays an id the model can quote
            return f"<{target}>"
        if target.startswith("!"):  # <!here>, <!subteam^S1|@team>
            return label or f"@{target[1:].split('^')[0]}"
        if label and label != re.sub(r"^(?:https?://|mailto:)", "", target):
            return f"[{label}]({target})"
        return target

    text = _SLACK_LINK.sub(readable, text)
    return unescape(text).strip()
