"""Secrets never reach the model, the transcript or the reply — even when a tool prints them."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bot.config import Secrets
from bot.events import AgentEventKind
from bot.logs import RedactingFilter
from bot.policy.redaction import MASK, Redactor
from bot.testing import Reply, ScriptedOllama
from bot.testing.harness import make_test_config, running_host


@pytest.mark.parametrize(
    "text",
    [
        "token xoxb-1234567890-abcdefghij here",
        "app xapp-1-A0123-456-abcdef",
        "gh ghp_abcdefghijklmnopqrstuvwxyz0123",
        "aws AKIAABCDEFGHIJKLMNOP",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk=\n-----END OPENSSH PRIVATE KEY-----",
    ],
)
def test_token_shapes_are_masked(text: str) -> None:
    out = Redactor().redact(text)
    assert MASK in out
    for secretish in ("xoxb-1234567890", "xapp-1-A0123", "ghp_abc", "AKIAABCD", "b3BlbnNzaC1rZXk"):
        assert secretish not in out


def test_configured_values_masked_longest_first() -> None:
    redactor = Redactor(["hunter2hunter2", "hunter2hunter2-extended", "abc"])
    assert redactor.redact("pw=hunter2hunter2-extended!") == f"pw={MASK}!"
    # Values too short to mask safely are left alone (they would hit ordinary words).
    assert redactor.redact("abc") == "abc"


def test_log_records_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.redaction")
    handler_filter = RedactingFilter(Redactor(["s3cr3t-value-99"]))
    logger.addFilter(handler_filter)
    try:
        with caplog.at_level(logging.INFO, logger="test.redaction"):
            logger.info("connecting with %s", "s3cr3t-value-99")
    finally:
        logger.removeFilter(handler_filter)
    assert "s3cr3t-value-99" not in caplog.text and MASK in caplog.text


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
    from bot.streaming import ReplyDocument

    document = ReplyDocument()
    for event in turn.events:
        document.apply(event)
    assert "xoxb-777" not in document.render() and MASK in document.render()
