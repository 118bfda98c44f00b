"""Configuration: ``agent_config.yaml`` validated by pydantic, overlaid by the environment.

Every key of the product's original design is here with its meaning; unknown
keys are errors (``extra="forbid"``) so a typo never silently does nothing.
Secrets never live in the file: they come from environment variables and are
collected in :class:`Secrets`, which the redactor and the tool environment
builder both read.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

DEFAULT_CONFIG_FILE = "agent_config.yaml"


class ConfigError(Exception):
    """The configuration cannot be used; the message names the file and the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelEndpoint(_Section):
    """Where one model is served. ``kind: ollama`` speaks /api/chat; ``openai`` speaks /v1."""

    kind: Literal["ollama", "openai"] = "ollama"
    host: str | None = None  # None: OLLAMA_HOST, then http://127.0.0.1:11434
    api_key_env: str | None = None  # name of the env var holding the key
    num_ctx: int | None = None
    price_per_mtok_in: float = 0.0
    price_per_mtok_out: float = 0.0
    cloud: bool | None = None  # None: guessed from the name (":cloud", "-cloud")


class RoutingConfig(_Section):
    local_model: str = "jeffgreen311/eve-qwen3.5-4b-S0LF0RG3"
    cloud_model: str = "qwen3-coder:480b-cloud"
    fallback_model: str = "jeffgreen311/eve-qwen3-8b-consciousness-liberated"
    complexity_threshold: float = Field(0.75, ge=0.0, le=1.0)
    max_loop_iterations: int = Field(40, ge=1)
    # Per-model endpoints; a model not listed uses the default Ollama endpoint.
    models: dict[str, ModelEndpoint] = Field(default_factory=dict)
    request_timeout: float = Field(300.0, gt=0)  # seconds without a next chunk
    connect_timeout: float = Field(5.0, gt=0)
    keep_alive: str | int | None = "30m"
    think: bool | None = None
    temperature: float | None = None
    # Rooms (glob on the room id, or on "platform:room") whose prompts never go to a cloud model.
    local_only_rooms: list[str] = Field(default_factory=list)
    # Escalate to cloud_model after this many malformed tool calls / failed tools in a row.
    escalate_after_malformed: int = Field(2, ge=1)
    escalate_after_tool_failures: int = Field(3, ge=1)
    # After a cloud failure other than a refused sign-in, try the cloud model again after this.
    cloud_retry_after_s: float = Field(300.0, ge=0)


class LimitsConfig(_Section):
    """What one run may consume, so a runaway model cannot hold the bot or the thread.

    A run is one task or reply, from the message to the answer; a reply after a
    stop starts a new run with fresh limits. Its step cap is
    ``routing.max_loop_iterations``. ``None`` is no limit.
    """

    # Output tokens of one model step: sent to the server (num_predict / max_tokens)
    # and enforced on the stream too, since not every server honours it.
    max_step_tokens: int | None = Field(4096, ge=1)
    # Wall-clock seconds of one model stream, from the request to its last token.
    max_step_seconds: float | None = Field(300.0, gt=0)
    # An answer whose tail repeats one unit (a line, a phrase) this many characters is a
    # runaway and is stopped; 0 turns the check off.
    max_repeated_chars: int = Field(4000, ge=0)
    # Prompt + output tokens of all the run's steps (what the footer counts).
    max_run_tokens: int | None = Field(2_000_000, ge=1)
    # Wall-clock seconds of a run, tools and approvals included.
    max_run_seconds: float | None = Field(7200.0, gt=0)


class StreamingConfig(_Section):
    transport: Literal["sse"] = "sse"
    buffer_size: int = Field(1024, ge=1)
    disconnect_timeout: float = Field(30, gt=0)


