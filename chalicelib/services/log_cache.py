"""What one process knows of the logs it appends to, and one gate per channel.

A publisher that writes a channel again pays no read: its metadata and tail are kept for
``append_cache_s``. A stale entry costs nothing but a failed put (the log refuses a taken
seq; a closed or deleted log ends with a marker). Appends to one channel from one process take
turns through the channel's gate, as one Lambda container's do, so a process never races
itself. Both maps are bounded (least recently used first out).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from ..core.channels import ChannelMeta
from ..core.logs import Tail

CACHED_CHANNELS = 1024


@dataclass(frozen=True)
class KnownLog:
    """A channel's log as this process knows it: its stored metadata and where it ends."""

    meta: ChannelMeta  # as stored, except ``head``: the last message's seq
    tail: Tail
    fetched_ms: int


class LogCache:
    def __init__(self, size: int = CACHED_CHANNELS) -> None:
        self.size = size
        self._logs: OrderedDict[str, KnownLog] = OrderedDict()
        self._gates: OrderedDict[str, threading.Lock] = OrderedDict()
        self._lock = threading.Lock()

    def recent(self, name: str, now_ms: int, max_age_ms: float) -> KnownLog | None:
        """The known log if it is younger than ``max_age_ms`` and not expired."""
        with self._lock:
            known = self._logs.get(name)
        if known is None or now_ms - known.fetched_ms >= max_age_ms:
            return None
        return None if known.meta.is_expired(now_ms // 1000) else known

    def get(self, name: str) -> KnownLog | None:
        with self._lock:
            return self._logs.get(name)

    def remember(self, known: KnownLog) -> KnownLog:
        with self._lock:
            self._logs[known.meta.name] = known
            self._logs.move_to_end(known.meta.name)
            while len(self._logs) > self.size:
                self._logs.popitem(last=False)
        return known

    def forget(self, name: str) -> None:
        with self._lock:
            self._logs.pop(name, None)

    def gate(self, name: str) -> threading.Lock:
        """The lock appends to ``name`` from this process take turns on."""
        with self._lock:
            gate = self._gates.get(name)
            if gate is None:
                gate = self._gates[name] = threading.Lock()
                while len(self._gates) > self.size:
                    oldest, lock = next(iter(self._gates.items()))
                    if lock.locked():
                        break
                    del self._gates[oldest]
            return gate
