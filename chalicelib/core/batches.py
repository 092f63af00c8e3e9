"""How an append is cut into DynamoDB transactions, and what one request may carry.

Every append path (WebSocket, REST, Durable Streams) goes through ``services/appends.py``,
which applies these rules, so the 100-item and 4 MB transaction limits are written once.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import TooLargeError
from .messages import NewMessage, check_size

# A DynamoDB transaction holds at most 100 items ...
TRANSACTION_ITEMS = 100
# ... and at most 4 MB: leave room for keys and attributes.
TRANSACTION_BYTES = 3_500_000
# A guarded append (producer, Stream-Seq, close) adds the channel's item, a close marker and
# the producer's state to its transaction.
GUARD_ITEMS = 3


def check_request(
    messages: Sequence[NewMessage], guarded: bool, max_batch: int, max_message_bytes: int
) -> None:
    """Refuse a request over the per-request limits before anything is stored."""
    count = len(messages)
    if count > max_batch:
        raise TooLargeError(
            f"At most {max_batch} messages per request; got {count}.", {"max_batch": max_batch}
        )
    for message in messages:
        check_size(len(message.body), max_message_bytes)
    items = 2 * count + GUARD_ITEMS
    fits = items <= TRANSACTION_ITEMS and sum(len(m.body) for m in messages) <= TRANSACTION_BYTES
    if guarded and not fits:
        most = (TRANSACTION_ITEMS - GUARD_ITEMS) // 2
        raise TooLargeError(
            "An append with producer, Stream-Seq or close headers is committed in one "
            f"transaction: at most {most} messages and {TRANSACTION_BYTES} bytes. Split it "
            "into smaller batches.",
            {"max_messages": most, "max_bytes": TRANSACTION_BYTES},
        )


def next_chunk(messages: Sequence[NewMessage], pending: list[int], guarded: bool) -> list[int]:
    """As many pending messages (indexes into ``messages``) as fit in one transaction (100
    items, 4 MB; a message with an id takes two: its claim), stopping before a repeated id
    (its first occurrence must be stored before the repeat can be recognised)."""
    chunk: list[int] = []
    items, size = (GUARD_ITEMS if guarded else 0), 0
    seen: set[str] = set()
    for i in pending:
        msg_id = messages[i].id
        cost = 2 if msg_id else 1
        full = items + cost > TRANSACTION_ITEMS or (
            chunk and size + len(messages[i].body) > TRANSACTION_BYTES
        )
        if full or (msg_id is not None and msg_id in seen):
            break
        if msg_id is not None:
            seen.add(msg_id)
        chunk.append(i)
        items += cost
        size += len(messages[i].body)
    return chunk