class BashConfig(_Section):
    timeout: float = Field(30, gt=0)
    allowed_commands: list[str] = Field(
        default_factory=lambda: ["ls", "cat", "grep", "python", "pytest", "git"]
    )
    max_output_bytes: int = Field(64_000, ge=1024)
    sandbox: Literal["auto", "bwrap", "none"] = "auto"
    network: bool = False
    env_passthrough: list[str] = Field(default_factory=list)
    # Limits on one sandboxed command (see bot/policy/sandbox_limits.py).
    max_processes: int = Field(512, ge=16)
    max_memory_mb: int = Field(16384, ge=64)  # address space per process
    max_file_size_mb: int = Field(4096, ge=1)
    tmp_size_mb: int = Field(1024, ge=1)


class FileOpsConfig(_Section):
    max_read_lines: int = Field(500, ge=1)
    write_validation: bool = True
    max_file_bytes: int = Field(2_000_000, ge=1)


class ReasoningConfig(_Section):
    scratchpad_enabled: bool = True
    max_trace_length: int = Field(2000, ge=1)


class ToolsConfig(_Section):
    bash: BashConfig = Field(default_factory=BashConfig)
    file_ops: FileOpsConfig = Field(default_factory=FileOpsConfig)
    reasoning: ReasoningConfig = Field(default_factory=ReasoningConfig)
    grep_max_results: int = Field(200, ge=1)
    disabled: list[str] = Field(default_factory=list)


class ContextConfig(_Section):
    window_strategy: Literal["sliding_priority", "full"] = "sliding_priority"
    retain_tool_results: int = Field(5, ge=0)
    compress_diffs: bool = True
    externalize_reasoning: bool = True
    num_ctx: int = Field(16384, ge=512)
    # Tokens kept free in the window for the model's answer.
    reserve_tokens: int = Field(1024, ge=0)
    # Summarise older turns with the local model when even the compressed history does not fit.
    auto_compact: bool = True


class BudgetConfig(_Section):
    """Cloud spending limits; None is no limit. When one is reached the session continues
    on local models only and says so in the thread."""

    session_cloud_usd: float | None = Field(None, ge=0)
    daily_cloud_usd: float | None = Field(None, ge=0)
    session_cloud_tokens: int | None = Field(None, ge=0)
    daily_cloud_tokens: int | None = Field(None, ge=0)


class GpuConfig(_Section):
    """GPU memory care: ``swap`` unloads other local models before one that would not fit."""

    policy: Literal["swap", "off"] = "swap"
    reserve_mb: int = Field(512, ge=0)  # VRAM left free for the display, CUDA context, …
    # Expected VRAM use (MB) of models never seen loaded; others are learnt from /api/ps.
    model_sizes_mb: dict[str, int] = Field(default_factory=dict)


class AccessConfig(_Section):
    allowed_users: list[str] = Field(default_factory=list)
    allowed_rooms: list[str] = Field(default_factory=list)
    approvers: list[str] = Field(default_factory=list)
    requester_may_approve: bool = False
    approval_timeout: float = Field(300.0, gt=0)
    # What a tool call outside policy means: ask an approver, refuse (allowlist), or
    # no shell and no writes at all (deny). Per room overrides by glob.
    permission_mode: Literal["ask", "allowlist", "deny"] = "ask"
    room_permission_modes: dict[str, Literal["ask", "allowlist", "deny"]] = Field(
        default_factory=dict
    )


class WorkspaceConfig(_Section):
    root: str = "."
    isolation: Literal["worktree", "none"] | None = None  # None: per adapter default
    # Per-thread worktrees (bot/workspaces/). None: the repository's current branch.
    base_branch: str | None = None
    # None: <store dir>/worktrees, or <repo parent>/.threadwright/worktrees when the
    # store lives inside the repository (worktrees never sit in the main tree).
    worktrees_dir: str | None = None
    auto_commit: bool = True
    author_name: str = "threadwright"
    author_email: str = "threadwright@localhost"
    push: str | None = None  # a remote name: push the thread's branch after each commit
    pr_command: str | None = None  # run (sh -c) in the worktree after a push; link posted
    push_env: list[str] = Field(default_factory=lambda: ["SSH_AUTH_SOCK"])
    keep_days: float | None = Field(14.0, gt=0)  # idle worktrees removed; branches kept


