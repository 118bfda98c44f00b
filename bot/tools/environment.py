"""The environment a tool's child process sees: allow-listed, never a secret.

Nothing is inherited by default. A child gets ``PATH`` (from the bot's own
environment, or a standard default), a ``HOME``, ``LANG``/``LC_ALL``
(``C.UTF-8``), ``TERM=dumb`` and ``GIT_TERMINAL_PROMPT=0`` (git fails instead
of waiting for a password nobody can type), plus exactly the names listed in
``tools.bash.env_passthrough``.

``HOME`` is a private directory per workspace under the system temp dir,
not the user's home and not the workspace: the user's dotfiles
(``~/.ssh``, ``~/.netrc``, cloud credentials, a credential-holding
``~/.gitconfig``) stay out of reach, and caches that tools write to ``~``
(pip, npm, pre-commit) land neither in the repository nor in the user's
home. It is stable per workspace so those caches survive between sessions.

Whatever the configuration says, a secret-looking variable (its *name* says
TOKEN, KEY, SECRET, PASSWORD, …, or its *value* is a URL carrying a password;
the rule is :func:`bot.policy.redaction_env.is_secret_variable`, which the
redactor shares) or one whose *value* contains a secret the bot holds is
dropped, with a warning naming the variable (never the value).
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from bot.policy.redaction_env import environment_secrets, is_secret_variable

if TYPE_CHECKING:
    from bot.config import Config

log = logging.getLogger(__name__)

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Below this length a secret is matched only as a whole value, so a short
# one cannot knock out every variable that happens to contain it.
_MIN_SUBSTRING_SECRET = 8


def build_tool_env(
    config: Config,
    workspace: Path,
    *,
    base: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> dict[str, str]:
    """The scrubbed environment for processes started by tools in ``workspace``.

    ``base`` is where ``PATH`` and pass-through names are read from (the
    bot's own environment by default); ``home`` overrides the private HOME.
    """
    source = os.environ if base is None else base
    env: dict[str, str] = {
        "PATH": source.get("PATH") or DEFAULT_PATH,
        "HOME": str(home if home is not None else private_home(workspace)),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TERM": "dumb",
        "GIT_TERMINAL_PROMPT": "0",
    }
    # Secrets of the bot's own environment, in a variable of another name (MY_VAR=$TOKEN).
    passthrough = config.tools.bash.env_passthrough
    inherited = environment_secrets(source) if passthrough else []
    for name in passthrough:
        value = source.get(name)
        if is_secret_variable(name, value or ""):
            log.warning(
                "tools.bash.env_passthrough: %s looks like a secret; not passed to tools", name
            )
            continue
        if value is not None and _holds_secret(value, inherited):
            log.warning("tool environment: %s holds a secret; not passed to tools", name)
            continue
        if value is not None:
            env[name] = value
    secrets = config.secrets.values()
    for name in list(env):
        if _holds_secret(env[name], secrets):
            log.warning("tool environment: %s holds a secret; not passed to tools", name)
            del env[name]
    return env


def _holds_secret(value: str, secrets: list[str]) -> bool:
    for secret in secrets:
        if value == secret or (len(secret) >= _MIN_SUBSTRING_SECRET and secret in value):
            return True
    return False


def private_home(workspace: Path) -> Path:
    """A 0700 directory owned by this user, stable for ``workspace``; created if needed."""
    digest = hashlib.sha256(str(os.path.realpath(workspace)).encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"threadwright-home-{os.getuid()}-{digest}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        info = os.lstat(path)
    except OSError:
        return Path(tempfile.mkdtemp(prefix="threadwright-home-"))
    # In a shared /tmp someone else could have planted the name first.
    safe = (
        stat.S_ISDIR(info.st_mode)
        and info.st_uid == os.getuid()
        and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    )
    return path if safe else Path(tempfile.mkdtemp(prefix="threadwright-home-"))
