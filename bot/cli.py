"""The ``threadwright`` command line.

``run`` starts the configured chat adapters; ``chat`` runs the agent in a
terminal (a REPL, or one headless task); ``doctor`` checks a set-up;
``sessions`` and ``commands`` inspect state. Imports happen inside each
command so ``chat`` starts fast and never loads the Slack or Matrix SDKs.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.config import Config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="threadwright",
        description="A self-hosted, local-first coding agent that lives in team chat.",
    )
    parser.add_argument("--config", "-c", help="configuration file (default: ./agent_config.yaml)")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR (default: config)")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")

    chat = sub.add_parser("chat", help="talk to the agent in this terminal")
    chat.add_argument("task", nargs="?", help="run this one task headless and exit")
    chat.add_argument("--resume", metavar="ID", help="continue a stored session")
    chat.add_argument("--json", action="store_true", help="print events as JSON lines")
    chat.add_argument(
        "--yes", action="store_true", help="allow tool calls that would need an approval"
    )
    chat.add_argument("--verbose", "-v", action="store_true", help="show the model's thinking")
    chat.add_argument("--model", help="use this model for every step")
    chat.add_argument("--workspace", "-w", help="directory the tools act in (default: cwd)")

    sub.add_parser("run", help="start every chat adapter enabled in the config")
    sub.add_parser("doctor", help="check the configuration, models and credentials")
    sub.add_parser("status", help="sessions running now (from the running bot, else the store)")

    sessions = sub.add_parser("sessions", help="inspect stored sessions")
    sessions_sub = sessions.add_subparsers(dest="sessions_command")
    listing = sessions_sub.add_parser("list", help="recent sessions")
    listing.add_argument("--status", help="only sessions with this status")
    listing.add_argument("--limit", type=int, default=20)
    show = sessions_sub.add_parser("show", help="one session's transcript")
    show.add_argument("id", help="session id (a unique prefix is enough)")

    audit = sub.add_parser("audit", help="the tool calls the bot made or was refused")
    audit.add_argument("--session", help="only this session id")
    audit.add_argument("--tool", help="only this tool, e.g. bash")
    audit.add_argument("--verdict", help="verdict prefix: allowed, approved, denied, not run…")
    audit.add_argument("--since", help="only newer entries: 30m, 12h, 7d")
    audit.add_argument("--limit", type=int, default=50)
    audit.add_argument("--json", action="store_true", help="one JSON object per line")

    commands = sub.add_parser("commands", help="the Markdown commands in .agent/")
    commands_sub = commands.add_subparsers(dest="commands_command")
    commands_sub.add_parser("list", help="list commands")
    commands_sub.add_parser("check", help="report broken directive files")

    manifest = sub.add_parser("slack-manifest", help="print the Slack app manifest to paste")
    manifest.add_argument("--name", default="threadwright", help="the app's display name")
    manifest.add_argument(
        "--request-url", help="HTTP mode: the public URL of /slack/events (default: Socket Mode)"
    )
    manifest.add_argument("--json", action="store_true", help="JSON instead of YAML")

    workspaces = sub.add_parser("workspaces", help="per-thread git worktrees")
    workspaces_sub = workspaces.add_subparsers(dest="workspaces_command")
    workspaces_sub.add_parser("list", help="every thread's branch and worktree")
    prune = workspaces_sub.add_parser("prune", help="remove idle worktrees (keep branches)")
    prune.add_argument("--days", type=float, help="idle this long (default: workspace.keep_days)")
    return parser


def _load(args: argparse.Namespace) -> Config:
    from bot.config import ConfigError, load_config

    try:
        return load_config(args.config)
    except ConfigError as exc:
        print(f"threadwright: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _setup_logging(config: Config, args: argparse.Namespace, default: str | None = None) -> None:
    from bot.logs import setup_logging
    from bot.policy.redaction_env import held_secrets

    level = args.log_level or default or config.logging.level
    setup_logging(level, config.logging.format, held_secrets(config.secrets.values()))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.version:
        from bot import __version__

        print(f"threadwright {__version__}")
        return 0
    if args.command is None:
        args.command = "chat"
        args.task = None
        args.resume = args.model = args.workspace = None
        args.json = args.yes = args.verbose = False
    from bot.tools.process import install_fast_child_watcher

    install_fast_child_watcher()
    handler = {
        "chat": _cmd_chat,
        "run": _cmd_run,
        "doctor": _cmd_doctor,
        "status": _cmd_status,
        "sessions": _cmd_sessions,
        "commands": _cmd_commands,
        "audit": _cmd_audit,
        "slack-manifest": _cmd_slack_manifest,
        "workspaces": _cmd_workspaces,
    }[args.command]
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130


def _cmd_chat(args: argparse.Namespace) -> int:
    config = _load(args)
    if args.workspace:
        config.workspace.root = args.workspace
    if args.model:
        config.routing.local_model = args.model
    _setup_logging(config, args, default="WARNING")
    return asyncio.run(_chat(config, args))


async def _chat(config: Config, args: argparse.Namespace) -> int:
    from bot.host import Host
    from plugins.console.adapter import ConsoleAdapter

    options = {"json": args.json, "yes": args.yes, "verbose": args.verbose}
    async with Host(config, options=options) as host:
        adapter = host.create_adapter("console")
        assert isinstance(adapter, ConsoleAdapter)
        await adapter.start(host.sessions)
        if args.resume:
            session = await _find_session(host, args.resume)
            if session is None:
                return 2
            adapter.resume(session)
            if not args.task and session.record.status in ("running", "interrupted"):
                from bot.restarts import continue_session

                await continue_session(host.sessions, adapter, session.id, resume=True)
        if args.task:
            return await adapter.run_task(args.task)
        return await adapter.repl()


async def _find_session(host: Any, prefix: str) -> Any:
    matches = await host.runtime.store.find_session_by_prefix(prefix)
    if not matches:
        print(
            f"threadwright: no session {prefix!r} (see `threadwright sessions list`)",
            file=sys.stderr,
        )
        return None
    if len(matches) > 1:
        ids = ", ".join(m.id for m in matches)
        print(f"threadwright: {prefix!r} is ambiguous: {ids}", file=sys.stderr)
        return None
    return await host.sessions.load_session(matches[0].id)


def _cmd_run(args: argparse.Namespace) -> int:
    config = _load(args)
    _setup_logging(config, args)
    return asyncio.run(_run(config))


async def _run(config: Config) -> int:
    from bot.host import Host

    async with Host(config, options={"observability": True}) as host:
        return await host.run(config.adapters)


def _cmd_doctor(args: argparse.Namespace) -> int:
    from bot.doctor import run_doctor

    config = _load(args)
    _setup_logging(config, args, default="ERROR")
    return asyncio.run(run_doctor(config))


def _cmd_status(args: argparse.Namespace) -> int:
    from bot.observability.status import run_status

    config = _load(args)
    _setup_logging(config, args, default="WARNING")
    return asyncio.run(run_status(config))


def _cmd_sessions(args: argparse.Namespace) -> int:
    config = _load(args)
    _setup_logging(config, args, default="WARNING")
    return asyncio.run(_sessions(config, args))


async def _sessions(config: Config, args: argparse.Namespace) -> int:
    import json
    import time

    from bot.store.base import open_store

    store = await open_store(config.store_path())
    try:
        if args.sessions_command == "show":
            matches = await store.find_session_by_prefix(args.id)
            if len(matches) != 1:
                print(f"threadwright: {len(matches)} sessions match {args.id!r}", file=sys.stderr)
                return 2
            record = matches[0]
            print(f"session {record.id}  {record.status}  thread {record.thread_key}")
            print(f"requester {record.requester}  task: {record.task[:200]}")
            print(f"stats {json.dumps(record.stats)}")
            for message in await store.load_messages(record.id):
                role = message.get("role", "?")
                content = str(message.get("content", ""))
                calls = message.get("tool_calls") or []
                line = content if len(content) < 400 else content[:399] + "…"
                print(f"[{role}] {line}")
                for call in calls:
                    fn = call.get("function", {})
                    print(f"    → {fn.get('name')}({json.dumps(fn.get('arguments'))[:200]})")
            from bot.routing import format_decision

            decisions = await store.list_route_decisions(record.id)
            if decisions:
                print(f"routing ({len(decisions)} model calls):")
            for decision in decisions:
                print(f"  {format_decision(decision)}")
            return 0
        records = await store.list_sessions(
            status=getattr(args, "status", None), limit=getattr(args, "limit", 20)
        )
        for r in records:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.updated_at))
            print(f"{r.id}  {when}  {r.status:<11} {r.thread_key:<40} {r.task[:60]!r}")
        if not records:
            print("no sessions yet")
        return 0
    finally:
        await store.close()


def _cmd_workspaces(args: argparse.Namespace) -> int:
    from bot.workspaces.cli import run

    config = _load(args)
    _setup_logging(config, args, default="WARNING")
    return asyncio.run(run(config, args))


def _cmd_slack_manifest(args: argparse.Namespace) -> int:
    from plugins.slack.manifest import render_manifest

    config = _load(args)
    print(render_manifest(config, name=args.name, request_url=args.request_url, as_json=args.json))
    return 0


def _cmd_audit(args: argparse.Namespace) -> int:
    config = _load(args)
    _setup_logging(config, args, default="WARNING")
    try:
        since = _parse_age(args.since) if args.since else None
    except ValueError:
        print(
            f"threadwright: --since {args.since!r}: use a number with s, m, h or d", file=sys.stderr
        )
        return 2
    return asyncio.run(_audit(config, args, since))


def _parse_age(text: str) -> float:
    import time

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    value, unit = text[:-1], text[-1:]
    if unit not in units:
        raise ValueError(text)
    return time.time() - float(value) * units[unit]


async def _audit(config: Config, args: argparse.Namespace, since: float | None) -> int:
    import dataclasses
    import json
    import time

    from bot.store.base import open_store

    store = await open_store(config.store_path())
    try:
        entries = await store.list_audit(
            session_id=args.session,
            tool=args.tool,
            verdict=args.verdict,
            since=since,
            limit=args.limit,
        )
    finally:
        await store.close()
    for e in entries:
        if args.json:
            print(json.dumps(dataclasses.asdict(e), ensure_ascii=False))
            continue
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.ts))
        outcome = "ok" if e.ok else ("exit " + str(e.exit_code) if e.exit_code else "failed")
        print(
            f"{when}  {e.session_id}  {e.requester:<12} {e.verdict:<22} {outcome:<8} "
            f"{e.duration_ms:>7.0f}ms  {e.ran}"
        )
    if not entries and not args.json:
        print("no audit entries match")
    return 0


def _cmd_commands(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bot.directives import DirectiveLoader, format_problems

    config = _load(args)
    loader = DirectiveLoader(Path(config.workspace.root).resolve(), config.agent_dir)
    directives = loader.load()
    if args.commands_command == "check":
        if directives.problems:
            print(format_problems(directives.problems))
            return 1
        print(
            f"ok: {len(directives.commands)} commands, {len(directives.skills)} skills, "
            f"{len(directives.agents)} agents"
        )
        return 0
    print(directives.help_text())
    return 0
