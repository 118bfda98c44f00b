"""Who may use the bot: allowed users, allowed rooms, approvers (glob patterns).

Beyond using the bot, a running or idle session belongs to its requester:
stopping it, changing its workspace (``/undo``) and changing its settings —
the model (``/model``, ``--cloud`` and the like in a message, a command that
declares a cloud model), which decides whether its code leaves the machine —
are for the requester and the approvers only (:meth:`AccessPolicy.may_change_session`).
"""

from __future__ import annotations

import fnmatch

from bot.config import AccessConfig

# The console user runs the bot on their own machine: they are its owner. So is
# the browser user: the web view answers only on loopback or to the token holder.
OWNER_PLATFORMS = frozenset({"console", "web"})


def _matches(value: str, patterns: list[str]) -> bool:
    return any(value == p or fnmatch.fnmatchcase(value, p) for p in patterns)


class AccessPolicy:
    def __init__(self, config: AccessConfig) -> None:
        self.config = config

    def user_allowed(self, platform: str, user: str) -> bool:
        if platform in OWNER_PLATFORMS:
            return True
        return _matches(user, self.config.allowed_users) or self.is_approver(platform, user)

    def room_allowed(self, platform: str, room: str) -> bool:
        if platform in OWNER_PLATFORMS or not self.config.allowed_rooms:
            return True
        # Slack rooms are "team/channel"; let people write just the channel id.
        candidates = {room, room.rsplit("/", 1)[-1]}
        return any(_matches(c, self.config.allowed_rooms) for c in candidates)

    def is_approver(self, platform: str, user: str) -> bool:
        if platform in OWNER_PLATFORMS:
            return True
        return _matches(user, self.config.approvers)

    def may_steer(self, platform: str, user: str, requester: str, mentions_bot: bool) -> bool:
        """The requester and approvers steer; other allowed people only by mentioning the bot."""
        if not self.user_allowed(platform, user):
            return False
        return user == requester or self.is_approver(platform, user) or mentions_bot

    def may_stop(self, platform: str, user: str, requester: str) -> bool:
        return user == requester or self.is_approver(platform, user)

    def may_change_session(self, platform: str, user: str, requester: str) -> bool:
        """Session settings (the model, so where the code goes) are the requester's."""
        return user == requester or self.is_approver(platform, user)

    def who_may_change(self, requester: str) -> str:
        """Who :meth:`may_change_session`, in words, for a refusal."""
        approvers = ", ".join(self.config.approvers)
        who = f"{requester} (who started this session)"
        return f"{who} or an approver ({approvers})" if approvers else who

    def may_approve(self, platform: str, user: str, requester: str) -> bool:
        if self.is_approver(platform, user):
            return True
        return (
            self.config.requester_may_approve
            and user == requester
            and (self.user_allowed(platform, user))
        )
