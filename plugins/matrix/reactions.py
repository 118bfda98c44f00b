"""Reaction keys: what the bot reacts with, and how users' reactions are named for the core.

Matrix reactions are ``m.reaction`` events whose ``m.annotation`` key is the
emoji itself. The core (approvals, stop) understands Slack-style short names,
so well-known emoji are normalised to them; anything else passes through as
the emoji. Variation selectors are dropped (``✔️`` and ``✔`` are one
reaction), and a key typed as ``:name:`` becomes ``name``.

The bot's acknowledgements: 👀 working, 📥 steering queued, ✅ steering
applied, 🛑 stopped.
"""

from __future__ import annotations

MEANING_EMOJI = {
    "working": "👀",
    "queued": "📥",
    "applied": "✅",
    "stopped": "🛑",
}

# Offered under an approval question so approvers answer with one click.
APPROVAL_CHOICES = ("✅", "🔁", "❌")

_EMOJI_NAMES = {
    "✅": "white_check_mark",
    "✔": "heavy_check_mark",
    "☑": "ballot_box_with_check",
    "❌": "x",
    "✖": "heavy_multiplication_x",
    "🔁": "repeat",
    "🛑": "octagonal_sign",
    "⛔": "no_entry",
    "👀": "eyes",
    "📥": "inbox_tray",
    "👍": "+1",
    "👎": "-1",
}

_VARIATION_SELECTORS = dict.fromkeys(map(ord, "\ufe0e\ufe0f"))


def reaction_name(key: str) -> str:
    """The name the core matches on for an annotation key."""
    bare = key.translate(_VARIATION_SELECTORS).strip()
    if len(bare) > 2 and bare.startswith(":") and bare.endswith(":"):
        return bare[1:-1]
    return _EMOJI_NAMES.get(bare, bare)
