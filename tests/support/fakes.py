"""Fakes for the ports that the stores do not cover: a clock the test drives."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class FakeClock:
    """Time that moves only when told to (or when something sleeps)."""

    now: int = 1_764_430_000_000  # epoch ms
    slept: list[float] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def now_ms(self) -> int:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self.now += int(seconds * 1000)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += int(seconds * 1000)
