"""The content of the events the bot sends: thread replies, edits, reactions.

Formats (see ``shared/protocols/matrix.md``):

- a thread reply carries ``m.relates_to: {rel_type: m.thread, event_id: root,
  is_falling_back: true, m.in_reply_to: {event_id: newest thread event}}``;
- an edit is a new event with ``body: "* …"``, ``m.new_content`` holding the
  full new content and ``m.relates_to: {rel_type: m.replace, event_id}``;
- rich text is ``format: org.matrix.custom.html`` + ``formatted_body``;
- every message carries an empty ``m.mentions``: the bot never pings anyone by
  accident, whatever the model writes.

Homeservers refuse events over 64 KiB (signatures and hashes included), and a
Megolm-encrypted event is the plaintext in base64, a third larger.
:func:`fit_to_size` keeps an event under the limit by first shortening an
edit's fallback body (clients that understand edits read ``m.new_content``),
then dropping the HTML.
"""

from __future__ import annotations

import json
from typing import Any

from plugins.matrix.markdown import markdown_to_html

HTML_FORMAT = "org.matrix.custom.html"
# Room for the event envelope (ids, hashes, signatures, unsigned) under 65,536 bytes.
MAX_EVENT_BYTES = 60_000
MAX_ENCRYPTED_EVENT_BYTES = 44_000
FALLBACK_PREVIEW_CHARS = 500

Content = dict[str, Any]


def message(text: str, *, msgtype: str = "m.text") -> Content:
    """A message with a plain ``body`` and HTML rendered from its Markdown."""
    return {
        "msgtype": msgtype,
        "body": text,
        "format": HTML_FORMAT,
        "formatted_body": markdown_to_html(text),
        "m.mentions": {},
    }


def in_thread(content: Content, root: str, reply_to: str) -> Content:
    return {
        **content,
        "m.relates_to": {
            "rel_type": "m.thread",
            "event_id": root,
            "is_falling_back": True,
            "m.in_reply_to": {"event_id": reply_to},
        },
    }


def edit(target: str, new_content: Content) -> Content:
    return {
        "msgtype": new_content["msgtype"],
        "body": f"* {new_content['body']}",
        "m.new_content": new_content,
        "m.relates_to": {"rel_type": "m.replace", "event_id": target},
        "m.mentions": {},
    }


def reaction(target: str, key: str) -> Content:
    return {"m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": key}}


def encoded_size(content: Content) -> int:
    # nio serialises with json.dumps' defaults (ASCII escapes), so this is the byte count.
    return len(json.dumps(content, separators=(",", ":")))


def fit_to_size(content: Content, limit: int) -> Content:
    """``content`` unchanged when it fits ``limit`` bytes, else a smaller equivalent."""
    if encoded_size(content) <= limit:
        return content
    if "m.new_content" in content:
        body = content["m.new_content"]["body"]
        preview = body[:FALLBACK_PREVIEW_CHARS] + (
            "…" if len(body) > FALLBACK_PREVIEW_CHARS else ""
        )
        content = {**content, "body": f"* {preview}"}
        if encoded_size(content) <= limit:
            return content
        plain = _without_html(content["m.new_content"])
        return {**content, "m.new_content": plain}
    return _without_html(content)


def _without_html(content: Content) -> Content:
    return {k: v for k, v in content.items() if k not in ("format", "formatted_body")}
