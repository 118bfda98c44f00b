"""The Matrix adapter's pure parts: mentions, reactions, HTML, event content, translation."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from bot.events import ChatEventKind, ThreadKey
from plugins.matrix import content
from plugins.matrix.inbound import EventTranslator
from plugins.matrix.login_state import LoginState, LoginStateFile
from plugins.matrix.markdown import markdown_to_html
from plugins.matrix.mentions import (
    BotIdentity,
    mentions_in_metadata,
    strip_leading_address,
    strip_reply_fallback,
)
from plugins.matrix.reactions import reaction_name
from plugins.matrix.threads import ThreadIndex
from plugins.matrix.transport import MAX_MESSAGE_CHARS

BOT = BotIdentity("@threadwright:example.org", "Threadwright")
ROOM = "!room:example.org"


def event(
    body: str = "hello",
    *,
    event_id: str = "$e1",
    sender: str = "@alice:example.org",
    kind: str = "m.room.message",
    **content_fields: Any,
) -> dict[str, Any]:
    body_fields: dict[str, Any] = (
        {"msgtype": "m.text", "body": body} if kind == "m.room.message" else {}
    )
    return {
        "type": kind,
        "event_id": event_id,
        "sender": sender,
        "origin_server_ts": 1,
        "content": {**body_fields, **content_fields},
    }


class Resolver:
    """Stands in for the homeserver lookup of an event's thread."""

    def __init__(self, roots: dict[str, str]) -> None:
        self.roots = roots
        self.asked: list[str] = []

    async def __call__(self, room_id: str, event_id: str) -> str | None:
        self.asked.append(event_id)
        return self.roots.get(event_id)


def translator(
    resolver: Resolver | None = None, commands: tuple[str, ...] = ("refactor",)
) -> EventTranslator:
    def is_command(text: str) -> bool:
        return any(text.startswith(p + c) for c in commands for p in "!/")

    return EventTranslator(
        BOT, ThreadIndex(), is_command=is_command, resolve_thread=resolver or Resolver({})
    )


# --- mentions -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rest"),
    [
        ("Threadwright: fix the tests", "fix the tests"),
        ("threadwright, fix it", "fix it"),
        ("@threadwright fix it", "fix it"),
        ("@threadwright:example.org: /refactor a.py", "/refactor a.py"),
        ("Threadwright", ""),
    ],
)
def test_leading_address_is_a_mention_and_is_stripped(text: str, rest: str) -> None:
    assert strip_leading_address(text, BOT) == (rest, True)


@pytest.mark.parametrize("text", ["threadwrightish: no", "hey threadwright", "fix it"])
def test_other_text_is_not_an_address(text: str) -> None:
    assert strip_leading_address(text, BOT) == (text, False)


def test_intentional_mentions_and_pills_are_mentions() -> None:
    assert mentions_in_metadata({"m.mentions": {"user_ids": [BOT.user_id]}}, BOT)
    assert not mentions_in_metadata({"m.mentions": {"user_ids": ["@bob:example.org"]}}, BOT)
    for href in ("@threadwright:example.org", "%40threadwright%3Aexample.org"):
        pill = {
            "format": "org.matrix.custom.html",
            "formatted_body": f'hi <a href="https://matrix.to/#/{href}">Threadwright</a>',
        }
        assert mentions_in_metadata(pill, BOT), href


def test_a_quoted_reply_to_the_bot_is_not_a_mention() -> None:
    quoted = {
        "format": "org.matrix.custom.html",
        "formatted_body": '<mx-reply><a href="https://matrix.to/#/@threadwright:example.org">'
        "bot</a> said</mx-reply>thanks",
    }
    assert not mentions_in_metadata(quoted, BOT)
    assert strip_reply_fallback("> <@threadwright:example.org> said\n> more\n\nthanks") == "thanks"
    assert strip_reply_fallback("> a quote of my own") == "> a quote of my own"


# --- reactions and HTML ---------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("✅", "white_check_mark"),
        ("✔️", "heavy_check_mark"),
        ("❌", "x"),
        ("🔁", "repeat"),
        ("🛑", "octagonal_sign"),
        (":x:", "x"),
        ("🎉", "🎉"),
    ],
)
def test_reaction_keys_get_the_names_the_core_knows(key: str, name: str) -> None:
    assert reaction_name(key) == name


def test_markdown_becomes_html_and_raw_html_is_escaped() -> None:
    html = markdown_to_html("**bold** and `code`\nnext line\n\n```python\nx = 1\n```\n<img src=x>")
    assert "<strong>bold</strong>" in html and "<code>code</code>" in html
    assert "<br>" in html
    assert '<pre><code class="language-python">x = 1\n</code></pre>' in html
    assert "<img" not in html and "&lt;img src=x&gt;" in html
    assert "href" not in markdown_to_html("[x](javascript:alert(1))")


# --- content ------------------------------------------------------------------


def test_edits_carry_the_full_new_content_and_a_star_fallback() -> None:
    edit = content.edit("$orig", content.message("**done**"))
    assert edit["body"] == "* **done**"
    assert edit["m.relates_to"] == {"rel_type": "m.replace", "event_id": "$orig"}
    assert edit["m.new_content"]["formatted_body"] == "<p><strong>done</strong></p>"
    assert edit["m.mentions"] == {} and edit["m.new_content"]["m.mentions"] == {}


