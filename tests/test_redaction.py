"""Secrets never reach the model, the transcript or the reply — even when a tool prints them,
encoded, reversed or in pieces, and even when nobody configured them (the bot's environment)."""

from __future__ import annotations

import base64
import logging
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from bot.config import Secrets
from bot.events import AgentEventKind
from bot.logs import RedactingFilter
from bot.policy.redaction import MASK, Redactor, held_secrets
from bot.policy.redaction_env import environment_secrets, is_secret_variable
from bot.policy.redaction_forms import fragment_length, looks_random
from bot.streaming import ReplyDocument
from bot.testing import Reply, ScriptedOllama, tool_call
from bot.testing.harness import RecordingAdapter, make_test_config, running_host
from bot.tools.environment import build_tool_env
from plugins.web.redact_stream import StreamRedactor

# Random-looking tokens, as a generator would make them (fixed, so failures reproduce).
TOKEN = "Zq3xV9pL2mTr8KwY4nBdHs7c"  # 24 characters, base62
TOKEN16 = "f7Kp2QxR9mZa4LwT"
HEX_SECRET = "9f86d081884c7d659a2feaa0c55ad015"  # a signing secret


# --- credential shapes --------------------------------------------------------------------


SHAPES: list[tuple[str, str, str]] = [
    # (text, what must be gone, what must stay)
    ("token xoxb-1234567890-abcdefghij here", "xoxb-1234567890", "token "),
    ("app xapp-1-A0123-456-abcdef", "xapp-1-A0123", "app "),
    ("refresh xoxe.xoxp-1-Mi0yLTEyMzQ1Njc4OTA", "Mi0yLTEy", "refresh "),
    ("refresh xoxe-1-My0xLTEyMzQ1Njc4OTAtMTIz", "My0xLTEy", "refresh "),
    (
        "hook https://hooks.slack.com/services/T0001/B0002/XXXXXXXXXXXXXXXXXXXXXXXX",
        "T0001/B0002",
        "https://hooks.slack.com/services/",
    ),
    ("gh ghp_abcdefghijklmnopqrstuvwxyz0123", "ghp_abc", "gh "),
    ("pat github_pat_11ABCDEFG0123456789_abcdefghijklmnop", "11ABCDEFG", "pat "),
    ("gitlab glpat-xY9zAb3CdE4fGh5IjK6L", "xY9zAb3", "gitlab "),
    ("deploy gldt-Ab12Cd34Ef56Gh78Ij90", "Ab12Cd34", "deploy "),
    ("runner glrt-t1_AbCdEfGhIjKlMnOpQrSt", "AbCdEfGh", "runner "),
    ("trigger glptt-0123456789abcdef0123456789abcdef01234567", "0123456789abcdef", "trigger "),
    ("scim glsoat-AbCdEfGhIjKlMnOpQrSt12", "AbCdEfGh", "scim "),
    ("new glpat-AbCdEfGhIjKlMnOpQrSt.01.0m1a2b3c4", "AbCdEfGh", "new "),
    ("aws AKIAABCDEFGHIJKLMNOP", "AKIAABCD", "aws "),
    ("openai sk-proj-AbCdEfGhIjKlMnOpQrStUvWx", "AbCdEfGh", "openai "),
    ("stripe sk_live_51H8AbCdEfGhIjKlMnOp", "51H8AbCd", "stripe "),
    ("restricted rk_live_51H8AbCdEfGhIjKlMnOp", "51H8AbCd", "restricted "),
    ("google AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q", "SyA1b2C3", "google "),
    ("hf hf_AbCdEfGhIjKlMnOpQrStUvWxYz01234567", "AbCdEfGh", "hf "),
    ("npm npm_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789", "AbCdEfGh", "npm "),
    (
        "pypi pypi-AgEIcHlwaS5vcmcCJGQ0YjE5NTVlLTg3ZDYtNDg3Ny1hMDI4LWQ2YTFhZWQ1OTI1ZgACKlsz",
        "AgEIcHlwaS5vcmc",
        "pypi ",
    ),
    (
        "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
        "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "dozjgNryP4J3",
        "jwt ",
    ),
    ("matrix syt_Ym90_AbCdEfGhIjKlMnOpQrSt_1a2B3c", "AbCdEfGh", "matrix "),
    (
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk=\n"
        "-----END OPENSSH PRIVATE KEY-----\nok",
        "b3BlbnNzaC1rZXk",
        "\nok",
    ),
    (
        '{"private_key": "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhk\\n-----END PRIVATE'
        ' KEY-----\\n", "client_email": "a@b.iam"}',
        "MIIEvQIBADANBgkqhk",
        '"client_email": "a@b.iam"',
    ),
    # Basic-auth URLs: scheme, user and host stay, the password goes.
    (
        "origin\thttps://deploy:s3cr3tPassw0rd@gitlab.example.com/org/repo.git (fetch)\n"
        "origin\thttps://deploy:s3cr3tPassw0rd@gitlab.example.com/org/repo.git (push)",
        "s3cr3tPassw0rd",
        "origin\thttps://deploy:[REDACTED]@gitlab.example.com/org/repo.git (fetch)",
    ),
    (
        "DATABASE_URL=postgres://app:pa55-w0rd_x@db.internal:5432/app",
        "pa55-w0rd_x",
        "postgres://app:[REDACTED]@db.internal:5432/app",
    ),
    ("https://x-access-token:ghs_Zq3xV9pL2mTr8KwY4nBd@github.com/o/r", "ghs_Zq3", "@github.com"),
    # Headers and assignments.
    (
        "curl -H 'Authorization: Bearer abc123def456ghi789jkl'",
        "abc123def456",
        "Authorization: Bearer ",
    ),
    ("Authorization: Basic dXNlcjpwYXNzd29yZDEyMw==", "dXNlcjpw", "Authorization: Basic "),
    ("PRIVATE-TOKEN: Ab12Cd34Ef56Gh78", "Ab12Cd34", "PRIVATE-TOKEN: "),
    ("x-api-key: 4f9a2b7c1d8e3f60", "4f9a2b7c", "x-api-key: "),
    ("db:\n  user: app\n  password: hunter2\n", "hunter2", "  password: "),
    ("[client]\npasswd = correct-horse-9\n", "correct-horse-9", "passwd = "),
    ("DB_PASSWORD=correcthorse\n", "correcthorse", "DB_PASSWORD="),
    ('{"username": "bot", "password": "Tr0ub4dor&3"}', "Tr0ub4dor", '"password": "'),
    ("mysqldump --password=s3cret-pw db", "s3cret-pw", "--password="),
    ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI", "= "),
    ("SECRET_KEY='django-insecure-4x!k2m9zq'", "4x!k2m9zq", "SECRET_KEY="),
]