class StoreConfig(_Section):
    path: str = ".threadwright/threadwright.db"


class SlackConfig(_Section):
    mode: Literal["socket", "http"] = "socket"
    http_port: int = 3000
    edit_interval: float = Field(1.0, gt=0)


class MatrixConfig(_Section):
    encryption: bool = False
    store_path: str = ".threadwright/matrix"
    edit_interval: float = Field(1.0, gt=0)
    device_name: str = "threadwright"


class WebConfig(_Section):
    host: str = "127.0.0.1"
    port: int = 7777
    token: str | None = None
    heartbeat_interval: float = Field(15.0, gt=0)  # SSE comment when a stream is idle
    history_events: int = Field(20_000, ge=1)  # events kept per session for resume


class LoggingConfig(_Section):
    level: str = "INFO"
    format: Literal["text", "json"] = "text"


class ObservabilityConfig(_Section):
    """The health and metrics HTTP endpoint (``/healthz``, ``/metrics``, ``/status``)."""

    enabled: bool | None = None  # None: on for `threadwright run`, off for `chat`
    host: str = "127.0.0.1"
    port: int = Field(9464, ge=0, le=65535)  # 0 picks a free port
    loop_lag_interval: float = Field(0.5, gt=0)  # seconds between event-loop lag samples


class SessionsConfig(_Section):
    """What a restart does to sessions that were running."""

    resume_on_start: bool = True  # False: tell the thread and wait for a reply
    shutdown_grace: float = Field(20.0, ge=0)  # seconds to reach a loop boundary on stop


class Secrets(_Section):
    """Secret values from the environment. Never written to disk, logs or prompts."""

    ollama_api_key: str | None = None
    slack_bot_token: str | None = None
    slack_app_token: str | None = None
    slack_signing_secret: str | None = None
    matrix_password: str | None = None
    matrix_access_token: str | None = None
    web_token: str | None = None
    extra: dict[str, str] = Field(default_factory=dict)

    def values(self) -> list[str]:
        """Every secret value set, for redaction."""
        fixed = [
            self.ollama_api_key,
            self.slack_bot_token,
            self.slack_app_token,
            self.slack_signing_secret,
            self.matrix_password,
            self.matrix_access_token,
            self.web_token,
        ]
        return [v for v in [*fixed, *self.extra.values()] if v]


