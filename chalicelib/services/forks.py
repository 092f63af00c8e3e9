"""Use case: fork a stream (Durable Streams ``Stream-Forked-From``).

A fork shares its source's prefix without copying it (see core/forks.py); creating it is one
DynamoDB transaction that puts the fork's metadata, records the fork in its source's fork
bookkeeping (an item of its own, capped at ``max_forks_per_stream``), and, for a byte
sub-offset inside an entry, puts the partial entry as the fork's first own message.

A fork reads its source's history, so it is an operation on every stream it inherits from,
not only on the one in its path: the caller needs ``history`` on the source and on each of
its ancestors (the handler has checked ``admin`` on the fork's own name). The fork *pins* its
source (a delete of the source is then only a soft delete, and its name stays reserved) only
if the caller may ``admin`` the source: nobody can block the deletion or re-creation of a
stream they could not delete themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.capabilities import ADMIN, HISTORY, Principal
from ..core.channels import ChannelMeta
from ..core.errors import (
    ConflictError,
    ForbiddenError,
    InvalidOffsetError,
    InvalidRequestError,
    NotFoundError,
    TooLargeError,
)
from ..core.forks import ZERO_OFFSET, ForkOrigin, alias_seq, inherit
from ..core.messages import JSON_CONTENT_TYPE, StoredMessage
from ..core.names import validate_channel
from ..core.offsets import Position, new_epoch
from ..ports import ChannelExistsError, ForkLimitError, ForkSourceChangedError
from .channels import ChannelService

_ZERO_EPOCH = ZERO_OFFSET.split("_", 1)[0]
_ATTEMPTS = 5  # a source re-created or forked concurrently: read again and retry


@dataclass(frozen=True)
class ForkRequest:
    name: str
    source: str
    offset: Position | None  # Stream-Fork-Offset (None: the source's current tail)
    sub_offset: int  # Stream-Fork-Sub-Offset (0: none)
    content_type: str | None  # None: inherit the source's
    ttl_s: int | None
    expires_at: int | None  # epoch seconds (from Stream-TTL or Stream-Expires-At)
    ttl_given: bool  # the request itself set Stream-TTL or Stream-Expires-At
    # Who asks (its capabilities decide what it may fork and whether the fork pins its
    # source); None: an internal caller, allowed everything.
    principal: Principal | None = None


def fork(channels: ChannelService, request: ForkRequest) -> tuple[ChannelMeta, bool]:
    """Create the fork, or return it unchanged when an identical fork exists (``created`` is
    False); :class:`ConflictError` when the name holds something else."""
    validate_channel(request.name)
    validate_channel(request.source)
    if request.sub_offset and request.offset is None:
        raise InvalidRequestError(
            "Stream-Fork-Sub-Offset needs Stream-Fork-Offset: the sub-offset counts from it."
        )
    now_s = channels.clock.now_ms() / 1000
    if request.principal is not None:
        # Before anything is read: whether the source exists is not for others to learn.
        request.principal.require(request.source, HISTORY, now_s)
    pruned = False
    for _ in range(_ATTEMPTS):
        existing = channels.store.get_channel(request.name)
        if existing is not None:
            standing = channels.replaceable(existing)
            if standing is not None:
                return channels.with_tail(_same_fork(standing, request)), False
        source = _source(channels, request.source)
        _may_read_ancestors(request.principal, source)
        meta, prefix = _plan(channels, source, request)
        pin = request.principal is None or request.principal.capabilities.allows(
            source.name, ADMIN
        )
        try:
            return channels.store.create_fork(
                meta, prefix, pin=pin, max_forks=channels.settings.max_forks_per_stream
            ), True
        except ChannelExistsError:
            continue  # created concurrently: compare with it
        except ForkSourceChangedError:
            continue  # deleted or re-created meanwhile: look again
        except ForkLimitError:
            # Forks deleted without releasing it, or expired, still count: prune, once.
            if pruned or not channels.prune_forks(source):
                raise _too_many_forks(source, channels.settings.max_forks_per_stream) from None
            pruned = True
    raise ConflictError(
        f"Stream {request.source!r} is changing too fast to fork; retry.",
        {"channel": request.source},
    )


def _may_read_ancestors(principal: Principal | None, source: ChannelMeta) -> None:
    """A fork inherits every log its source inherits: ``history`` on each is needed."""
    if principal is None:
        return
    for ancestor in source.ancestors:
        if not principal.capabilities.allows(ancestor.name, HISTORY):
            # The ancestor is not named: its name is not the caller's to learn.
            raise ForbiddenError(
                f"Stream {source.name!r} inherits history from a stream your credentials "
                "may not read: forking it needs 'history' on every stream it was forked "
                "from. Fork a stream whose whole history you may read.",
                {"channel": source.name, "operation": HISTORY},
            )


def _too_many_forks(source: ChannelMeta, most: int) -> TooLargeError:
    return TooLargeError(
        f"Stream {source.name!r} has {most} forks, the most a stream may have: delete forks "
        "of it that are no longer needed, or fork one of its forks.",
        {"channel": source.name, "max_forks": most},
    )


def _source(channels: ChannelService, name: str) -> ChannelMeta:
    source = channels.store.get_channel(name)
    if source is None or source.is_expired(channels.clock.now_ms() // 1000):
        raise NotFoundError(
            f"The fork's source stream {name!r} does not exist.", {"channel": name}
        )
    if source.deleted:
        raise ConflictError(
            f"Stream {name!r} was deleted (its forks keep it readable for them only): fork "
            "one of its forks instead.",
            {"channel": name},
        )
    return channels.with_tail(source)


def _fork_seq(source: ChannelMeta, offset: Position | None) -> int:
    """The seq of the source that ``Stream-Fork-Offset`` names."""
    if offset is None:
        return source.head
    if offset.epoch == _ZERO_EPOCH and offset.seq == 0:
        return 0
    seq = offset.seq if offset.epoch == source.epoch else alias_seq(source.ancestors, offset)
    if seq is None:
        raise InvalidOffsetError(
            f"Stream-Fork-Offset {offset.offset} is not an offset of stream {source.name!r}.",
            {"offset": offset.offset},
        )
    if seq > source.head:
        raise InvalidOffsetError(
            f"Stream-Fork-Offset {offset.offset} is beyond the end of stream "
            f"{source.name!r} ({source.head_offset}).",
            {"offset": offset.offset, "head": source.head_offset},
        )
    return seq


def _plan(
    channels: ChannelService, source: ChannelMeta, request: ForkRequest
) -> tuple[ChannelMeta, StoredMessage | None]:
    if request.content_type is not None and request.content_type != source.content_type:
        raise ConflictError(
            f"Stream {source.name!r} holds {source.content_type}; a fork has its source's "
            "content type (omit Content-Type to inherit it).",
            {"content_type": source.content_type},
        )
    offset_seq = _fork_seq(source, request.offset)
    fork_seq, partial = _sub_offset(channels, source, offset_seq, request.sub_offset)
    now = channels.clock.now_ms()
    ttl_s, expires_at = request.ttl_s, request.expires_at
    if not request.ttl_given:
        # No lifetime of its own: the source's (a sliding TTL restarts now).
        ttl_s = source.ttl_s
        expires_at = (
            channels.sliding_expiry(source, now) if ttl_s is not None else source.expires_at
        )
    epoch = new_epoch(now, channels.rng.getrandbits(16))
    meta = ChannelMeta(
        name=request.name,
        epoch=epoch,
        head=fork_seq + (1 if partial is not None else 0),
        created_ms=now,
        retention_s=source.retention_s,
        content_type=source.content_type,
        expires_at=expires_at,
        ttl_s=ttl_s,
        written_ms=now if partial is not None else None,  # the prefix is its first entry
        fork=ForkOrigin(
            source=source.name,
            source_epoch=source.epoch,
            offset_seq=offset_seq,
            sub_offset=request.sub_offset,
            ancestors=inherit(source.name, source.epoch, source.ancestors, fork_seq),
        ),
    )
    prefix = None
    if partial is not None:
        prefix = StoredMessage(
            channel=meta.name, epoch=epoch, seq=fork_seq + 1, body=partial, ts=now,
            expires_at=now // 1000 + meta.retention_s, raw=True,  # only byte streams split
        )
    return meta, prefix


def _sub_offset(
    channels: ChannelService, source: ChannelMeta, offset_seq: int, sub_offset: int
) -> tuple[int, bytes | None]:
    """(last wholly inherited seq, bytes of a partially inherited entry or None).

    JSON streams count messages (each JSON value is one), byte streams count bytes; either
    way the sub-offset may not pass the source's end.
    """
    if sub_offset == 0:
        return offset_seq, None
    overshoot = InvalidRequestError(
        f"Stream-Fork-Sub-Offset {sub_offset} passes the end of stream {source.name!r} after "
        "the fork offset.",
        {"sub_offset": sub_offset},
    )
    if source.content_type == JSON_CONTENT_TYPE:
        if offset_seq + sub_offset > source.head:
            raise overshoot
        return offset_seq + sub_offset, None
    remaining, seq = sub_offset, offset_seq
    while remaining:
        page = channels.read_after(source, seq, 100)
        if not page:
            raise overshoot
        for message in page:
            if len(message.body) > remaining:
                return seq, message.body[:remaining]
            remaining -= len(message.body)
            seq = message.seq
            if not remaining:
                break
    return seq, None


def _same_fork(existing: ChannelMeta, request: ForkRequest) -> ChannelMeta:
    """An existing stream answers a fork request only if it is that very fork."""
    origin = existing.fork
    same = (
        origin is not None
        and origin.source == request.source
        and origin.sub_offset == request.sub_offset
        and (request.offset is None or _names(origin, request.offset))
        and request.content_type in (None, existing.content_type)
        and (not request.ttl_given or (
            existing.ttl_s == request.ttl_s
            and (request.ttl_s is not None or existing.expires_at == request.expires_at)
        ))
    )
    if not same:
        raise ConflictError(
            f"Stream {existing.name!r} already exists and is not this fork (source, fork "
            "offset, sub-offset, content type or lifetime differ).",
            {"channel": existing.name},
        )
    return existing


def _names(origin: ForkOrigin, offset: Position) -> bool:
    """Whether ``offset`` names the fork offset ``origin`` was created at."""
    if offset.seq != origin.offset_seq:
        return False
    epochs = {origin.source_epoch, *(a.epoch for a in origin.ancestors)}
    return offset.epoch in epochs or (offset.epoch == _ZERO_EPOCH and offset.seq == 0)
