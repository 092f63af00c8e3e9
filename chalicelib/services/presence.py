"""Use case: presence — who is on a channel, in what state, and when they leave.

The members live in a PresenceStore (what ``GET …/presence`` and a subscriber's snapshot
read); every change is also appended to the channel's presence log (core/presence.py), which
subscribers, Durable Streams readers and late joiners read like any channel. A member leaves
when it says so, when its connection ends (``SessionService.end_connection``), or when it
stops heartbeating: the sweeper (run every few seconds locally, by a schedule on AWS) removes
members whose expiry passed and logs their leave.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from ..core import presence as rules
from ..core.capabilities import PRESENCE, Principal
from ..core.errors import NotFoundError, RateLimitedError, TooLargeError
from ..core.messages import NewMessage, encode_data
from ..core.names import validate_channel
from ..core.presence import Member
from ..observability import logger
from ..ports import NO_METRICS, Clock, Metrics, PresenceStore
from ..settings import Settings
from .appends import Appender, AppendRequest
from .channels import ChannelService

MAX_MINUTES_PER_SWEEP = 60


class PresenceService:
    def __init__(
        self,
        channels: ChannelService,
        appender: Appender,
        store: PresenceStore,
        settings: Settings,
        clock: Clock,
        metrics: Metrics = NO_METRICS,
    ) -> None:
        self.channels = channels
        self.appender = appender
        self.store = store
        self.settings = settings
        self.clock = clock
        self.metrics = metrics

    @property
    def heartbeat_s(self) -> int:
        """How often members are told to heartbeat: 15 s, or 40 % of a shorter TTL (two
        heartbeats may be lost before a member expires)."""
        return max(1, min(rules.HEARTBEAT_S, self.settings.presence_ttl_s * 2 // 5))

    # -- members saying so -----------------------------------------------------------------

    def enter(
        self,
        principal: Principal,
        channel: str,
        instance: str,
        data: Any,
        connection_id: str | None = None,
        deadline_ms: int | None = None,
    ) -> Member:
        """Enter presence, or update the member's data if it is on the channel already."""
        validate_channel(channel)
        now = self.clock.now_ms()
        principal.require(channel, PRESENCE, now / 1000)
        data = rules.validate_data(data)
        key = rules.member_key(principal.publisher, instance)
        current = {m.key: m for m in self.store.members(channel)}
        before = current.get(key)
        if before is None and self._live_count(current.values(), now) >= (
            self.settings.presence_max_members
        ):
            raise TooLargeError(
                f"Channel {channel!r} has {self.settings.presence_max_members} members in "
                "presence, the most it may have; leave with another member first.",
                {"max_members": self.settings.presence_max_members},
            )
        if before is not None and before.expires_at > now // 1000:
            self._check_rate(before, now)
        member = Member(
            channel=channel, key=key, client_id=principal.publisher, data=data,
            connection_id=connection_id,
            entered_ms=before.entered_ms if before is not None else now, updated_ms=now,
            expires_at=now // 1000 + self.settings.presence_ttl_s,
        )
        replaced = self.store.put_member(member)
        self._mark_due(member, replaced)
        operation = rules.UPDATE if replaced is not None else rules.INSERT
        if replaced is None or replaced.data != data:
            self._log(principal, channel, rules.change(operation, member), deadline_ms)
        self.metrics.count("PresenceChanges")
        return member

    def heartbeat(self, principal: Principal, channel: str, instance: str) -> Member:
        """Keep a member alive (no log entry): :class:`NotFoundError` if it is not one."""
        now = self.clock.now_ms()
        principal.require(channel, PRESENCE, now / 1000)
        key = rules.member_key(principal.publisher, instance)
        expires_at = now // 1000 + self.settings.presence_ttl_s
        before = self.store.touch_member(channel, key, expires_at, now)
        if before is None:
            raise NotFoundError(
                f"Not a member of {channel!r}'s presence (left, or gone after missed "
                "heartbeats): enter again.",
                {"channel": channel, "member": key},
            )
        member = replace(before, expires_at=max(before.expires_at, expires_at))
        self._mark_due(member, before)
        return member

    def leave(
        self,
        principal: Principal,
        channel: str,
        instance: str,
        deadline_ms: int | None = None,
    ) -> bool:
        now = self.clock.now_ms()
        principal.require(channel, PRESENCE, now / 1000)
        removed = self.store.remove_member(channel, rules.member_key(principal.publisher,
                                                                     instance))
        if removed is None:
            return False
        self._log(principal, channel, rules.change(rules.DELETE, removed), deadline_ms)
        return True

    def members(self, channel: str) -> list[Member]:
        """The channel's members now (those past their expiry are not members)."""
        now_s = self.clock.now_ms() // 1000
        return sorted(
            (m for m in self.store.members(validate_channel(channel)) if m.expires_at > now_s),
            key=lambda m: (m.entered_ms, m.key),
        )

    # -- members that vanished -------------------------------------------------------------

    def leave_connection(self, connection_id: str) -> int:
        """Every member of a connection that ended leaves (its leave logged)."""
        left = 0
        for channel in self.store.linked(connection_id):
            for member in self.store.members(channel):
                if member.connection_id != connection_id:
                    continue
                if self.store.remove_member(channel, member.key) is not None:
                    self._log(None, channel, rules.change(rules.DELETE, member))
                    left += 1
        return left

    def sweep(self) -> int:
        """Remove the members whose expiry passed (they stopped heartbeating and their
        connection vanished without a ``$disconnect``), logging their leave.

        Reads the minute lists from the first one not yet swept after it ended (so a late
        or failed sweep loses nothing) to this one, only their entries due by now; looks
        the members' current expiry up (a member that heartbeated since is still there,
        listed again in a later minute) and removes the expired ones, conditionally: two
        sweeps never log one leave twice. Costs reads only, except for the members it
        removes and a cursor write once a minute."""
        now_s = self.clock.now_ms() // 1000
        current = rules.due_bucket(now_s)
        start = self.store.swept_bucket()
        if start is None:  # the first sweep ever
            start = current - self.settings.presence_sweep_minutes
        # After a long outage, catch up an hour of minutes per sweep.
        current = min(current, start + MAX_MINUTES_PER_SWEEP)
        candidates = sorted({entry for bucket in range(start, current + 1)
                             for entry in self.store.due(bucket, now_s)})
        removed = 0
        for (channel, key), expires_at in sorted(self.store.expiries(candidates).items()):
            if expires_at > now_s:
                continue
            gone = self.store.remove_member(channel, key, expired_by=now_s)
            if gone is not None:
                self._log(None, channel, rules.change(rules.DELETE, gone))
                removed += 1
        if start < current:  # every earlier minute has ended and is swept
            self.store.set_swept_bucket(current)
        if removed:
            logger.info("presence sweep", extra={"removed": removed})
        self.metrics.count("PresenceExpired", removed)
        return removed

    def pending(self) -> bool:
        """Whether any member may expire this minute or the next (the sweeper keeps
        sweeping within its minute only then: an idle deployment pays one short run)."""
        now_s = self.clock.now_ms() // 1000
        current = rules.due_bucket(now_s)
        horizon = now_s + 120
        return any(self.store.due(bucket, horizon) for bucket in (current, current + 1))

    # -- internals -------------------------------------------------------------------------

    def _live_count(self, members: Any, now_ms: int) -> int:
        return sum(1 for m in members if m.expires_at > now_ms // 1000)

    def _check_rate(self, before: Member, now_ms: int) -> None:
        interval_ms = 1000 / self.settings.presence_max_updates_per_s
        if now_ms - before.updated_ms < interval_ms:
            retry_after = max(1, math.ceil(interval_ms - (now_ms - before.updated_ms)))
            raise RateLimitedError(
                f"Presence of {before.key!r} changes at most "
                f"{self.settings.presence_max_updates_per_s:g} times a second; send the "
                f"latest state in {retry_after} ms.",
                {"retry_after_ms": retry_after},
            )

    def _mark_due(self, member: Member, before: Member | None) -> None:
        """The sweeper's list for the minute the member would expire in (written only when
        that minute changes: one heartbeat in four)."""
        bucket = rules.due_bucket(member.expires_at)
        if before is None or rules.due_bucket(before.expires_at) != bucket:
            self.store.mark_due(bucket, member.channel, member.key, member.expires_at)

    def _log(
        self,
        principal: Principal | None,
        channel: str,
        event: dict[str, Any],
        deadline_ms: int | None = None,
    ) -> None:
        body = encode_data(event, self.settings.max_message_bytes)
        self.appender.append(
            AppendRequest(
                rules.presence_log(channel), [NewMessage(body)], implicit_create=True,
                publisher=principal.publisher if principal is not None else None,
                system=True,
            ),
            deadline_ms,
        )