def test_a_full_size_message_fits_a_matrix_event() -> None:
    text = ("word " * (MAX_MESSAGE_CHARS // 5))[:MAX_MESSAGE_CHARS]
    edit = content.edit("$orig", content.message(text))
    assert content.fit_to_size(edit, content.MAX_EVENT_BYTES) is edit


def test_oversized_events_shrink_fallback_first_then_html() -> None:
    heavy = "ü" * 4_000  # six bytes each once JSON-escaped, three copies in an edit
    edit = content.edit("$orig", content.message(heavy))
    assert content.encoded_size(edit) > content.MAX_EVENT_BYTES
    fitted = content.fit_to_size(edit, content.MAX_EVENT_BYTES)
    assert fitted["body"].startswith("* üü") and len(fitted["body"]) < 600
    assert fitted["m.new_content"] == edit["m.new_content"]
    tighter = content.fit_to_size(edit, content.MAX_ENCRYPTED_EVENT_BYTES)
    assert "formatted_body" not in tighter["m.new_content"]
    assert tighter["m.new_content"]["body"] == heavy
    assert content.encoded_size(tighter) <= content.MAX_ENCRYPTED_EVENT_BYTES


# --- threads and saved login ----------------------------------------------------


def test_thread_index_knows_roots_and_the_newest_reply() -> None:
    index = ThreadIndex(capacity=3)
    index.record(ROOM, "$root", "$root")
    index.record(ROOM, "$a", "$root")
    index.record(ROOM, "$b", "$root")
    assert index.root_of(ROOM, "$a") == "$root"
    assert index.latest(ROOM, "$root") == "$b"
    assert index.latest(ROOM, "$other") == "$other"
    for n in range(5):
        index.record(ROOM, f"$x{n}", "$x0")
    assert index.root_of(ROOM, "$a") is None  # forgotten, bounded


async def test_login_state_is_saved_private_and_survives_damage(tmp_path: Path) -> None:
    state_file = await LoginStateFile.prepare(str(tmp_path / "store"))
    assert await state_file.load() is None
    state = LoginState("https://hs", "@bot:hs", "DEVICE", "secret-token")
    await state_file.save(state.with_next_batch("s42"))
    assert stat.S_IMODE(state_file.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(state_file.directory.stat().st_mode) == 0o700
    loaded = await state_file.load()
    assert loaded == LoginState("https://hs", "@bot:hs", "DEVICE", "secret-token", "s42")
    assert json.loads(state_file.path.read_text())["next_batch"] == "s42"
    state_file.path.write_text("{not json")
    assert await state_file.load() is None


# --- translation ------------------------------------------------------------------


async def test_a_mention_outside_a_thread_roots_a_new_thread() -> None:
    chat = await translator().translate(
        ROOM, event("Threadwright: run the tests", **{"m.mentions": {"user_ids": [BOT.user_id]}})
    )
    assert chat is not None
    assert chat.kind is ChatEventKind.MESSAGE
    assert chat.thread == ThreadKey("matrix", ROOM, "$e1")
    assert chat.mentions_bot and chat.text == "run the tests"
    assert chat.event_id == chat.message_id == "$e1"


async def test_thread_replies_keep_their_root_and_unaddressed_text() -> None:
    reply = event(
        "use argparse",
        event_id="$r1",
        **{"m.relates_to": {"rel_type": "m.thread", "event_id": "$root", "is_falling_back": True}},
    )
    chat = await translator().translate(ROOM, reply, "Alice")
    assert chat is not None
    assert chat.thread.thread == "$root" and not chat.mentions_bot
    assert chat.text == "use argparse" and chat.author == "Alice"


async def test_commands_outside_threads_are_addressed_without_a_mention() -> None:
    bang = await translator().translate(ROOM, event("!refactor src/utils.py"))
    assert bang is not None and bang.mentions_bot and bang.text == "!refactor src/utils.py"
    unknown = await translator().translate(ROOM, event("/tmp is full"))
    assert unknown is not None and not unknown.mentions_bot
    in_thread = event(
        "!refactor x", **{"m.relates_to": {"rel_type": "m.thread", "event_id": "$root"}}
    )
    threaded = await translator().translate(ROOM, in_thread)
    assert threaded is not None and not threaded.mentions_bot


@pytest.mark.parametrize(
    "source",
    [
        event("* edited", **{"m.relates_to": {"rel_type": "m.replace", "event_id": "$e0"}}),
        event("* edited", **{"m.new_content": {"msgtype": "m.text", "body": "edited"}}),
        event("Threadwright: I am a bot", msgtype="m.notice"),
        event("an image", msgtype="m.image"),
        {**event("gone"), "unsigned": {"redacted_because": {}}},
        {**event(), "content": {}},
        {"type": "m.room.redaction", "event_id": "$x", "sender": "@a:b", "content": {}},
    ],
)
async def test_edits_notices_media_and_redactions_are_not_input(source: dict[str, Any]) -> None:
    assert await translator().translate(ROOM, source) is None


async def test_reactions_find_their_thread_in_the_index_or_on_the_server() -> None:
    resolver = Resolver({"$old-reply": "$old-root"})
    translate = translator(resolver)
    await translate.translate(
        ROOM,
        event(
            "steer",
            event_id="$known",
            **{"m.relates_to": {"rel_type": "m.thread", "event_id": "$root"}},
        ),
    )

    def reaction(target: str, key: str) -> dict[str, Any]:
        return event(
            kind="m.reaction",
            event_id=f"$react-{target}",
            **{"m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": key}},
        )

    known = await translate.translate(ROOM, reaction("$known", "❌"))
    assert known is not None and known.kind is ChatEventKind.REACTION
    assert known.thread.thread == "$root" and known.reaction == "x"
    assert known.target_message_id == "$known"
    assert resolver.asked == []
    old = await translate.translate(ROOM, reaction("$old-reply", "✅"))
    assert old is not None and old.thread.thread == "$old-root"
    assert old.reaction == "white_check_mark"
    assert await translate.translate(ROOM, reaction("$unknown", "✅")) is None
    assert resolver.asked == ["$old-reply", "$unknown"]
