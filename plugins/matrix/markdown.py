"""Markdown → Matrix HTML (``org.matrix.custom.html``) with markdown-it-py.

The model writes Markdown; Matrix clients show ``formatted_body``. Raw HTML in
the model's text is escaped, never passed through: a model (or a prompt
injected into a file it read) must not be able to forge pills, hide text or
inject markup into the room. Single newlines become ``<br>`` because chat
users expect line breaks to show, as they do in Element.
"""

from __future__ import annotations

from markdown_it import MarkdownIt

_MARKDOWN = MarkdownIt(
    "commonmark", {"html": False, "breaks": True, "linkify": False, "xhtmlOut": False}
).enable(["table", "strikethrough"])


def markdown_to_html(text: str) -> str:
    """The HTML for ``text``; raw HTML tags in it come out as visible, escaped text."""
    return _MARKDOWN.render(text).strip()