class Config(_Section):
    """The whole configuration. ``source`` names the file it came from (or None)."""

    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    streaming: StreamingConfig = Field(default_factory=StreamingConfig)
    tools: ToolsConfig = Field(default_factory=ToolsConfig)
    context: ContextConfig = Field(default_factory=ContextConfig)
    adapters: list[str] = Field(default_factory=list)
    access: AccessConfig = Field(default_factory=AccessConfig)
    workspace: WorkspaceConfig = Field(default_factory=WorkspaceConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    slack: SlackConfig = Field(default_factory=SlackConfig)
    matrix: MatrixConfig = Field(default_factory=MatrixConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    gpu: GpuConfig = Field(default_factory=GpuConfig)
    observability: ObservabilityConfig = Field(default_factory=ObservabilityConfig)
    sessions: SessionsConfig = Field(default_factory=SessionsConfig)
    agent_dir: str = ".agent"
    plugins: dict[str, dict[str, Any]] = Field(default_factory=dict)

    # Not part of the file: filled by load_config.
    ollama_host: str = Field(default="http://127.0.0.1:11434", exclude=True)
    slack_api_url: str = Field(default="https://slack.com/api/", exclude=True)
    matrix_homeserver: str | None = Field(default=None, exclude=True)
    matrix_user_id: str | None = Field(default=None, exclude=True)
    secrets: Secrets = Field(default_factory=Secrets, exclude=True)
    source: str | None = Field(default=None, exclude=True)

    @field_validator("adapters")
    @classmethod
    def _known_adapter_names(cls, value: list[str]) -> list[str]:
        return [v.strip().lower() for v in value]

    def workspace_path(self) -> Path:
        return Path(self.workspace.root).expanduser().resolve()

    def store_path(self) -> Path:
        return Path(self.store.path).expanduser()


def _format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key (check the spelling; see README 'Configuration')")
        else:
            lines.append(f"  {key}: {err['msg']}")
    return "\n".join(lines)


def merge_settings(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``, mappings merged key by key, anything else replaced."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = merge_settings(merged[key], value)
        else:
            merged[key] = value
    return merged


def _env_overlay(data: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Apply ``THREADWRIGHT__SECTION__KEY=value`` overrides (values parsed as YAML)."""
    import yaml

    for name, raw in env.items():
        if not name.startswith("THREADWRIGHT__"):
            continue
        path = [p.lower() for p in name[len("THREADWRIGHT__") :].split("__") if p]
        if not path:
            continue
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        try:
            node[path[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError:
            node[path[-1]] = raw
    return data


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Load and validate the configuration.

    ``path`` None means ``agent_config.yaml`` in the working directory if it
    exists, else the defaults. Environment variables override the file and
    carry every secret.
    """
    import yaml

    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    source = "(defaults)"
    explicit = path is not None or "THREADWRIGHT_CONFIG" in env
    file = Path(path if path is not None else env.get("THREADWRIGHT_CONFIG", DEFAULT_CONFIG_FILE))
    if file.exists():
        source = str(file)
        try:
            loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ConfigError(f"{file}:{where} is not valid YAML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"{file}: cannot be read: {exc.strerror}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{file}: the top level must be a mapping of sections")
        data = loaded
    elif explicit:
        raise ConfigError(f"{file}: no such configuration file")

    data = _env_overlay(data, env)
    if any(name.startswith("THREADWRIGHT__") for name in env):
        source += " (with THREADWRIGHT__* environment overrides)"
    if overrides:
        data = merge_settings(data, overrides)
    if isinstance(data.get("web"), dict) and data["web"].get("token"):
        raise ConfigError(
            f"{source}: web.token: do not write the token in the file; "
            "set THREADWRIGHT_WEB_TOKEN in the environment instead"
        )
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source)) from None

    config.source = None if source.startswith("(defaults)") else str(file)
    if env.get("OLLAMA_HOST"):
        host = env["OLLAMA_HOST"].strip()
        config.ollama_host = host if "://" in host else f"http://{host}"
    if env.get("SLACK_API_URL"):
        url = env["SLACK_API_URL"].strip()
        config.slack_api_url = url if url.endswith("/") else url + "/"
    config.matrix_homeserver = env.get("MATRIX_HOMESERVER") or None
    config.matrix_user_id = env.get("MATRIX_USER_ID") or None
    extra = {}
    for endpoint in config.routing.models.values():
        if endpoint.api_key_env and env.get(endpoint.api_key_env):
            extra[endpoint.api_key_env] = env[endpoint.api_key_env]
    config.secrets = Secrets(
        ollama_api_key=env.get("OLLAMA_API_KEY") or None,
        slack_bot_token=env.get("SLACK_BOT_TOKEN") or None,
        slack_app_token=env.get("SLACK_APP_TOKEN") or None,
        slack_signing_secret=env.get("SLACK_SIGNING_SECRET") or None,
        matrix_password=env.get("MATRIX_PASSWORD") or None,
        matrix_access_token=env.get("MATRIX_ACCESS_TOKEN") or None,
        web_token=env.get("THREADWRIGHT_WEB_TOKEN") or None,
        extra=extra,
    )
    return config