@pytest.mark.parametrize(("text", "gone", "kept"), SHAPES, ids=[s[1][:12] for s in SHAPES])
def test_token_shapes_are_masked(text: str, gone: str, kept: str) -> None:
    out = Redactor().redact(text)
    assert MASK in out
    assert gone not in out
    assert kept in out


# Ordinary code and text that mentions tokens and passwords without holding one.
ORDINARY = """\
def login(user: str, password: str | None = None, token: str = "") -> Session:
    token = get_token()
    password = getpass.getpass("Password: ")
    if password == expected_password:
        return Session(user=user, password=password, token=self.token)
    headers = {"Authorization": f"Bearer {token}"}
    secret_key = os.environ["SECRET_KEY"]
    api_key = settings.api_key
    private_key = PKCS8.unwrap(blob)
    access_token: Optional[str] = None
    hf_hub_download(repo_id="org/model", filename="config.json")
    npm_config_cache = "~/.npm"
    task-1234567890abcdefghijklmnop
    disk-usage-report-for-the-week-2024
    x_password = user_pass
    USERNAME_PASSWORD = 0x02
    PASSWORD_STORE_DIR = ~/.password-store
password: str
token: Keyword.Reserved
The password: it must be at least twelve characters long.
Enter your password below, or use a token from the settings page.
Set `DB_PASSWORD=${DB_PASSWORD}` and `password: <your password>` in the file.
Connect to postgres://user:password@localhost:5432/app or https://user:pass@proxy:3128.
git@github.com:org/repo.git  ssh://git@gitlab.com:22/org/repo.git
https://localhost:8080/path?email=someone@example.com#top
commit 3f2a9c1e0b7d4a6f8e5c2b1a0d9f8e7c6b5a4d3e
Author: Dev <dev@example.com>
-rw-r--r-- 1 dev dev 4096 Jan  1 10:00 module_tokens.py
-----BEGIN PUBLIC KEY-----
Bearer tokens expire after an hour; refresh them with the refresh token.
"""


