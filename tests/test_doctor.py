"""`threadwright doctor` against healthy and broken set-ups, all on loopback."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bot.config import Secrets
from bot.doctor import run_doctor
from bot.gpu import GpuInfo, StaticGpuReader
from bot.testing import ScriptedOllama
from bot.testing.harness import make_test_config
from tests.emulators.slack import SlackEmulator

MATRIX_TOKEN = "syt_good_token_123"
MATRIX_USER = "@threadwright:example.org"
FALLBACK = "qwen3:8b"
GIB = 1024**3


class MatrixStub:
    """The three client-API calls doctor makes: whoami, password login, logout."""

    def __init__(self) -> None:
        self.logins: list[dict[str, Any]] = []
        self.logouts: list[str] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def whoami(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") == f"Bearer {MATRIX_TOKEN}":
            return web.json_response({"user_id": MATRIX_USER, "device_id": "DEV"})
        return web.json_response(
            {"errcode": "M_UNKNOWN_TOKEN", "error": "Invalid access token passed."}, status=401
        )

    async def login(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.logins.append(body)
        if body.get("password") == "right-password":
            return web.json_response(
                {"user_id": body["identifier"]["user"], "access_token": "syt_fresh_login_token"}
            )
        return web.json_response(
            {"errcode": "M_FORBIDDEN", "error": "Invalid password"}, status=403
        )

    async def logout(self, request: web.Request) -> web.Response:
        self.logouts.append(request.headers.get("Authorization", ""))
        return web.json_response({})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/_matrix/client/v3/account/whoami", self.whoami)
        app.router.add_post("/_matrix/client/v3/login", self.login)
        app.router.add_post("/_matrix/client/v3/logout", self.logout)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def matrix() -> AsyncIterator[MatrixStub]:
    stub = MatrixStub()
    await stub.start()
    try:
        yield stub
    finally:
        await stub.stop()


@pytest.fixture
async def slack() -> AsyncIterator[SlackEmulator]:
    async with SlackEmulator() as emulator:
        yield emulator


def healthy_config(
    tmp_path: Path, ollama: ScriptedOllama, slack: SlackEmulator, matrix: MatrixStub
) -> Any:
    workspace = tmp_path / "ws"
    workspace.mkdir(exist_ok=True)
    ollama.models = ["qwen3:4b", FALLBACK]
    config = make_test_config(
        workspace,
        ollama.url,
        adapters=["slack", "matrix"],
        routing={"fallback_model": FALLBACK},
    )
    config.slack_api_url = slack.api_url
    config.matrix_homeserver = matrix.url
    config.matrix_user_id = MATRIX_USER
    config.secrets = Secrets(
        slack_bot_token=slack.bot_token,
        slack_app_token=slack.app_token,
        matrix_access_token=MATRIX_TOKEN,
    )
    return config


GPU = StaticGpuReader([GpuInfo(0, "NVIDIA H100", 80 * GIB, 4 * GIB, 76 * GIB)])


async def doctor(config: Any, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = await run_doctor(config, gpu_reader=GPU)
    return code, capsys.readouterr().out.splitlines()


def line(lines: list[str], name: str) -> str:
    found = [entry for entry in lines if entry.split("] ", 1)[-1].startswith(name)]
    assert found, f"no {name!r} line in {lines}"
    return found[0]


async def test_healthy_setup_passes(
    scripted_ollama: ScriptedOllama,
    slack: SlackEmulator,
    matrix: MatrixStub,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = healthy_config(tmp_path, scripted_ollama, slack, matrix)
    code, lines = await doctor(config, capsys)
    assert code == 0, lines
    assert line(lines, f"endpoint {scripted_ollama.url}").startswith("[OK  ]")
    assert "Ollama 0.12.10" in line(lines, "endpoint")
    assert line(lines, "local_model qwen3:4b").startswith("[OK  ]")
    assert "tools supported" in line(lines, f"fallback_model {FALLBACK}")
    assert "NVIDIA H100" in line(lines, "gpu") and line(lines, "gpu").startswith("[OK  ]")
    assert "valid: threadwright in Threadwright Test" in line(lines, "slack bot token")
    assert line(lines, "slack app token").startswith("[OK  ]")
    assert f"access token works for {MATRIX_USER}" in line(lines, "matrix")
    assert line(lines, "store").startswith("[OK  ]")
    assert not any(entry.startswith("[FAIL]") for entry in lines)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_ollama_down(
    scripted_ollama: ScriptedOllama,
    slack: SlackEmulator,
    matrix: MatrixStub,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = healthy_config(tmp_path, scripted_ollama, slack, matrix)
    down = f"http://127.0.0.1:{_closed_port()}"
    config.ollama_host = down
    code, lines = await doctor(config, capsys)
    assert code == 1
    failed = line(lines, f"endpoint {down}")
    assert failed.startswith("[FAIL]") and "ollama serve" in failed and "OLLAMA_HOST" in failed


async def test_missing_and_tool_less_models(
    scripted_ollama: ScriptedOllama,
    slack: SlackEmulator,
    matrix: MatrixStub,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = healthy_config(tmp_path, scripted_ollama, slack, matrix)
    scripted_ollama.models = [FALLBACK]
    scripted_ollama.capabilities[FALLBACK] = ["completion"]
    code, lines = await doctor(config, capsys)
    assert code == 1
    assert line(lines, "local_model qwen3:4b") == (
        "[FAIL] local_model qwen3:4b: not present: run `ollama pull qwen3:4b`"
    )
    tool_less = line(lines, f"fallback_model {FALLBACK}")
    assert tool_less.startswith("[FAIL]") and "does not support tools" in tool_less


async def test_bad_slack_token(
    scripted_ollama: ScriptedOllama,
    slack: SlackEmulator,
    matrix: MatrixStub,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = healthy_config(tmp_path, scripted_ollama, slack, matrix)
    config.secrets = Secrets(slack_bot_token="xoxb-revoked-000", matrix_access_token=MATRIX_TOKEN)
    code, lines = await doctor(config, capsys)
    assert code == 1
    bot = line(lines, "slack bot token")
    assert bot.startswith("[FAIL]") and "invalid_auth" in bot and "SLACK_BOT_TOKEN" in bot
    app = line(lines, "slack app token")
    assert app.startswith("[FAIL]") and "SLACK_APP_TOKEN is not set" in app


async def test_bad_matrix_credentials(
    scripted_ollama: ScriptedOllama,
    slack: SlackEmulator,
    matrix: MatrixStub,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = healthy_config(tmp_path, scripted_ollama, slack, matrix)
    config.secrets = Secrets(
        slack_bot_token=slack.bot_token,
        slack_app_token=slack.app_token,
        matrix_access_token="syt_logged_out_token",
    )
    code, lines = await doctor(config, capsys)
    assert code == 1
    failed = line(lines, "matrix")
    assert "M_UNKNOWN_TOKEN" in failed and "MATRIX_ACCESS_TOKEN" in failed

    config.secrets = Secrets(
        slack_bot_token=slack.bot_token,
        slack_app_token=slack.app_token,
        matrix_password="right-password",
    )
    code, lines = await doctor(config, capsys)
    assert code == 0, lines
    assert "password login works" in line(lines, "matrix")
    # The check logged its own session out again: no device left behind.
    assert matrix.logouts == ["Bearer syt_fresh_login_token"]

    config.secrets = Secrets(
        slack_bot_token=slack.bot_token,
        slack_app_token=slack.app_token,
        matrix_password="wrong-password",
    )
    code, lines = await doctor(config, capsys)
    assert code == 1
    assert "M_FORBIDDEN" in line(lines, "matrix") and "MATRIX_PASSWORD" in line(lines, "matrix")


async def test_no_gpu_is_a_warning_and_a_broken_store_fails(
    scripted_ollama: ScriptedOllama,
    slack: SlackEmulator,
    matrix: MatrixStub,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = healthy_config(tmp_path, scripted_ollama, slack, matrix)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the store's directory should be")
    config.store.path = str(blocker / "threadwright.db")
    code = await run_doctor(config, gpu_reader=StaticGpuReader(reason="no NVIDIA driver"))
    lines = capsys.readouterr().out.splitlines()
    assert code == 1
    gpu = line(lines, "gpu")
    assert gpu.startswith("[WARN]") and "no NVIDIA driver" in gpu and "nvidia-ml-py" in gpu
    store = line(lines, "store")
    assert store.startswith("[FAIL]") and "permissions" in store


async def test_doctor_command_exit_code(tmp_path: Path) -> None:
    """The real command line: a broken set-up exits non-zero and prints the fix."""
    import asyncio
    import os
    import sys

    (tmp_path / "agent_config.yaml").write_text(
        f'routing:\n  local_model: "qwen3:4b"\nstore:\n  path: "{tmp_path}/store.db"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OLLAMA", "THREADWRIGHT"))}
    env["OLLAMA_HOST"] = f"http://127.0.0.1:{_closed_port()}"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "doctor",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    text = out.decode()
    assert "[FAIL] endpoint" in text and "ollama serve" in text
    assert "[OK  ] store" in text and "some checks failed" in err.decode()
