"""Durable Streams writer coordination: idempotent producers and ``Stream-Seq``.

Pure rules, no I/O. The service reads the producer's state and the channel's last
``Stream-Seq``, asks :func:`check_producer` / :func:`check_stream_seq` what to do, and commits
the new state in the same DynamoDB transaction as the append, conditioned on the state it
checked, so validation and append are serialized per (stream, producer).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .errors import ConflictError, ForbiddenError, InvalidRequestError

# Producer-Epoch and Producer-Seq stay exact in JavaScript clients.
MAX_SAFE_INTEGER = 2**53 - 1
MAX_PRODUCER_ID_LENGTH = 256


@dataclass(frozen=True)
class ProducerRequest:
    """The Producer-Id / Producer-Epoch / Producer-Seq headers of one append."""

    producer_id: str
    epoch: int
    seq: int


@dataclass(frozen=True)
class ProducerState:
    """What the server remembers per (channel life, producer id)."""

    producer_id: str
    epoch: int
    last_seq: int


class Verdict(Enum):
    ACCEPT = "accept"  # new data: append it and store the new state
    DUPLICATE = "duplicate"  # already appended: answer 204, store nothing


class StaleEpochError(ForbiddenError):
    """A zombie producer: a newer epoch has written since (403, current epoch in a header)."""

    def __init__(self, current_epoch: int, received: int) -> None:
        super().__init__(
            f"Producer epoch {received} is stale: epoch {current_epoch} has taken over this "
            "producer id. Stop writing, or restart with a higher epoch at seq 0.",
            {"current_epoch": current_epoch, "received_epoch": received},
        )
        self.headers = {"Producer-Epoch": str(current_epoch)}


class SequenceGapError(ConflictError):
    """Producer-Seq skipped ahead (409, expected and received seqs in headers)."""

    def __init__(self, expected: int, received: int) -> None:
        super().__init__(
            f"Producer-Seq {received} leaves a gap: the next expected seq is {expected}. "
            "Resend the missing batches first.",
            {"expected_seq": expected, "received_seq": received},
        )
        self.headers = {
            "Producer-Expected-Seq": str(expected),
            "Producer-Received-Seq": str(received),
        }


def parse_producer(
    producer_id: str | None, epoch: str | None, seq: str | None
) -> ProducerRequest | None:
    """The producer headers, all three or none; :class:`InvalidRequestError` otherwise."""
    given = [v is not None for v in (producer_id, epoch, seq)]
    if not any(given):
        return None
    if not all(given):
        raise InvalidRequestError(
            "Send Producer-Id, Producer-Epoch and Producer-Seq together, or none of them."
        )
    assert producer_id is not None and epoch is not None and seq is not None
    if not producer_id.strip() or len(producer_id) > MAX_PRODUCER_ID_LENGTH:
        raise InvalidRequestError(
            f"Producer-Id must be a non-empty string of at most {MAX_PRODUCER_ID_LENGTH} "
            "characters."
        )
    return ProducerRequest(
        producer_id, _integer(epoch, "Producer-Epoch"), _integer(seq, "Producer-Seq")
    )


def _integer(value: str, header: str) -> int:
    if not value.isdigit() or not value.isascii() or int(value) > MAX_SAFE_INTEGER:
        raise InvalidRequestError(
            f"{header} must be a non-negative decimal integer of at most 2^53-1; "
            f"got {value[:40]!r}."
        )
    return int(value)


def check_producer(state: ProducerState | None, request: ProducerRequest) -> Verdict:
    """The protocol's validation: fence stale epochs, drop duplicates, refuse gaps."""
    if state is None or request.epoch > state.epoch:
        if request.seq != 0:
            if state is None:
                raise SequenceGapError(0, request.seq)
            raise InvalidRequestError(
                f"A new Producer-Epoch ({request.epoch}) must start at Producer-Seq 0; "
                f"got {request.seq}."
            )
        return Verdict.ACCEPT
    if request.epoch < state.epoch:
        raise StaleEpochError(state.epoch, request.epoch)
    if request.seq <= state.last_seq:
        return Verdict.DUPLICATE
    if request.seq != state.last_seq + 1:
        raise SequenceGapError(state.last_seq + 1, request.seq)
    return Verdict.ACCEPT


def check_stream_seq(last: str | None, received: str) -> None:
    """``Stream-Seq`` must grow strictly, compared byte-wise (scope: the whole stream)."""
    if last is not None and received.encode() <= last.encode():
        raise ConflictError(
            f"Stream-Seq {received[:80]!r} is not greater than the last one accepted "
            f"({last[:80]!r}); sequence numbers compare byte-wise and must increase.",
            {"last_stream_seq": last, "received_stream_seq": received},
        )