def test_ordinary_code_and_text_is_left_alone() -> None:
    assert Redactor().redact(ORDINARY) == ORDINARY
    # Nor do ten configured random secrets mask any of it, in pieces or encoded.
    held = [TOKEN, TOKEN16, HEX_SECRET, "hunter2-very-secret-value", "s3cr3t-pw!"]
    held += [f"xoxb-1234567890-{TOKEN}", "correct-horse-battery-9", TOKEN[::-1] + "Q1", "Ab" * 10]
    assert Redactor(held).redact(ORDINARY) == ORDINARY


def test_the_projects_own_source_is_left_alone() -> None:
    root = Path(__file__).resolve().parent.parent
    redactor = Redactor([TOKEN, HEX_SECRET, TOKEN16])
    changed = []
    for path in sorted([*root.glob("bot/**/*.py"), *root.glob("plugins/**/*.py")]):
        text = path.read_text()
        if redactor.redact(text) != text:
            changed.append(str(path.relative_to(root)))
    assert changed == []


# --- configured secrets, encoded, reversed and in pieces -----------------------------------


def test_configured_values_masked_longest_first() -> None:
    redactor = Redactor(["hunter2hunter2", "hunter2hunter2-extended", "abc"])
    assert redactor.redact("pw=hunter2hunter2-extended!") == f"pw={MASK}!"
    # Values too short to mask safely are left alone (they would hit ordinary words).
    assert redactor.redact("abc") == "abc"


def _base64_at_every_alignment(secret: str) -> list[str]:
    """base64 of the secret with 0, 1 and 2 bytes before it and a newline after (as `base64`)."""
    out = []
    for before in (b"", b"x", b"xy"):
        data = before + secret.encode() + b"\n"
        out += [base64.b64encode(data).decode(), base64.urlsafe_b64encode(data).decode()]
    return out


def test_encoded_forms_of_a_secret_are_masked() -> None:
    # '>' and '?' make base64's '+' and '/' appear, so the URL-safe alphabet differs.
    secret = "Zq3x>V9pL2m?Tr8KwY4nB~d"
    redactor = Redactor([secret])
    assert any("+" in b or "/" in b for b in _base64_at_every_alignment(secret))
    forms = {
        "hex": secret.encode().hex(),
        "HEX": secret.encode().hex().upper(),
        "reversed": secret[::-1],
        "url-encoded": quote(secret, safe=""),
    }
    for i, encoded in enumerate(_base64_at_every_alignment(secret)):
        forms[f"base64 {i}"] = encoded
    for name, encoded in forms.items():
        out = redactor.redact(f"out: {encoded} end")
        assert MASK in out, name
        # What is left of the encoding is at most the bytes that also encode its neighbours.
        left = out.replace("out: ", "").replace(" end", "").replace(MASK, "")
        assert len(left) <= 8, (name, out)


def test_encoded_forms_of_a_short_secret_are_masked_whole() -> None:
    redactor = Redactor(["s3cr3t-pw!"])
    for encoded in [b"s3cr3t-pw!".hex(), *_base64_at_every_alignment("s3cr3t-pw!")]:
        assert MASK in redactor.redact(encoded)
    assert redactor.redact("!wp-t3rc3s") == MASK


def test_pieces_of_a_long_random_secret_are_masked() -> None:
    redactor = Redactor([TOKEN])
    # cut -c1-10, then cut -c11-20: two tool results, each redacted alone.
    assert redactor.redact(TOKEN[:10] + "\n") == f"{MASK}\n"
    assert redactor.redact(TOKEN[10:20] + "\n") == f"{MASK}\n"
    # Any run of 8 characters, anywhere in the text, in hex too.
    assert redactor.redact(f"x={TOKEN[5:13]};") == f"x={MASK};"
    assert MASK in redactor.redact(TOKEN[3:13].encode().hex())
    # Pieces of 7 are below the fragment length: the documented limit.
    assert fragment_length(TOKEN) == 8
    assert redactor.redact(TOKEN[:7]) == TOKEN[:7]


