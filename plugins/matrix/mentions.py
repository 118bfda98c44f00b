"""Is a message addressed to the bot, and what is left of it once the address is gone?

Matrix has three generations of mentions, and the bot honours all of them:

- intentional mentions: ``content["m.mentions"]["user_ids"]`` lists the bot;
- a pill: ``formatted_body`` links ``https://matrix.to/#/@bot:server``;
- plain text: the message starts with the bot's display name, ``@localpart``
  or full user id, usually followed by ``:`` or ``,`` (what older clients and
  people typing by hand send).

Reply quotes (``<mx-reply>`` and the ``> <@user> …`` fallback lines of older
clients) are removed first, so quoting one of the bot's own messages is not a
mention by itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

_MX_REPLY = re.compile(r"<mx-reply>.*?</mx-reply>", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class BotIdentity:
    """Who the bot is in Matrix: its user id and the display name people see."""

    user_id: str
    display_name: str | None = None

    @property
    def localpart(self) -> str:
        return self.user_id[1:].split(":", 1)[0]

    def pill_targets(self) -> tuple[str, ...]:
        return (
            f"matrix.to/#/{self.user_id}",
            f"matrix.to/#/{quote(self.user_id, safe='')}",
            f"matrix.to/#/{quote(self.user_id, safe='@')}",
        )

    def leading_address(self) -> re.Pattern[str]:
        """A pattern for the bot's name at the start of a message, with its separator."""
        names = {self.user_id, f"@{self.localpart}", self.localpart}
        if self.display_name:
            names.add(self.display_name)
            names.add(f"@{self.display_name}")
        alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
        return re.compile(rf"^\s*(?:{alternatives})(?:\s*[:,]\s*|\s+|$)", re.IGNORECASE)


def strip_reply_fallback(body: str) -> str:
    """Drop the ``> <@user> quoted`` lines older clients put before a reply's text."""
    lines = body.split("\n")
    if not lines or not lines[0].startswith("> <"):
        return body
    index = 0
    while index < len(lines) and lines[index].startswith(">"):
        index += 1
    if index < len(lines) and not lines[index].strip():
        index += 1
    return "\n".join(lines[index:])


def mentions_in_metadata(content: Mapping[str, Any], identity: BotIdentity) -> bool:
    """True when ``m.mentions`` or a pill in ``formatted_body`` names the bot."""
    mentions = content.get("m.mentions")
    if isinstance(mentions, Mapping):
        user_ids = mentions.get("user_ids")
        if isinstance(user_ids, list) and identity.user_id in user_ids:
            return True
    formatted = content.get("formatted_body")
    if isinstance(formatted, str) and content.get("format") == "org.matrix.custom.html":
        html = _MX_REPLY.sub("", formatted)
        return any(target in html for target in identity.pill_targets())
    return False


def strip_leading_address(text: str, identity: BotIdentity) -> tuple[str, bool]:
    """``("fix the tests", True)`` for ``"threadwright: fix the tests"``."""
    match = identity.leading_address().match(text)
    if match is None:
        return text, False
    return text[match.end() :].strip(), True
