"""``threadwright doctor``: check a set-up, one line per check, each failure with its fix.

Checks, in order: the configuration; each model endpoint (reachable, Ollama's
version) and each configured model (present, tool-capable); the GPU as NVML
sees it; the credentials of every enabled chat platform (Slack ``auth.test``
and the Socket Mode app token, Matrix ``whoami`` or a password login); the
store; bubblewrap. The exit code is non-zero when any check failed; warnings
(no GPU, no sandbox in ``auto`` mode) do not fail.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

    from bot.config import Config

HTTP_TIMEOUT_S = 10.0


@dataclass(slots=True)
class Check:
    name: str
    ok: bool
    detail: str
    warning: bool = False

    def line(self) -> str:
        mark = "OK  " if self.ok else ("WARN" if self.warning else "FAIL")
        return f"[{mark}] {self.name}: {self.detail}"


def _warn(name: str, detail: str) -> Check:
    return Check(name, False, detail, warning=True)


# --- models -------------------------------------------------------------------


async def _endpoint_line(client: Any, host: str) -> Check:
    version = ""
    if hasattr(client, "version"):
        try:
            version = await client.version()
        except Exception:
            version = ""
    detail = f"reachable, Ollama {version}" if version else "reachable"
    return Check(f"endpoint {host}", True, detail)


async def _check_models(config: Config) -> list[Check]:
    from bot.models.base import ModelError
    from bot.models.registry import ModelRegistry
    from bot.plugins import make_plugin_manager

    checks: list[Check] = []
    registry = ModelRegistry.from_plugins(make_plugin_manager(), config)
    try:
        routing = config.routing
        wanted = [
            ("local_model", routing.local_model),
            ("fallback_model", routing.fallback_model),
            ("cloud_model", routing.cloud_model),
        ]
        listed: dict[str, list[str] | None] = {}
        for role, model in wanted:
            endpoint = registry.endpoint_for(model)
            client = registry.client_for(model)
            host = endpoint.host or config.ollama_host
            if host not in listed:
                try:
                    listed[host] = await client.list_models()
                    checks.append(await _endpoint_line(client, host))
                except ModelError as exc:
                    listed[host] = None
                    checks.append(Check(f"endpoint {host}", False, exc.user_message))
            names = listed[host]
            if names is None:
                continue
            cloud = registry.is_cloud(model)
            present = model in names or f"{model}:latest" in names
            if not present and not cloud:
                checks.append(
                    Check(f"{role} {model}", False, f"not present: run `ollama pull {model}`")
                )
                continue
            try:
                info = await client.show(model)
            except ModelError as exc:
                checks.append(Check(f"{role} {model}", cloud, exc.user_message, warning=cloud))
                continue
            caps = info.get("capabilities") or []
            if "tools" not in caps:
                checks.append(
                    Check(
                        f"{role} {model}",
                        False,
                        "present but does not support tools; pick a tool-capable model",
                    )
                )
            else:
                checks.append(
                    Check(
                        f"{role} {model}",
                        True,
                        f"present, tools supported, context {info.get('context_length')}",
                    )
                )
    finally:
        await registry.close()
    return checks


# --- GPU ------------------------------------------------------------------------


async def _check_gpu(reader: Any = None) -> Check:
    try:
        from bot.gpu import NvmlReader
    except ImportError:
        return _warn("gpu", "GPU support is not part of this build")
    reader = reader or NvmlReader()
    try:
        snapshot = await asyncio.to_thread(reader.read)
    finally:
        close = getattr(reader, "close", None)
        if close is not None:
            await asyncio.to_thread(close)
    if snapshot.available:
        return Check("gpu", True, snapshot.describe())
    return _warn(
        "gpu",
        f"{snapshot.describe()}; models run on the CPU (slowly). For an NVIDIA GPU install "
        "its driver and `pip install nvidia-ml-py`",
    )


# --- chat platforms -------------------------------------------------------------


async def _slack_call(
    client: httpx.AsyncClient, url: str, method: str, token: str
) -> dict[str, Any]:
    response = await client.post(url + method, headers={"Authorization": f"Bearer {token}"})
    if response.status_code == 429:
        return {"ok": False, "error": "ratelimited"}
    data = response.json()
    return data if isinstance(data, dict) else {"ok": False, "error": "unreadable answer"}


async def _check_slack(config: Config) -> list[Check]:
    import httpx

    secrets = config.secrets
    url = config.slack_api_url
    checks: list[Check] = []
    if not secrets.slack_bot_token:
        checks.append(
            Check(
                "slack bot token",
                False,
                "SLACK_BOT_TOKEN is not set: copy the Bot User OAuth Token (xoxb-…) from "
                "your app's OAuth & Permissions page",
            )
        )
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S) as client:
        if secrets.slack_bot_token:
            try:
                data = await _slack_call(client, url, "auth.test", secrets.slack_bot_token)
            except (httpx.HTTPError, ValueError) as exc:
                checks.append(Check("slack bot token", False, f"cannot reach {url}: {exc}"))
            else:
                if data.get("ok"):
                    detail = f"valid: {data.get('user')} in {data.get('team')} ({data.get('url')})"
                    checks.append(Check("slack bot token", True, detail))
                else:
                    checks.append(
                        Check(
                            "slack bot token",
                            False,
                            f"auth.test said {data.get('error')}: the token is wrong or revoked; "
                            "reinstall the app and copy its xoxb- token into SLACK_BOT_TOKEN",
                        )
                    )
        if config.slack.mode == "socket":
            checks.append(await _check_slack_app_token(client, config))
        elif not secrets.slack_signing_secret:
            checks.append(
                Check(
                    "slack signing secret",
                    False,
                    "SLACK_SIGNING_SECRET is not set (HTTP mode needs it): copy it from "
                    "Basic Information → App Credentials",
                )
            )
        else:
            checks.append(Check("slack signing secret", True, "set"))
    return checks


async def _check_slack_app_token(client: httpx.AsyncClient, config: Config) -> Check:
    import httpx

    token = config.secrets.slack_app_token
    if not token:
        return Check(
            "slack app token",
            False,
            "SLACK_APP_TOKEN is not set (Socket Mode needs it): create an app-level token "
            "with connections:write under Basic Information",
        )
    try:
        data = await _slack_call(client, config.slack_api_url, "apps.connections.open", token)
    except (httpx.HTTPError, ValueError) as exc:
        return Check("slack app token", False, f"cannot reach {config.slack_api_url}: {exc}")
    if data.get("ok"):
        return Check("slack app token", True, "valid, Socket Mode available")
    return Check(
        "slack app token",
        False,
        f"apps.connections.open said {data.get('error')}: enable Socket Mode and put an "
        "app-level token (xapp-…, connections:write) in SLACK_APP_TOKEN",
    )


async def _check_matrix(config: Config) -> Check:
    import httpx

    homeserver = (config.matrix_homeserver or "").rstrip("/")
    secrets = config.secrets
    if not homeserver:
        return Check("matrix", False, "MATRIX_HOMESERVER is not set (e.g. https://matrix.org)")
    if not (secrets.matrix_access_token or secrets.matrix_password):
        return Check("matrix", False, "set MATRIX_ACCESS_TOKEN (or MATRIX_USER_ID and a password)")
    api = f"{homeserver}/_matrix/client/v3"
    try:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S) as client:
            if secrets.matrix_access_token:
                response = await client.get(
                    f"{api}/account/whoami",
                    headers={"Authorization": f"Bearer {secrets.matrix_access_token}"},
                )
                how = "access token"
            else:
                response = await _matrix_password_login(client, api, config)
                how = "password login"
    except httpx.HTTPError as exc:
        return Check("matrix", False, f"cannot reach {homeserver}: {exc}")
    try:
        data = response.json()
    except ValueError:
        data = {}
    if response.status_code == 200 and data.get("user_id"):
        user = data["user_id"]
        if config.matrix_user_id and config.matrix_user_id != user:
            return Check(
                "matrix",
                False,
                f"{how} is for {user}, but MATRIX_USER_ID is {config.matrix_user_id}",
            )
        return Check("matrix", True, f"{how} works for {user} on {homeserver}")
    error = data.get("errcode") or f"HTTP {response.status_code}"
    fix = (
        "the token is wrong or was logged out; create a new one and set MATRIX_ACCESS_TOKEN"
        if secrets.matrix_access_token
        else "check MATRIX_USER_ID and MATRIX_PASSWORD"
    )
    return Check("matrix", False, f"{how} refused ({error}): {fix}")


async def _matrix_password_login(client: httpx.AsyncClient, api: str, config: Config) -> Any:
    if not config.matrix_user_id:
        raise _MissingUser
    response = await client.post(
        f"{api}/login",
        json={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": config.matrix_user_id},
            "password": config.secrets.matrix_password,
            "initial_device_display_name": "threadwright doctor",
        },
    )
    token = response.json().get("access_token") if response.status_code == 200 else None
    if token:
        # The check must not leave a device behind for every run.
        await client.post(f"{api}/logout", headers={"Authorization": f"Bearer {token}"})
    return response


class _MissingUser(Exception):
    pass


# --- host -----------------------------------------------------------------------


async def _check_store(config: Config) -> Check:
    from bot.store.base import open_store

    path = config.store_path()
    try:
        store = await open_store(path)
        try:
            await store.check_writable()
        finally:
            await store.close()
    except Exception as exc:
        return Check("store", False, f"{path}: {exc}; check the path's permissions")
    return Check("store", True, f"{path} writable")


async def _check_sandbox(config: Config) -> list[Check]:
    from bot.policy.sandbox import bwrap_support
    from bot.policy.sandbox_limits import cgroup_available, running_as_root

    support = await asyncio.to_thread(bwrap_support)
    mode = config.tools.bash.sandbox
    if mode == "none":
        return [
            _warn(
                "sandbox",
                "off (tools.bash.sandbox: none): every allowed command runs as the bot's "
                "user and can read its environment; see docs/security.md",
            )
        ]
    if support.path:
        checks = [Check("sandbox", True, f"bubblewrap works ({support.path})")]
        if running_as_root() and not await asyncio.to_thread(cgroup_available):
            checks.append(
                _warn(
                    "sandbox limits",
                    "running as root without a writable pids cgroup: a fork bomb in the "
                    "sandbox is not stopped; run the bot as an unprivileged user",
                )
            )
        if not support.sizes:
            checks.append(
                _warn("sandbox limits", "this bubblewrap has no --size: /tmp is unbounded")
            )
        return checks
    fix = (
        f"bubblewrap cannot create a sandbox here ({support.error}): `apt-get install "
        "bubblewrap` and allow unprivileged user namespaces; in Docker see "
        "deploy/docker-compose.yml (security_opt), under systemd do not set "
        "ProtectKernelTunables/ProtectKernelLogs (docs/security.md)"
    )
    if mode == "bwrap":
        return [Check("sandbox", False, fix + "; tools.bash.sandbox is bwrap, so bash fails")]
    return [
        _warn(
            "sandbox",
            "NO SANDBOX: " + fix + "; until then every shell command in chat needs an approval "
            "(tools.bash.sandbox: auto fails closed) and the console runs commands unsandboxed",
        )
    ]


async def collect_checks(config: Config, *, gpu_reader: Any = None) -> list[Check]:
    checks = [Check("config", True, config.source or "defaults (no agent_config.yaml)")]
    checks.extend(await _check_models(config))
    checks.append(await _check_gpu(gpu_reader))
    if "slack" in config.adapters:
        checks.extend(await _check_slack(config))
    if "matrix" in config.adapters:
        try:
            checks.append(await _check_matrix(config))
        except _MissingUser:
            checks.append(Check("matrix", False, "a password login needs MATRIX_USER_ID"))
    checks.append(await _check_store(config))
    checks.extend(await _check_sandbox(config))
    return checks


async def run_doctor(config: Config, *, gpu_reader: Any = None) -> int:
    checks = await collect_checks(config, gpu_reader=gpu_reader)
    failed = False
    for check in checks:
        print(check.line())
        if not check.ok and not check.warning:
            failed = True
    print("some checks failed" if failed else "all checks passed", file=sys.stderr)
    return 1 if failed else 0