def test_a_16_character_token_cut_in_two_anywhere_loses_a_half() -> None:
    redactor = Redactor([TOKEN16])
    for cut in range(1, len(TOKEN16)):
        first, second = redactor.redact(TOKEN16[:cut]), redactor.redact(TOKEN16[cut:])
        assert MASK in first or MASK in second, cut


def test_short_and_human_secrets_are_masked_whole_but_not_in_pieces() -> None:
    # Their pieces are words and numbers of ordinary text.
    assert not looks_random("hunter2-very-secret-value")
    assert not looks_random("0123456789012345")  # one character class
    assert not looks_random("postgres://app:pw@db/app")
    assert looks_random(TOKEN) and looks_random(HEX_SECRET)
    redactor = Redactor(["hunter2-very-secret-value", "s3cr3t-pw!"])
    assert redactor.redact("a very-secret-value here") == "a very-secret-value here"
    assert redactor.redact("key=hunter2-very-secret-value") == f"key={MASK}"


def test_pathological_text_stays_cheap() -> None:
    # A secret with a repeated chunk, against megabytes of that chunk: no quadratic blow-up.
    redactor = Redactor(["aaaaXk9mQ2pL7zR4aaaa"])
    start = time.perf_counter()
    out = redactor.redact("a" * 1_000_000)
    assert time.perf_counter() - start < 5
    assert out == "a" * 1_000_000


def test_non_ascii_text_and_secrets() -> None:
    secret = "Grüße-9xQ2mZ7pL4vR8kT"
    redactor = Redactor([secret])
    assert redactor.redact(f"«{secret}» ok") == f"«{MASK}» ok"
    assert redactor.redact(f"é {secret.encode().hex()} é") == f"é {MASK} é"


# --- streams ------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7])
def test_a_stream_never_shows_a_piece_of_a_secret(size: int) -> None:
    redactor = Redactor([TOKEN])
    text = f"the key is {TOKEN}, hex {TOKEN.encode().hex()} and {TOKEN[4:16]} done"
    stream = StreamRedactor(redactor, [TOKEN])
    shown = [stream.feed(text[i : i + size]) for i in range(0, len(text), size)]
    shown.append(stream.flush())
    joined = "".join(shown)
    assert joined == redactor.redact(text)
    for piece in shown:
        for k in range(len(TOKEN) - 7):
            assert TOKEN[k : k + 8] not in piece
    assert joined.startswith("the key is ") and joined.endswith(" done")


# --- the bot's own environment ------------------------------------------------------------


ENVIRON = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/home/bot",
    "SLACK_BOT_TOKEN": "xoxb-1-not-configured-anywhere",
    "DEPLOY_API_TOKEN": TOKEN,
    "DATABASE_URL": "postgres://app:Pw-7f3k9Q2x@db.internal:5432/app",
    "HTTPS_PROXY": "http://proxyuser:Prx%2F9secret@proxy:3128",
    "GOOGLE_APPLICATION_CREDENTIALS": "/run/secrets/gcp.json",
    "FEATURE_KEY_ENABLED": "true",
    "EDITOR": "vim",
}


def test_secret_looking_environment_values_are_held() -> None:
    found = environment_secrets(ENVIRON)
    assert "xoxb-1-not-configured-anywhere" in found and TOKEN in found
    assert "Pw-7f3k9Q2x" in found  # the password of a DSN, besides the whole URL
    assert "Prx%2F9secret" in found and "Prx/9secret" in found
    for not_secret in ("/usr/bin:/bin", "/home/bot", "/run/secrets/gcp.json", "true", "vim"):
        assert not_secret not in found
    assert held_secrets(["configured-one"], ENVIRON)[0] == "configured-one"
    redactor = Redactor(held_secrets([], ENVIRON))
    assert redactor.redact(f"printed {TOKEN[::-1]} and Pw-7f3k9Q2x") == f"printed {MASK} and {MASK}"


