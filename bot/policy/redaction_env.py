"""Which environment variables hold secrets: one rule for the tool environment and the redactor.

A variable is secret-looking when its *name* says so (``*TOKEN*``,
``*SECRET*``, ``*PASSWORD*``, ``*KEY*``, ``*CREDENTIAL*``…) or its *value*
carries credentials (``DATABASE_URL=postgres://app:pw@db/app``, a proxy
URL with a password). :mod:`bot.tools.environment` never passes such a
variable to a tool, and the runtime redacts the values of every one of them
in the bot's own environment (:func:`environment_secrets`), configured as a
secret or not: a token the bot was started with must not reach a model even
when a tool finds another way to print it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from urllib.parse import unquote

SECRET_NAME = re.compile(
    r"TOKEN|KEY|SECRET|PASSWORD|PASSWD|PASSPHRASE|CREDENTIAL|PRIVATE", re.IGNORECASE
)
# scheme://user:password@ anywhere in a value (a DSN, a list of URLs).
CREDENTIAL_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s:/?#@]*:(?P<password>[^\s/?#@]+)@")
# Values under a secret-looking name that are settings, not secrets.
_NOT_SECRET = frozenset({"true", "false", "yes", "no", "on", "off", "none", "null", "0", "1"})


def is_secret_variable(name: str, value: str = "") -> bool:
    return bool(SECRET_NAME.search(name) or CREDENTIAL_URL.search(value))


def _secret_values(value: str) -> list[str]:
    """The literal secrets one secret-looking variable's value holds."""
    values: list[str] = []
    for match in CREDENTIAL_URL.finditer(value):
        password = match.group("password")
        values += [password, unquote(password)]
    plain = value.strip()
    # A file path names where a key is (GOOGLE_APPLICATION_CREDENTIALS=/run/…),
    # it is not the key: masking it would hide file names in every listing.
    is_path = plain.startswith(("/", "~/", "./")) and "://" not in plain
    if plain.lower() not in _NOT_SECRET and not is_path:
        values.append(plain)
    return values


def environment_secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    """The secret values held by secret-looking variables of ``environ`` (the process's)."""
    source = os.environ if environ is None else environ
    found: list[str] = []
    for name, value in source.items():
        if value and is_secret_variable(name, value):
            found += _secret_values(value)
    return list(dict.fromkeys(found))


def secret_variable_names(environ: Mapping[str, str] | None = None) -> list[str]:
    """The names (never the values) of the secret-looking variables, for a log line."""
    source = os.environ if environ is None else environ
    return sorted(n for n, v in source.items() if v and is_secret_variable(n, v))


def held_secrets(configured: Iterable[str], environ: Mapping[str, str] | None = None) -> list[str]:
    """Every secret value the bot holds: the configured ones and its environment's."""
    return list(dict.fromkeys([*(s for s in configured if s), *environment_secrets(environ)]))
