"""Configuration: defaults, the original design's keys, errors that name the key and file."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import ConfigError, load_config

DESIGN_CONFIG = """
routing:
  local_model: "jeffgreen311/eve-qwen3.5-4b-S0LF0RG3"
  cloud_model: "qwen3-coder:480b-cloud"
  fallback_model: "jeffgreen311/eve-qwen3-8b-consciousness-liberated"
  complexity_threshold: 0.75
  max_loop_iterations: 40
streaming:
  transport: "sse"
  buffer_size: 1024
  disconnect_timeout: 30
tools:
  bash: {timeout: 30, allowed_commands: ["ls", "cat", "grep", "python", "pytest", "git"]}
  file_ops: {max_read_lines: 500, write_validation: true}
  reasoning: {scratchpad_enabled: true, max_trace_length: 2000}
context:
  window_strategy: "sliding_priority"
  retain_tool_results: 5
  compress_diffs: true
  externalize_reasoning: true
adapters: [slack, matrix]
access:
  allowed_users: ["U012ABCDEF", "@alice:example.org"]
  allowed_rooms: []
  approvers: ["U012ABCDEF"]
workspace:
  root: "."
  isolation: worktree
"""


def test_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(env={})
    assert config.source is None
    assert config.routing.max_loop_iterations == 40
    assert config.tools.bash.allowed_commands == ["ls", "cat", "grep", "python", "pytest", "git"]
    assert config.ollama_host == "http://127.0.0.1:11434"
    assert config.adapters == []


def test_every_design_key_is_read(tmp_path: Path) -> None:
    path = tmp_path / "agent_config.yaml"
    path.write_text(DESIGN_CONFIG)
    config = load_config(path, env={})
    assert config.source == str(path)
    assert config.routing.cloud_model == "qwen3-coder:480b-cloud"
    assert config.routing.complexity_threshold == 0.75
    assert config.streaming.buffer_size == 1024
    assert config.streaming.disconnect_timeout == 30
    assert config.tools.file_ops.max_read_lines == 500
    assert config.tools.reasoning.max_trace_length == 2000
    assert config.context.retain_tool_results == 5
    assert config.context.externalize_reasoning is True
    assert config.adapters == ["slack", "matrix"]
    assert config.access.approvers == ["U012ABCDEF"]
    assert config.workspace.isolation == "worktree"


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    path = tmp_path / "agent_config.yaml"
    path.write_text("routing:\n  local_modle: x\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    message = str(err.value)
    assert str(path) in message
    assert "routing.local_modle" in message
    assert "unknown key" in message


def test_invalid_value_names_key(tmp_path: Path) -> None:
    path = tmp_path / "agent_config.yaml"
    path.write_text("routing:\n  complexity_threshold: 3\ntools:\n  bash:\n    timeout: soon\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    message = str(err.value)
    assert "routing.complexity_threshold" in message
    assert "tools.bash.timeout" in message


def test_malformed_yaml_names_line(tmp_path: Path) -> None:
    path = tmp_path / "agent_config.yaml"
    path.write_text("routing:\n  local_model: [unclosed\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert "line" in str(err.value) and str(path) in str(err.value)


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config(tmp_path / "nope.yaml", env={})


def test_environment_overrides_and_secrets(tmp_path: Path) -> None:
    path = tmp_path / "agent_config.yaml"
    path.write_text("routing:\n  max_loop_iterations: 10\n")
    env = {
        "OLLAMA_HOST": "10.0.0.5:11434",
        "SLACK_BOT_TOKEN": "xoxb-123-secret",
        "SLACK_API_URL": "http://127.0.0.1:9999/api",
        "THREADWRIGHT__ROUTING__MAX_LOOP_ITERATIONS": "12",
        "THREADWRIGHT__ACCESS__ALLOWED_USERS": "[U1, U2]",
    }
    config = load_config(path, env=env)
    assert config.routing.max_loop_iterations == 12
    assert config.access.allowed_users == ["U1", "U2"]
    assert config.ollama_host == "http://10.0.0.5:11434"
    assert config.slack_api_url == "http://127.0.0.1:9999/api/"
    assert "xoxb-123-secret" in config.secrets.values()
    # Secrets never serialise with the config.
    assert "xoxb-123-secret" not in config.model_dump_json()


def test_env_override_with_bad_value_names_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        load_config(None, env={"THREADWRIGHT__ROUTING__MAX_LOOP_ITERATIONS": "many"})
    assert "routing.max_loop_iterations" in str(err.value)
    assert "THREADWRIGHT__" in str(err.value)


def test_web_token_in_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "agent_config.yaml"
    path.write_text("web:\n  token: hunter2hunter2\n")
    with pytest.raises(ConfigError, match="THREADWRIGHT_WEB_TOKEN"):
        load_config(path, env={})