def test_the_tool_environment_and_the_redactor_share_one_rule(tmp_path: Path) -> None:
    for name in ("SLACK_BOT_TOKEN", "DEPLOY_API_TOKEN", "GOOGLE_APPLICATION_CREDENTIALS"):
        assert is_secret_variable(name)
    assert is_secret_variable("DATABASE_URL", ENVIRON["DATABASE_URL"])
    assert not is_secret_variable("DOCS_URL", "https://example.com/docs")
    environ = {**ENVIRON, "DOCS_URL": "https://example.com/docs", "ALIAS": TOKEN}
    passthrough = ["DATABASE_URL", "HTTPS_PROXY", "DOCS_URL", "ALIAS", "EDITOR"]
    config = make_test_config(
        tmp_path / "ws", "http://127.0.0.1:9", tools={"bash": {"env_passthrough": passthrough}}
    )
    env = build_tool_env(config, tmp_path, base=environ, home=tmp_path / "home")
    # Credentials in a URL, and a secret under an innocent name, stay out; the rest passes.
    assert "DATABASE_URL" not in env and "HTTPS_PROXY" not in env and "ALIAS" not in env
    assert env["DOCS_URL"] == "https://example.com/docs" and env["EDITOR"] == "vim"


def test_log_records_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.redaction")
    handler_filter = RedactingFilter(Redactor(held_secrets(["s3cr3t-value-99"], ENVIRON)))
    logger.addFilter(handler_filter)
    try:
        with caplog.at_level(logging.INFO, logger="test.redaction"):
            logger.info("connecting with %s and %s", "s3cr3t-value-99", TOKEN.encode().hex())
    finally:
        logger.removeFilter(handler_filter)
    assert "s3cr3t-value-99" not in caplog.text and MASK in caplog.text
    assert TOKEN.encode().hex()[:16] not in caplog.text


# --- through the real loop ----------------------------------------------------------------


def _everything_shown(adapter: RecordingAdapter, turns: list[Any]) -> str:
    """Every chat message: the rendered replies and the notices."""
    texts = [text for _, text in adapter.notices]
    for turn in turns:
        document = ReplyDocument()
        for event in turn.events:
            document.apply(event)
        texts.append(document.render())
        texts += [str(e.data) for e in turn.of(AgentEventKind.TOOL_RESULT)]
    return "\n".join(texts)


def _leaks(text: str, secret: str) -> list[str]:
    """The forms of ``secret`` found in ``text``: whole, hex, base64, any 8-character piece."""
    found = []
    if secret in text:
        found.append("whole")
    if secret.encode().hex() in text:
        found.append("hex")
    core = base64.b64encode(secret.encode()).decode()[:-4]
    if core in text:
        found.append("base64")
    found += [f"piece {k}" for k in range(len(secret) - 7) if secret[k : k + 8] in text]
    return found


async def test_encoded_and_split_secret_never_reaches_model_chat_or_store(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "secret.txt").write_text(TOKEN + "\n")
    scripted_ollama.script(
        Reply(
            tool_calls=[
                tool_call(
                    "bash",
                    command="python -c \"print(open('secret.txt').read().strip().encode().hex())\"",
                )
            ]
        ),
        Reply(
            tool_calls=[
                tool_call(
                    "bash",
                    command='python -c "import base64; print(base64.'
                    "b64encode(open('secret.txt', 'rb').read()).decode())\"",
                )
            ]
        ),
        Reply(tool_calls=[tool_call("bash", command="cut -c1-10 secret.txt")]),
        Reply(tool_calls=[tool_call("bash", command="cut -c11-20 secret.txt")]),
        Reply(content=f"Assembled it: {TOKEN[:12]}…"),
    )
    config = make_test_config(
        ws,
        scripted_ollama.url,
        tools={"bash": {"sandbox": "none", "allowed_commands": ["python", "cut", "cat"]}},
    )
    config.secrets = Secrets(extra={"DEPLOY_TOKEN": TOKEN})
    async with running_host(config) as (host, adapter):
        await adapter.say("print the deploy token, encoded")
        turn = await adapter.wait_turn(timeout=30)
        transcript = await host.runtime.store.load_messages(turn.session_id)
    results = [e.data["result"] for e in turn.of(AgentEventKind.TOOL_RESULT)]
    assert [r["ok"] for r in results] == [True] * 4  # the commands ran and printed
    assert all(MASK in r["stdout"] for r in results)
    sent = str(scripted_ollama.chat_requests)
    assert len(scripted_ollama.chat_requests) == 5
    assert _leaks(sent, TOKEN) == []
    assert _leaks(str(transcript), TOKEN) == []
    assert _leaks(_everything_shown(adapter, [turn]), TOKEN) == []


