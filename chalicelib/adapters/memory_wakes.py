"""In-memory twins of the wake ports: the store, the delayed queue and a recording poster.

Same contract as the DynamoDB store (tests/contract runs both); one lock makes every call
atomic, as DynamoDB's conditional writes and transactions do.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from ..core.wakes import EXPLICIT, GLOB, IndexEntry, Link, WakeSubscription
from ..ports import WebhookResponse


class MemoryWakeStore:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.subs: dict[str, WakeSubscription] = {}
        # (sub id, incarnation) -> channel -> link
        self._links: dict[tuple[str, str], dict[str, Link]] = {}
        self._namespaces: dict[str, dict[str, IndexEntry]] = {}
        self._explicit: dict[str, dict[str, IndexEntry]] = {}

    def create(self, sub: WakeSubscription) -> bool:
        with self._lock:
            if sub.id in self.subs:
                return False
            self.subs[sub.id] = replace(sub, version=1)
            if sub.config.pattern is not None:
                self._namespaces.setdefault(sub.config.pattern.namespace, {})[sub.id] = (
                    IndexEntry(sub.id, sub.created_ms, sub.config.type, sub.config.pattern,
                               sub.config.wake_stream))
            return True

    def get(self, sub_id: str) -> WakeSubscription | None:
        with self._lock:
            return self.subs.get(sub_id)

    def list_ids(self, after: str | None, limit: int) -> list[str]:
        with self._lock:
            return [i for i in sorted(self.subs) if after is None or i > after][:limit]

    def save(
        self, sub: WakeSubscription, expected_version: int,
        unchanged: Mapping[str, str | None] | None = None,
    ) -> bool:
        with self._lock:
            current = self.subs.get(sub.id)
            if current is None or current.version != expected_version:
                return False
            links = self._links.get((sub.id, sub.incarnation), {})
            for channel, tail in (unchanged or {}).items():
                link = links.get(channel)
                if (link.tail if link is not None else None) != tail:
                    return False
            self.subs[sub.id] = replace(sub, version=expected_version + 1)
            return True

    def delete(self, sub: WakeSubscription) -> None:
        with self._lock:
            self.subs.pop(sub.id, None)
            if sub.config.pattern is not None:
                self._namespaces.get(sub.config.pattern.namespace, {}).pop(sub.id, None)
            for channel in self._links.pop((sub.id, sub.incarnation), {}):
                self._explicit.get(channel, {}).pop(sub.id, None)

    def matching(self, channel: str) -> list[IndexEntry]:
        with self._lock:
            namespace = channel.split(":", 1)[0]
            return [*self._namespaces.get(namespace, {}).values(),
                    *self._explicit.get(channel, {}).values()]

    def link_explicit(self, sub: WakeSubscription, channel: str, at: str) -> Link:
        with self._lock:
            links = self._links.setdefault((sub.id, sub.incarnation), {})
            link = links.get(channel) or Link(channel, frozenset(), at, at)
            link = replace(link, link_types=link.link_types | {EXPLICIT})
            links[channel] = link
            self._explicit.setdefault(channel, {})[sub.id] = IndexEntry(
                sub.id, sub.created_ms, sub.config.type, None, sub.config.wake_stream)
            return link

    def unlink_explicit(self, sub: WakeSubscription, channel: str) -> None:
        with self._lock:
            self._explicit.get(channel, {}).pop(sub.id, None)
            links = self._links.get((sub.id, sub.incarnation), {})
            link = links.get(channel)
            if link is None:
                return
            types = link.link_types - {EXPLICIT}
            if types:
                links[channel] = replace(link, link_types=types)
            else:
                del links[channel]

    def advance(
        self, sub_id: str, incarnation: str, channel: str, tail: str,
        new_acked: str | None = None,
    ) -> Link | None:
        with self._lock:
            links = self._links.setdefault((sub_id, incarnation), {})
            link = links.get(channel)
            if link is None:
                if new_acked is None:
                    return None
                link = Link(channel, frozenset({GLOB}), new_acked, tail)
            elif tail > link.tail:
                link = replace(link, tail=tail)
            links[channel] = link
            return link

    def ack(self, sub_id: str, incarnation: str, channel: str, offset: str) -> Link | None:
        with self._lock:
            links = self._links.get((sub_id, incarnation), {})
            link = links.get(channel)
            if link is None:
                return None
            if link.acked < offset <= link.tail:
                link = links[channel] = replace(link, acked=offset)
            return link

    def links(
        self, sub_id: str, incarnation: str, channels: Sequence[str] | None = None,
    ) -> dict[str, Link]:
        with self._lock:
            links = self._links.get((sub_id, incarnation), {})
            if channels is None:
                return dict(sorted(links.items()))
            return {c: links[c] for c in channels if c in links}


@dataclass(order=True)
class _Queued:
    due_ms: int
    order: int
    job: str = field(compare=False)


class MemoryWakeQueue:
    """Jobs held until their delay passes on the given clock; tests run them explicitly."""

    def __init__(self, now_ms: Callable[[], int]) -> None:
        self._now_ms = now_ms
        self._heap: list[_Queued] = []
        self._order = itertools.count()
        self._lock = threading.Lock()
        self.sent: list[tuple[str, int]] = []

    def send(self, job: str, delay_ms: int) -> None:
        with self._lock:
            self.sent.append((job, delay_ms))
            heapq.heappush(self._heap, _Queued(self._now_ms() + delay_ms, next(self._order), job))

    def due(self) -> list[str]:
        """Jobs whose delay has passed, taken off the queue in due order."""
        now, out = self._now_ms(), []
        with self._lock:
            while self._heap and self._heap[0].due_ms <= now:
                out.append(heapq.heappop(self._heap).job)
        return out

    def next_due_ms(self) -> int | None:
        with self._lock:
            return self._heap[0].due_ms if self._heap else None

    def __len__(self) -> int:
        return len(self._heap)


@dataclass
class RecordingPoster:
    """Records every webhook POST and answers with ``responses`` (in turn; then the last)."""

    responses: list[WebhookResponse] = field(
        default_factory=lambda: [WebhookResponse(200, b"{}")])
    posted: list[tuple[str, bytes, dict[str, str]]] = field(default_factory=list)

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> WebhookResponse:
        self.posted.append((url, body, dict(headers)))
        if len(self.responses) > 1:
            return self.responses.pop(0)
        return self.responses[0]
