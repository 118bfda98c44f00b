"""Loopback stand-ins for the services threadwright talks to, for tests.

Each emulator speaks the real wire protocol, so the production client libraries
run unchanged against it.
"""

from tests.emulators.slack import SlackEmulator
from tests.emulators.slack_delivery import Ack, HttpAttempt, SentEnvelope
from tests.emulators.slack_hooks import ResponseUrlPost
from tests.emulators.slack_store import SlackMessage
from tests.emulators.slack_webapi import ApiCall

__all__ = [
    "Ack",
    "ApiCall",
    "HttpAttempt",
    "ResponseUrlPost",
    "SentEnvelope",
    "SlackEmulator",
    "SlackMessage",
]
