"""Approval questions as Matrix events: the call in escaped ``<pre><code>``, nothing else raw.

The host says what the question shows (:class:`bot.policy.approval_view.ApprovalView`);
this module builds the event content directly instead of going through the
Markdown renderer, so the call text is only ever HTML-escaped inside
``<pre><code>`` (and the plain ``body``), never parsed as Markdown: a backtick
cannot end a code span and ``[x](https://…)`` or a ``matrix.to`` link cannot
become a link or a pill. Like every bot message the events carry an empty
``m.mentions``.

A long call's whole text goes in follow-up notices, each one escaped code block.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from plugins.matrix.content import HTML_FORMAT, Content

if TYPE_CHECKING:
    from bot.policy.approval_view import ApprovalView

WHERE_WHOLE = "in the messages just above"
# Characters of call text per follow-up event: escaped HTML plus the body stay under the limit.
WHOLE_CHUNK_CHARS = 12_000


def _code(text: str) -> str:
    return f"<pre><code>{escape(text)}</code></pre>"


def question_content(view: ApprovalView) -> Content:
    """The question: headline, the call (whole, or start and end), our sentences."""
    body = view.plain(where=WHERE_WHOLE) + "\n" + view.answer_line()
    html = [f"<p><strong>{escape(view.headline())}</strong></p>", _code(view.parts[0])]
    if view.clipped:
        html += [f"<p><em>{escape(view.gap_line())}</em></p>", _code(view.parts[1])]
    lines = [*view.sentences(WHERE_WHOLE), view.answer_line()]
    html.append("<p>" + "<br>".join(escape(line) for line in lines) + "</p>")
    return _content(body, "".join(html), "m.text")


def whole_text_contents(view: ApprovalView) -> list[Content]:
    """Notices holding the whole text of a clipped call, in order."""
    chunks = view.whole_chunks(WHOLE_CHUNK_CHARS)
    what = "command" if view.is_command else "call"
    contents: list[Content] = []
    for number, chunk in enumerate(chunks, 1):
        title = f"Whole {what} awaiting approval, part {number} of {len(chunks)}:"
        body = f"{title}\n{chunk}"
        contents.append(_content(body, f"<p>{escape(title)}</p>{_code(chunk)}", "m.notice"))
    return contents


def _content(body: str, html: str, msgtype: str) -> Content:
    return {
        "msgtype": msgtype,
        "body": body,
        "format": HTML_FORMAT,
        "formatted_body": html,
        "m.mentions": {},
    }