async def test_a_secret_of_the_bots_environment_is_redacted_unconfigured(
    scripted_ollama: ScriptedOllama, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def run(name: str) -> tuple[str, str, str]:
        ws = tmp_path / name
        ws.mkdir()
        # The value sits in a file under no telling name: only the environment rule knows it.
        (ws / "notes.txt").write_text(f"the value: {TOKEN}\n")
        scripted_ollama.chat_requests.clear()
        scripted_ollama.script(
            Reply(tool_calls=[tool_call("bash", command="cat notes.txt")]),
            Reply(content=f"It is {TOKEN[::-1]} reversed."),
        )
        config = make_test_config(ws, scripted_ollama.url, tools={"bash": {"sandbox": "none"}})
        async with running_host(config) as (host, adapter):
            await adapter.say("what is in the notes?")
            turn = await adapter.wait_turn(timeout=30)
            transcript = await host.runtime.store.load_messages(turn.session_id)
        sent = str(scripted_ollama.chat_requests)
        return sent, str(transcript), _everything_shown(adapter, [turn])

    # Without the variable the token is just text (so this test can fail)…
    monkeypatch.delenv("DEPLOY_API_TOKEN", raising=False)
    sent, _, _ = await run("control")
    assert TOKEN in sent
    # …with it in the bot's environment, no request, transcript or message holds it.
    monkeypatch.setenv("DEPLOY_API_TOKEN", TOKEN)
    sent, transcript, shown = await run("ws")
    for where in (sent, transcript, shown):
        assert TOKEN not in where and TOKEN[::-1] not in where
        assert _leaks(where, TOKEN) == []
    assert MASK in sent


async def test_secret_in_a_file_never_reaches_the_model(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / ".env").write_text(
        "SLACK_BOT_TOKEN=xoxb-999-real-looking-token\nDB_PASSWORD=pa55w0rd-xyz\n"
    )
    scripted_ollama.script(
        Reply(tool_calls=[{"name": "read_file", "arguments": {"path": ".env"}}]),
        Reply(tool_calls=[{"name": "bash", "arguments": {"command": "cat .env"}}]),
        Reply(content="done"),
    )
    config = make_test_config(ws, scripted_ollama.url)
    config.secrets = Secrets(extra={"DB_PASSWORD": "pa55w0rd-xyz"})
    async with running_host(config) as (host, adapter):
        await adapter.say("show the env file")
        turn = await adapter.wait_turn()
        transcript = await host.runtime.store.load_messages(turn.session_id)
    sent = str(scripted_ollama.chat_requests)
    assert "xoxb-999" not in sent and "pa55w0rd-xyz" not in sent
    assert MASK in sent
    assert "pa55w0rd-xyz" not in str(transcript) and "xoxb-999" not in str(transcript)
    shown = [e for e in turn.events if e.kind is AgentEventKind.TOOL_RESULT]
    assert "pa55w0rd" not in str([e.data for e in shown])


async def test_pasted_secret_never_reaches_model_store_or_reply(
    scripted_ollama: ScriptedOllama, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    scripted_ollama.script(Reply(content="I will not repeat xoxb-777-echoed-by-the-model-abc."))
    config = make_test_config(ws, scripted_ollama.url)
    async with running_host(config) as (host, adapter):
        await adapter.say("deploy with token xoxp-1234567890-pasted-by-user please")
        turn = await adapter.wait_turn()
        transcript = await host.runtime.store.load_messages(turn.session_id)
    assert "xoxp-1234567890" not in str(scripted_ollama.chat_requests)
    assert "xoxp-1234567890" not in str(transcript)
    assert "xoxb-777" not in str(transcript)

    document = ReplyDocument()
    for event in turn.events:
        document.apply(event)
    assert "xoxb-777" not in document.render() and MASK in document.render()
