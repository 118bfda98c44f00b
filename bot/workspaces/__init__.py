"""Workspaces: where a thread's session works, and what becomes of its work.

``worktrees`` keeps one git worktree and branch per thread (``WorktreeManager``);
``sessions`` ties them to sessions (commit at a turn's end, stop reports,
``/diff``, ``/undo``, push and pull request); ``git`` runs git bounded and
scrubbed; ``cli`` is ``threadwright workspaces list|prune``.
"""

from bot.workspaces.git import GitError, WorkspaceError
from bot.workspaces.sessions import WORKSPACE_COMMANDS, SessionWorkspaces
from bot.workspaces.worktrees import CommitInfo, Worktree, WorktreeManager, branch_name

__all__ = [
    "WORKSPACE_COMMANDS",
    "CommitInfo",
    "GitError",
    "SessionWorkspaces",
    "WorkspaceError",
    "Worktree",
    "WorktreeManager",
    "branch_name",
]
