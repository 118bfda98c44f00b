"""``threadwright workspaces list|prune``: the per-thread worktrees of the configured root.

The argument parser lives in :mod:`bot.cli` (so ``chat`` never imports this).
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

from bot.workspaces.git import WorkspaceError
from bot.workspaces.worktrees import WorktreeManager

if TYPE_CHECKING:
    import argparse

    from bot.config import Config


async def run(config: Config, args: argparse.Namespace) -> int:
    manager = WorktreeManager(config)
    top = await manager.repository()
    if top is None:
        print(
            f"threadwright: {config.workspace_path()} is not in a git repository", file=sys.stderr
        )
        return 2
    try:
        if args.workspaces_command == "prune":
            days = args.days if args.days is not None else config.workspace.keep_days
            if days is None:
                print("threadwright: workspace.keep_days is off; pass --days", file=sys.stderr)
                return 2
            removed, kept = await manager.prune(keep_days=days)
            for worktree in removed:
                print(f"removed {worktree.path}  (branch {worktree.branch} kept)")
            for worktree, why in kept:
                print(f"kept    {worktree.path}: {why}")
            if not removed and not kept:
                print(f"nothing idle for {days:g} days")
            return 0
        worktrees = await manager.list_all()
        now = time.time()
        for worktree in worktrees:
            idle = (now - worktree.last_used) / 86400
            where = worktree.path if worktree.present else "(worktree removed)"
            print(f"{worktree.branch:<50} idle {idle:5.1f}d  {where}  {worktree.thread}")
        if not worktrees:
            print(f"no thread worktrees for {top} (in {manager.worktrees_dir(top)})")
        return 0
    except WorkspaceError as exc:
        print(f"threadwright: {exc}", file=sys.stderr)
        return 1
