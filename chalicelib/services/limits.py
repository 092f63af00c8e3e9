"""Use case: bound what one principal or one connection runs at once.

A long-poll or SSE response holds a Lambda (and polls DynamoDB) for up to its timeout, and a
replay of a long backlog holds one for up to its budget; without a bound, one token holder
could open enough of them to take the REST function's whole concurrency, or the account's.
Each such request takes a lease (ports.LeaseStore: shared by every container, released at the
end, and running out by itself shortly after the invocation's deadline if a Lambda dies), and
is refused with ``rate_limited`` when its principal (or connection) holds as many as allowed:

- long-poll and SSE reads: per principal (an API key, or a token's key and client id; without
  authentication, the source IP), ``SWITCHBOARD_MAX_LIVE_READS_PER_PRINCIPAL``;
- replays longer than one page: per connection (``SWITCHBOARD_MAX_REPLAYS_PER_CONNECTION``)
  and per principal (``SWITCHBOARD_MAX_REPLAYS_PER_PRINCIPAL``).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from ..core.capabilities import Principal
from ..core.errors import RateLimitedError
from ..ports import Clock, LeaseStore
from ..settings import Settings

# A lease lasts this long past the invocation's deadline: a Lambda that dies without releasing
# it frees its slot by then.
LEASE_MARGIN_S = 5


@dataclass(frozen=True)
class Limit:
    """One bound: at most ``most`` at once in ``scope``."""

    scope: str
    most: int
    what: str  # for the error: "long-poll and SSE reads of client 'alice'"
    setting: str  # the variable that sets it


def principal_scope(principal: Principal, fallback: str | None) -> str | None:
    """Who a limit counts against: the API key, or the key and client id of a token; without
    authentication, ``fallback`` (the caller's source IP over HTTP, nothing over WebSocket)."""
    if principal.kind == "key" and principal.key_id is not None:
        return f"key:{principal.key_id}"
    if principal.kind == "token" and principal.key_id is not None:
        return f"token:{principal.key_id}:{principal.client_id}"
    return fallback


def _who(principal: Principal) -> str:
    if principal.kind == "key":
        return f"API key {principal.key_id!r}"
    if principal.kind == "token":
        return f"client {principal.client_id!r}"
    return "this address"


class Limiter:
    def __init__(
        self, leases: LeaseStore, settings: Settings, clock: Clock,
        rng: random.Random | None = None,
    ) -> None:
        self.leases = leases
        self.settings = settings
        self.clock = clock
        self.rng = rng or random.Random()

    # -- what is limited -------------------------------------------------------------------

    def live_read(self, principal: Principal, source_ip: str | None) -> list[Limit]:
        """A long-poll or an SSE response of ``principal``."""
        scope = principal_scope(principal, f"ip:{source_ip}" if source_ip else None)
        if scope is None:
            return []
        return [Limit(
            f"live:{scope}", self.settings.max_live_reads_per_principal,
            f"long-poll and SSE reads of {_who(principal)}",
            "SWITCHBOARD_MAX_LIVE_READS_PER_PRINCIPAL",
        )]

    def replay(self, principal: Principal, connection_id: str, backlog: int) -> list[Limit]:
        """A subscribe that replays ``backlog`` messages: limited once it needs more than one
        page (a shorter replay ends within one read)."""
        if backlog <= self.settings.replay_page:
            return []
        limits = [Limit(
            f"replay:conn:{connection_id}", self.settings.max_replays_per_connection,
            "replays on this connection", "SWITCHBOARD_MAX_REPLAYS_PER_CONNECTION",
        )]
        scope = principal_scope(principal, None)
        if scope is not None:
            limits.append(Limit(
                f"replay:{scope}", self.settings.max_replays_per_principal,
                f"replays of {_who(principal)}", "SWITCHBOARD_MAX_REPLAYS_PER_PRINCIPAL",
            ))
        return limits

    # -- holding leases --------------------------------------------------------------------

    @contextmanager
    def holding(self, limits: Sequence[Limit], deadline_ms: int) -> Iterator[None]:
        """Hold one lease of each limit (until ``deadline_ms`` and a margin) while the body
        runs; :class:`RateLimitedError` if one of them is full."""
        if not limits:
            yield
            return
        lease_id = f"{self.rng.getrandbits(64):016x}"
        now_s = self.clock.now_ms() // 1000
        until_s = -(-deadline_ms // 1000) + LEASE_MARGIN_S
        held: list[Limit] = []
        try:
            for limit in limits:
                if not self.leases.acquire(limit.scope, lease_id, until_s, limit.most, now_s):
                    raise self._full(limit)
                held.append(limit)
            yield
        finally:
            for limit in held:
                self.leases.release(limit.scope, lease_id)

    def _full(self, limit: Limit) -> RateLimitedError:
        retry_after = int(self.rng.uniform(500, 2000))
        return RateLimitedError(
            f"Too many {limit.what} at once (at most {limit.most}, {limit.setting}): wait "
            f"for one to end, then retry in about {retry_after} ms.",
            {"limit": limit.most, "retry_after_ms": retry_after},
        )
