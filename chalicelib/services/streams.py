"""Use cases: the Durable Streams protocol over the channel logs (``/v1/stream/{channel}``).

Creation (with its conflict rules and forks), appends (through the one append path), catch-up
reads, and the bounded live modes: long-poll waits up to ``long_poll_timeout_s`` for the
channel to grow; SSE returns what is available (holding up to ``sse_hold_s`` when caught up)
as complete events. API Gateway REST and Lambda cannot stream a response, so each live read is
one bounded response (docs/durable-streams.md). Time comes from the injected clock, so the
loops run on a fake clock in tests.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from ..core import streams as protocol
from ..core.capabilities import Principal
from ..core.channels import ChannelMeta
from ..core.errors import ConflictError, ForbiddenError, InvalidRequestError, NotFoundError
from ..core.forks import parse_fork_offset, parse_source, parse_sub_offset
from ..core.logs import EntryKind
from ..core.messages import NewMessage
from ..core.offsets import StartRequest
from ..core.presence import is_presence_log
from ..core.producers import ProducerRequest
from ..ports import Clock
from ..settings import Settings
from .appends import Appender, AppendOutcome, AppendRequest
from .channels import ChannelService
from .forks import ForkRequest, fork

READ_LIMIT = 1000  # messages per catch-up response
# Lambda responses are at most 6 MB and binary bodies travel base64-encoded (4/3).
READ_MAX_BYTES = 3 * 1024 * 1024
POLL_INTERVAL_S = 0.1  # how often a waiting read re-reads the channel's head (one GetItem)


@dataclass(frozen=True)
class CreateStream:
    """A ``PUT /v1/stream/{name}`` as the protocol defines it."""

    name: str
    content_type: str | None  # None: not given (a fork inherits; a new stream is bytes)
    ttl_s: int | None
    expires_at: int | None
    close: bool
    body: bytes
    forked_from: str | None = None
    fork_offset: str | None = None
    fork_sub_offset: str | None = None
    publisher: str | None = None
    # Who asks: a fork needs `history` on every stream it inherits (services/forks.py).
    principal: Principal | None = None


@dataclass(frozen=True)
class AppendStream:
    """A ``POST /v1/stream/{name}``."""

    name: str
    body: bytes
    content_type: str  # "" when absent
    close: bool
    producer: ProducerRequest | None
    stream_seq: str | None
    publisher: str | None = None


class StreamService:
    def __init__(
        self,
        channels: ChannelService,
        appender: Appender,
        settings: Settings,
        clock: Clock,
        rng: random.Random | None = None,
    ) -> None:
        self.channels = channels
        self.appender = appender
        self.settings = settings
        self.clock = clock
        self.rng = rng or random.Random()

    # -- create ----------------------------------------------------------------------------

    def create(
        self, request: CreateStream, deadline_ms: int | None = None
    ) -> tuple[ChannelMeta, bool]:
        """Create the stream (or fork), or return it when it exists with the same
        configuration (``created`` False); :class:`ConflictError` when it differs."""
        if is_presence_log(request.name):
            raise ForbiddenError(
                f"{request.name!r} is a presence log: presence creates it and writes it "
                "(enter, update, leave presence); read it with GET.",
                {"channel": request.name},
            )
        if request.forked_from is None and (
            request.fork_sub_offset is not None or request.fork_offset is not None
        ):
            raise InvalidRequestError(
                "Stream-Fork-Offset and Stream-Fork-Sub-Offset need Stream-Forked-From."
            )
        if request.forked_from is not None:
            meta, created = self._fork(request)
            if not created and request.close and not meta.closed:
                raise ConflictError(
                    f"Stream {request.name!r} exists and is open.", {"channel": request.name}
                )
        else:
            content_type = request.content_type or protocol.OCTET_STREAM
            meta, created = self.channels.create(
                request.name, content_type=content_type, expires_at=request.expires_at,
                ttl_s=request.ttl_s,
            )
            if not created and (
                meta.fork is not None  # a fork is re-created only with its fork headers
                or meta.content_type != content_type
                or meta.ttl_s != request.ttl_s
                or (request.ttl_s is None and meta.expires_at != request.expires_at)
                or (request.close and not meta.closed)
            ):
                raise ConflictError(
                    f"Stream {request.name!r} already exists with another configuration "
                    f"(content type {meta.content_type}, TTL {meta.ttl_s}, "
                    f"expires at {meta.expires_at}).",
                    {"content_type": meta.content_type},
                )
        if created and (request.body or request.close):
            bodies = self._bodies(meta, request.body, allow_empty_array=True)
            if bodies or request.close:
                meta = self.appender.append(
                    AppendRequest(
                        request.name, bodies, content_type=meta.content_type,
                        close=request.close, publisher=request.publisher,
                    ),
                    deadline_ms,
                ).meta
        return meta, created

    def _fork(self, request: CreateStream) -> tuple[ChannelMeta, bool]:
        assert request.forked_from is not None
        return fork(
            self.channels,
            ForkRequest(
                name=request.name,
                source=parse_source(request.forked_from),
                offset=(
                    parse_fork_offset(request.fork_offset)
                    if request.fork_offset is not None else None
                ),
                sub_offset=(
                    parse_sub_offset(request.fork_sub_offset)
                    if request.fork_sub_offset is not None else 0
                ),
                content_type=request.content_type,
                ttl_s=request.ttl_s,
                expires_at=request.expires_at,
                ttl_given=request.ttl_s is not None or request.expires_at is not None,
                principal=request.principal,
            ),
        )

    # -- append ----------------------------------------------------------------------------

    def append(self, request: AppendStream, deadline_ms: int | None = None) -> AppendOutcome:
        if not request.body and not request.close:
            raise InvalidRequestError(
                "Empty appends are not allowed: send at least one byte, or Stream-Closed: true "
                "to close the stream."
            )
        if request.body and not request.content_type:
            raise InvalidRequestError("Content-Type is required on appends.")
        bodies: list[NewMessage] = []
        if request.body:
            meta = self.appender.view(request.name)
            # A mismatched content type is refused by the append path, after the producer
            # checks (a producer's retry is a duplicate whatever it carries).
            bodies = (
                self._bodies(meta, request.body, allow_empty_array=False)
                if request.content_type == meta.content_type
                else [NewMessage(request.body)]
            )
        return self.appender.append(
            AppendRequest(
                request.name, bodies,
                content_type=request.content_type if request.body else None,
                producer=request.producer, stream_seq=request.stream_seq, close=request.close,
                publisher=request.publisher,
            ),
            deadline_ms,
        )

    def _bodies(self, meta: ChannelMeta, raw: bytes, allow_empty_array: bool) -> list[NewMessage]:
        binary = not protocol.is_json(meta.content_type)
        return [
            NewMessage(body, raw=binary)
            for body in protocol.split_body(
                meta.content_type, raw, self.settings.max_message_bytes, allow_empty_array,
                self.settings.max_batch,
            )
        ]

    # -- read ------------------------------------------------------------------------------

    def start_read(self, meta: ChannelMeta, start: StartRequest) -> int:
        """The seq a read starts after; the read renews a sliding TTL."""
        after = self.channels.resolve(meta, start)
        self.channels.touch(meta)
        return after

    def read_batch(self, meta: ChannelMeta, after: int) -> protocol.Batch:
        """Messages after ``after``, bounded by count and bytes, joined."""
        messages = self.channels.read_after(meta, after, READ_LIMIT)
        return protocol.join(
            meta, after, [(m.seq, m.body) for m in messages], READ_MAX_BYTES
        )

    def wait(
        self, meta: ChannelMeta, after: int, timeout_s: float, deadline_ms: int | None = None
    ) -> protocol.Batch:
        """Poll the log's end (one Query of one item) until it passes ``after``, the stream
        closes, or time runs out (``timeout_s``, or the invocation's deadline if sooner)."""
        deadline = self.clock.now_ms() + timeout_s * 1000
        if deadline_ms is not None:
            deadline = min(deadline, deadline_ms)
        while True:
            tail = self.channels.tail(meta)
            if tail.marker is EntryKind.END:
                raise NotFoundError(
                    f"Stream {meta.name!r} was deleted.", {"channel": meta.name}
                )
            latest = meta.with_head(tail.head)
            if tail.marker is EntryKind.CLOSE:
                latest = replace(latest, closed=True)
            if tail.head > after or latest.closed:
                return self.read_batch(latest, after)
            if self.clock.now_ms() + POLL_INTERVAL_S * 1000 > deadline:
                return self.read_batch(latest, after)
            self.clock.sleep(POLL_INTERVAL_S)

    def long_poll(
        self, meta: ChannelMeta, after: int, deadline_ms: int | None = None
    ) -> protocol.Batch:
        batch = self.read_batch(meta, after)
        if batch.count == 0 and not meta.closed:
            batch = self.wait(meta, after, self.settings.long_poll_timeout_s, deadline_ms)
        return batch

    def sse(
        self, meta: ChannelMeta, after: int, cursor: str, deadline_ms: int | None = None
    ) -> str:
        """One bounded SSE response, the client resuming from its last control event.

        It carries the catch-up data (at most ``READ_MAX_BYTES``) and lasts at least
        ``sse_min_s``, gathering what arrives meanwhile, or, for a reader with nothing to
        catch up on, waits up to ``sse_hold_s`` for data. API Gateway delivers a response
        only when it ends, and Durable Streams clients take a run of connections that end
        within a second for a buffering proxy and stop reading live (docs/durable-streams.md),
        so no response ends sooner unless the stream closed or the invocation's time is up.
        """
        start = self.clock.now_ms()
        limit = deadline_ms if deadline_ms is not None else 2**62
        min_end = min(start + int(self.settings.sse_min_s * 1000), limit)
        hold_end = min(start + int(max(self.settings.sse_min_s, self.settings.sse_hold_s)
                                   * 1000), limit)
        events: list[str] = []
        size = 0
        batch = self.read_batch(meta, after)
        while True:
            if batch.count:
                events.append(protocol.data_event(batch))
                events.append(protocol.control_event(batch, cursor))
                size += len(batch.body)
            now = self.clock.now_ms()
            if size >= READ_MAX_BYTES or now >= limit or (batch.up_to_date and batch.meta.closed):
                break
            if batch.count and not batch.up_to_date:
                batch = self.read_batch(batch.meta, batch.next_seq)
                continue
            end = min_end if events else hold_end
            if now >= end:
                break
            batch = self.wait(batch.meta, batch.next_seq, (end - now) / 1000, limit)
            if not batch.count:
                break
        if not events:
            events.append(protocol.control_event(batch, cursor))
        return "".join(events)

    def live_read_ends_ms(self, live: str) -> int:
        """When a live read ends at the latest, when the invocation gives no deadline."""
        wait_s = self.settings.long_poll_timeout_s if live == "long-poll" else 29.0
        return self.clock.now_ms() + int(wait_s * 1000)

    def cursor(self, client_cursor: str | None) -> str:
        return protocol.cursor(self.clock.now_ms(), client_cursor, self.rng)
