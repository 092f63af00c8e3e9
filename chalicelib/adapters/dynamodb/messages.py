"""The MessageStore on DynamoDB: channels, logs, idempotency claims, producer states.

A log entry is written with a conditional put on its (log, seq) key, alone or in a
transaction with the claims of its ids and the Durable Streams state it commits with; nothing
updates a per-channel counter, so concurrent publishers and joining subscribers never contend
on the channel's item. The low-level client is used on purpose: no resource layer to import on
a cold start.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from ...core.channels import ChannelMeta
from ...core.forks import fork_member
from ...core.logs import EntryKind, LogEntry
from ...core.messages import NewMessage, StoredMessage
from ...core.producers import ProducerState
from ...ports import (
    AppendConflictError,
    AppendGuard,
    ChannelExistsError,
    Deletion,
    ForkLimitError,
    ForkRefs,
    ForkSourceChangedError,
    IdsClaimedError,
    SeqTakenError,
)
from .items import (
    TTL_ATTRIBUTE,
    cancellation_codes,
    claim_key,
    entry_from_item,
    fork_refs_key,
    is_conflict,
    is_message,
    log_key,
    marker_item,
    message_from_item,
    message_item,
    meta_from_item,
    meta_item,
    num,
    producer_key,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
else:
    DynamoDBClient = Any

_FREE = "attribute_not_exists(seq)"  # a log entry's seq is free
_CONFLICT_RETRIES = 5
_ENTRY_FIELDS = {"ProjectionExpression": "seq, kind, #i", "ExpressionAttributeNames": {"#i": "id"}}


class DynamoMessageStore:
    """The MessageStore: channel metadata, claims and producer states in the channels table,
    logs in the messages table."""

    def __init__(self, client: DynamoDBClient, channels_table: str, messages_table: str) -> None:
        self.client = client
        self.channels_table = channels_table
        self.messages_table = messages_table

    # -- channels --------------------------------------------------------------------------

    def get_channel(self, name: str) -> ChannelMeta | None:
        item = self.client.get_item(
            TableName=self.channels_table, Key={"pk": {"S": name}}, ConsistentRead=True
        ).get("Item")
        return meta_from_item(item) if item else None

    def create_channel(self, meta: ChannelMeta) -> ChannelMeta:
        try:
            self.client.put_item(
                TableName=self.channels_table,
                Item=meta_item(meta),
                ConditionExpression="attribute_not_exists(pk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            old: dict[str, Any] | None = error.response.get("Item")  # type: ignore[assignment]
            if is_conflict(error):
                existing = meta_from_item(old) if old else self.get_channel(meta.name)
                if existing is not None:
                    raise ChannelExistsError(existing) from None
                return self.create_channel(meta)  # deleted in between: try again
            raise
        return meta

    def delete_channel(
        self, meta: ChannelMeta, end_seq: int, purge: bool = False
    ) -> Deletion | None:
        # The log items of this epoch become unreachable (keys include the epoch) and expire
        # through TTL: deleting a channel is one transaction whatever its length. Forks read
        # those items by (name, epoch) until they expire, whatever happens to this item.
        # The end marker makes a publisher with a stale view fail instead of writing there.
        # Whether forks pin it is the fork bookkeeping's item (never the channel's own).
        end = self._end_marker(meta, end_seq)
        key = {"pk": {"S": meta.name}}
        epoch = {":e": {"S": meta.epoch}}
        refs_key = {"pk": {"S": fork_refs_key(meta.name, meta.epoch)}}
        hard: list[dict[str, Any]] = [
            {
                "Delete": {
                    "TableName": self.channels_table,
                    "Key": key,
                    "ConditionExpression": "epoch = :e",
                    "ExpressionAttributeValues": epoch,
                }
            },
            {
                # The bookkeeping goes with the channel, only if no fork pins it (purge:
                # whatever pins it).
                "Delete": {
                    "TableName": self.channels_table,
                    "Key": refs_key,
                    **({} if purge else {"ConditionExpression": "attribute_not_exists(pins)"}),
                }
            },
        ]
        soft: list[dict[str, Any]] = [
            {
                # Forks pin it: keep the item, marked deleted, until the last pin is released
                # (release_fork).
                "Update": {
                    "TableName": self.channels_table,
                    "Key": key,
                    "UpdateExpression": "SET deleted = :t",
                    "ConditionExpression": "epoch = :e",
                    "ExpressionAttributeValues": {**epoch, ":t": {"BOOL": True}},
                }
            },
            {
                "ConditionCheck": {
                    "TableName": self.channels_table,
                    "Key": refs_key,
                    "ConditionExpression": "attribute_exists(pins)",
                }
            },
        ]
        for _ in range(10):  # each step is conditional; loop only while forks come and go
            for steps, outcome in ((hard, Deletion(soft=False)), (soft, Deletion(soft=True))):
                if steps is soft and purge:
                    break
                try:
                    self._transact([end, *steps] if end is not None else steps)
                    return outcome
                except ClientError as error:
                    if not is_conflict(error):
                        raise
                    codes = cancellation_codes(error)
                    steps_failed = "ConditionalCheckFailed" in codes[1 if end else 0 :]
                    if end is not None and codes[:1] == ["ConditionalCheckFailed"] and (
                        not steps_failed
                    ):
                        raise SeqTakenError() from None
            current = self.get_channel(meta.name)
            if current is None or current.epoch != meta.epoch or purge:
                return None
            if current.deleted:
                end = None  # soft-deleted before, log ended then: collect it
        raise AppendConflictError(meta.name)

    def _end_marker(self, meta: ChannelMeta, end_seq: int) -> dict[str, Any] | None:
        if meta.deleted:
            return None  # ended when it was soft-deleted
        expires_at = int(time.time()) + meta.retention_s  # as long as the log's last messages
        return {
            "Put": {
                "TableName": self.messages_table,
                "Item": marker_item(meta.name, meta.epoch, end_seq, EntryKind.END, expires_at),
                "ConditionExpression": _FREE,
            }
        }

    def create_fork(
        self,
        meta: ChannelMeta,
        prefix: StoredMessage | None = None,
        pin: bool = True,
        max_forks: int = 100,
    ) -> ChannelMeta:
        assert meta.fork is not None
        member = {"SS": [fork_member(meta.name, meta.epoch)]}
        record = "ADD forks :m, pins :m" if pin else "ADD forks :m"
        items: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self.channels_table,
                    "Item": meta_item(meta),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            {
                # The source must still be this life, not deleted; its item is only read.
                "ConditionCheck": {
                    "TableName": self.channels_table,
                    "Key": {"pk": {"S": meta.fork.source}},
                    "ConditionExpression": "epoch = :e AND attribute_not_exists(deleted)",
                    "ExpressionAttributeValues": {":e": {"S": meta.fork.source_epoch}},
                }
            },
            {
                # The source's fork bookkeeping (its own item): a delete of the source is
                # soft while any pin is listed; the set's size is the per-stream cap.
                "Update": {
                    "TableName": self.channels_table,
                    "Key": {
                        "pk": {"S": fork_refs_key(meta.fork.source, meta.fork.source_epoch)}
                    },
                    "UpdateExpression": record,
                    "ConditionExpression": "attribute_not_exists(forks) OR size(forks) < :max",
                    "ExpressionAttributeValues": {":m": member, ":max": num(max_forks)},
                }
            },
        ]
        if prefix is not None:
            items.append({"Put": {"TableName": self.messages_table, "Item": message_item(prefix)}})
        try:
            self._transact(items)
        except ClientError as error:
            if not is_conflict(error):
                raise
            codes = cancellation_codes(error)
            if codes and codes[0] == "ConditionalCheckFailed":
                existing = self.get_channel(meta.name)
                if existing is not None:
                    raise ChannelExistsError(existing) from None
            if codes[1:2] != ["ConditionalCheckFailed"] and codes[2:3] == [
                "ConditionalCheckFailed"
            ]:
                raise ForkLimitError(meta.fork.source) from None
            raise ForkSourceChangedError(meta.fork.source) from None
        return meta

    def fork_refs(self, name: str, epoch: str) -> ForkRefs:
        item = self.client.get_item(
            TableName=self.channels_table,
            Key={"pk": {"S": fork_refs_key(name, epoch)}},
            ConsistentRead=True,
        ).get("Item") or {}
        return _refs(item)

    def release_fork(self, name: str, epoch: str, member: str) -> ChannelMeta | None:
        refs_key = {"pk": {"S": fork_refs_key(name, epoch)}}
        try:
            item = self.client.update_item(
                TableName=self.channels_table,
                Key=refs_key,
                UpdateExpression="DELETE forks :m, pins :m",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={":m": {"SS": [member]}},
                ReturnValues="ALL_NEW",
            )["Attributes"]
        except ClientError as error:
            if is_conflict(error):
                return None  # no bookkeeping: the source is gone, or never had forks
            raise
        refs = _refs(item)
        if refs.pins:
            return None
        meta = self.get_channel(name)
        if meta is None or meta.epoch != epoch or not meta.deleted:
            if not refs.forks:
                self._drop_empty_refs(refs_key)
            return None
        try:
            # The last pin of a soft-deleted channel: collect it, with its bookkeeping.
            self._transact([
                {
                    "Delete": {
                        "TableName": self.channels_table,
                        "Key": {"pk": {"S": name}},
                        "ConditionExpression": "epoch = :e AND deleted = :t",
                        "ExpressionAttributeValues": {
                            ":e": {"S": epoch}, ":t": {"BOOL": True},
                        },
                    }
                },
                {
                    "Delete": {
                        "TableName": self.channels_table,
                        "Key": refs_key,
                        "ConditionExpression": "attribute_not_exists(pins)",
                    }
                },
            ])
        except ClientError as error:
            if is_conflict(error):
                return None  # another release collected it
            raise
        return meta

    def _drop_empty_refs(self, key: dict[str, Any]) -> None:
        """An emptied bookkeeping item of a standing channel (an empty set is no attribute
        in DynamoDB): removed, unless a fork was recorded meanwhile."""
        try:
            self.client.delete_item(
                TableName=self.channels_table, Key=key,
                ConditionExpression="attribute_not_exists(forks)",
            )
        except ClientError as error:
            if not is_conflict(error):
                raise

    def mark_written(self, meta: ChannelMeta, now_ms: int) -> None:
        # Written already, or another epoch: nothing to do.
        self._update_unless_moot(
            Key={"pk": {"S": meta.name}},
            UpdateExpression="SET written = :t",
            ConditionExpression="epoch = :e AND attribute_not_exists(written)",
            ExpressionAttributeValues={":e": {"S": meta.epoch}, ":t": num(now_ms)},
        )

    def _update_unless_moot(self, **update: Any) -> None:
        """An UpdateItem on the channels table whose failed condition means there is nothing
        to do; retried while a transaction holds the item (TransactionConflictException)."""
        for attempt in range(_CONFLICT_RETRIES):
            try:
                self.client.update_item(TableName=self.channels_table, **update)
                return
            except ClientError as error:
                code = error.response.get("Error", {}).get("Code")
                if code == "ConditionalCheckFailedException":
                    return
                if code != "TransactionConflictException" or attempt + 1 == _CONFLICT_RETRIES:
                    raise
                time.sleep(0.005 * 2**attempt)

    def renew_epoch(self, meta: ChannelMeta, new_epoch: str, end_seq: int) -> bool:
        end = self._end_marker(meta, end_seq)
        renew = {
            "Update": {
                "TableName": self.channels_table,
                "Key": {"pk": {"S": meta.name}},
                "UpdateExpression": "SET epoch = :n, prev_epoch = :e REMOVE written, wseq",
                "ConditionExpression": "epoch = :e",
                "ExpressionAttributeValues": {":e": {"S": meta.epoch}, ":n": {"S": new_epoch}},
            }
        }
        try:
            self._transact([end, renew] if end is not None else [renew])
        except ClientError as error:
            if is_conflict(error):
                return False
            raise
        return True

    # -- logs ------------------------------------------------------------------------------

    def last_entry(self, name: str, epoch: str) -> LogEntry | None:
        items = self.client.query(
            TableName=self.messages_table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": log_key(name, epoch)}},
            ScanIndexForward=False,
            Limit=1,
            ConsistentRead=True,
            **_ENTRY_FIELDS,  # type: ignore[arg-type]
        ).get("Items", [])
        return entry_from_item(items[0]) if items else None

    def entry(self, name: str, epoch: str, seq: int) -> LogEntry | None:
        item = self.client.get_item(
            TableName=self.messages_table,
            Key={"pk": {"S": log_key(name, epoch)}, "seq": num(seq)},
            ConsistentRead=True,
            **_ENTRY_FIELDS,  # type: ignore[arg-type]
        ).get("Item")
        return entry_from_item(item) if item else None

    def append(
        self,
        meta: ChannelMeta,
        first_seq: int,
        messages: Sequence[NewMessage],
        ts: int,
        expires_at: int,
        guard: AppendGuard | None = None,
        claim_ids: bool = True,
        stale_claims: Mapping[str, int] | None = None,
    ) -> list[StoredMessage]:
        guard = guard or AppendGuard()
        stored = [
            StoredMessage(
                channel=meta.name, epoch=meta.epoch, seq=first_seq + offset, body=m.body,
                ts=ts, expires_at=expires_at, id=m.id, publisher=m.publisher, token=m.token,
                raw=m.raw,
            )
            for offset, m in enumerate(messages)
        ]
        items: list[dict[str, Any]] = []
        roles: list[str] = []  # what each item is, to read cancellation reasons
        for message in stored:
            items.append(self._put_entry(message_item(message)))
            roles.append("seq")
            if claim_ids and message.id is not None:
                items.append(self._claim(meta, message, ts // 1000, stale_claims))
                roles.append(f"id:{message.id}")
        if guard.guarded:
            self._guard(meta, guard, first_seq + len(stored), expires_at, items, roles)
        if len(items) == 1:
            self._put_one(items[0]["Put"])
            return stored
        try:
            self._transact(items)
        except ClientError as error:
            if not is_conflict(error):
                raise
            raise _append_failure(error, roles) from None
        return stored

    def _put_entry(self, item: dict[str, Any]) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self.messages_table,
                "Item": item,
                "ConditionExpression": _FREE,
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }

    def _claim(
        self,
        meta: ChannelMeta,
        message: StoredMessage,
        now_s: int,
        stale_claims: Mapping[str, int] | None,
    ) -> dict[str, Any]:
        assert message.id is not None
        # A claim may be taken when it is free, expired (the id is past its retention), or
        # the stale claim the caller found (its message lost that seq to another).
        condition = "attribute_not_exists(pk) OR expires_at < :now"
        values: dict[str, Any] = {":now": num(now_s)}
        stale = (stale_claims or {}).get(message.id)
        if stale is not None:
            condition += " OR seq = :stale"
            values[":stale"] = num(stale)
        return {
            "Put": {
                "TableName": self.channels_table,
                "Item": {
                    "pk": {"S": claim_key(meta.name, meta.epoch, message.id)},
                    "seq": num(message.seq),
                    TTL_ATTRIBUTE: num(message.expires_at),
                },
                "ConditionExpression": condition,
                "ExpressionAttributeValues": values,
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }

    def _put_one(self, put: dict[str, Any]) -> None:
        """One entry alone: a plain conditional PutItem (1 write unit, not a transaction's 2)."""
        try:
            self.client.put_item(**put)
        except ClientError as error:
            if not is_conflict(error):
                raise
            old: dict[str, Any] | None = error.response.get("Item")  # type: ignore[assignment]
            raise SeqTakenError(entry_from_item(old) if old else None) from None

    def _guard(
        self,
        meta: ChannelMeta,
        guard: AppendGuard,
        after_seq: int,
        expires_at: int,
        items: list[dict[str, Any]],
        roles: list[str],
    ) -> None:
        """Add a Durable Streams guard to an append transaction: the producer's state and
        the stream's Stream-Seq unchanged; the new state (and a close marker after the
        messages) commits with them. The channel's item joins only for Stream-Seq or close:
        a closed or deleted log already refuses the messages' seqs with its marker."""
        self._producer_state(meta, guard, expires_at, items, roles)
        if guard.stream_seq is None and not guard.close:
            return
        condition = "epoch = :e AND attribute_not_exists(closed) AND attribute_not_exists(deleted)"
        values: dict[str, Any] = {":e": {"S": meta.epoch}}
        sets: list[str] = []
        if guard.stream_seq is not None:
            if guard.stream_seq_before is None:
                condition += " AND attribute_not_exists(wseq)"
            else:
                condition += " AND wseq = :wb"
                values[":wb"] = {"S": guard.stream_seq_before}
            sets.append("wseq = :wseq")
            values[":wseq"] = {"S": guard.stream_seq}
        if guard.close:
            sets.append("closed = :closed")
            values[":closed"] = {"BOOL": True}
            items.append(
                self._put_entry(
                    marker_item(meta.name, meta.epoch, after_seq, EntryKind.CLOSE, expires_at)
                )
            )
            roles.append("seq")
        update: dict[str, Any] = {
            "TableName": self.channels_table,
            "Key": {"pk": {"S": meta.name}},
            "ConditionExpression": condition,
            "ExpressionAttributeValues": values,
        }
        update["UpdateExpression"] = "SET " + ", ".join(sets)
        items.append({"Update": update})
        roles.append("state")

    def _producer_state(
        self,
        meta: ChannelMeta,
        guard: AppendGuard,
        expires_at: int,
        items: list[dict[str, Any]],
        roles: list[str],
    ) -> None:
        producer = guard.producer
        if producer is None:
            return
        before = guard.producer_before
        condition_values: dict[str, Any] = {":ce": {"S": meta.epoch}}
        if before is None:
            producer_condition = "attribute_not_exists(pk) OR cepoch <> :ce"
        else:
            producer_condition = "cepoch = :ce AND pepoch = :pe AND pseq = :ps"
            condition_values.update({":pe": num(before.epoch), ":ps": num(before.last_seq)})
        items.append(
            {
                "Put": {
                    "TableName": self.channels_table,
                    "Item": {
                        "pk": {"S": producer_key(meta.name, producer.producer_id)},
                        "cepoch": {"S": meta.epoch},
                        "pepoch": num(producer.epoch),
                        "pseq": num(producer.last_seq),
                        # Kept as long as the data it deduplicates.
                        TTL_ATTRIBUTE: num(expires_at),
                    },
                    "ConditionExpression": producer_condition,
                    "ExpressionAttributeValues": condition_values,
                }
            }
        )
        roles.append("state")

    def claim(
        self, meta: ChannelMeta, message_id: str, seq: int, expires_at: int, now_s: int
    ) -> int | None:
        try:
            self.client.put_item(
                TableName=self.channels_table,
                Item={
                    "pk": {"S": claim_key(meta.name, meta.epoch, message_id)},
                    "seq": num(seq),
                    TTL_ATTRIBUTE: num(expires_at),
                },
                ConditionExpression="attribute_not_exists(pk) OR expires_at < :now",
                ExpressionAttributeValues={":now": num(now_s)},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if not is_conflict(error):
                raise
            old: dict[str, Any] | None = error.response.get("Item")  # type: ignore[assignment]
            if old is None:  # held by a transaction, or gone meanwhile: claim it again
                time.sleep(0.005)
                return self.claim(meta, message_id, seq, expires_at, now_s)
            return int(old["seq"]["N"])
        return None

    def move_claim(self, meta: ChannelMeta, message_id: str, from_seq: int, to_seq: int) -> bool:
        try:
            self.client.update_item(
                TableName=self.channels_table,
                Key={"pk": {"S": claim_key(meta.name, meta.epoch, message_id)}},
                UpdateExpression="SET seq = :to",
                ConditionExpression="seq = :from",
                ExpressionAttributeValues={":to": num(to_seq), ":from": num(from_seq)},
            )
        except ClientError as error:
            if is_conflict(error):
                return False
            raise
        return True

    def _transact(self, items: list[dict[str, Any]]) -> None:
        self.client.transact_write_items(TransactItems=items)  # type: ignore[arg-type]

    def get_producer(self, meta: ChannelMeta, producer_id: str) -> ProducerState | None:
        item = self.client.get_item(
            TableName=self.channels_table,
            Key={"pk": {"S": producer_key(meta.name, producer_id)}},
            ConsistentRead=True,
        ).get("Item")
        if not item or item["cepoch"]["S"] != meta.epoch:
            return None  # none yet, or a leftover of a deleted life of the channel
        return ProducerState(producer_id, int(item["pepoch"]["N"]), int(item["pseq"]["N"]))

    def extend_expiry(self, meta: ChannelMeta, stream_expires_at: int) -> None:
        # Already later, or the stream is gone: nothing to do.
        self._update_unless_moot(
            Key={"pk": {"S": meta.name}},
            UpdateExpression=f"SET stream_expires = :sexp, {TTL_ATTRIBUTE} = :mexp",
            ConditionExpression=(
                "epoch = :e AND (attribute_not_exists(stream_expires) OR stream_expires < :sexp)"
            ),
            ExpressionAttributeValues={
                ":e": {"S": meta.epoch},
                ":sexp": num(stream_expires_at),
                ":mexp": num(stream_expires_at + 86400),
            },
        )

    def find_ids(self, meta: ChannelMeta, ids: Sequence[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        wanted = list(dict.fromkeys(ids))
        for start in range(0, len(wanted), 100):
            keys: list[dict[str, Any]] = [
                {"pk": {"S": claim_key(meta.name, meta.epoch, i)}}
                for i in wanted[start : start + 100]
            ]
            request: dict[str, Any] = {
                self.channels_table: {"Keys": keys, "ConsistentRead": True}
            }
            while request:
                response = self.client.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self.channels_table, []):
                    message_id = item["pk"]["S"].split("#", 3)[3]
                    found[message_id] = int(item["seq"]["N"])
                request = dict(response.get("UnprocessedKeys") or {})
        return found

    def find_tokens(
        self, name: str, epoch: str, tokens: frozenset[str], since_ms: int, most: int
    ) -> dict[str, int]:
        # Newest first, only the attributes that matter: a retry's original is among the
        # last few entries (this runs only for retries, never on a first attempt).
        request: dict[str, Any] = {
            "TableName": self.messages_table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": log_key(name, epoch)}},
            "ProjectionExpression": "seq, ts, rt",
            "ScanIndexForward": False,
            "ConsistentRead": True,
        }
        seen, found = 0, dict[str, int]()
        while seen < most and len(found) < len(tokens):
            request["Limit"] = min(100, most - seen)
            response = self.client.query(**request)
            for item in response.get("Items", []):
                if "ts" in item and int(item["ts"]["N"]) < since_ms:
                    return found
                token = item.get("rt", {}).get("S")
                if token in tokens and token not in found:
                    found[token] = int(item["seq"]["N"])
            seen += len(response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                break
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return found

    def read(
        self, name: str, epoch: str, after_seq: int, limit: int, until_seq: int | None = None
    ) -> list[StoredMessage]:
        upper = until_seq if until_seq is not None else 2**63 - 1
        if upper <= after_seq or limit <= 0:
            return []
        response = self.client.query(
            TableName=self.messages_table,
            KeyConditionExpression="pk = :pk AND seq BETWEEN :lo AND :hi",
            ExpressionAttributeValues={
                ":pk": {"S": log_key(name, epoch)}, ":lo": num(after_seq + 1), ":hi": num(upper),
            },
            Limit=limit,
            ConsistentRead=True,
        )
        return [message_from_item(i) for i in response.get("Items", []) if is_message(i)]

    def first_retained(self, name: str, epoch: str, now_s: int, head: int) -> int:
        response = self.client.query(
            TableName=self.messages_table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": log_key(name, epoch)}},
            ProjectionExpression="seq, expires_at, kind",
            Limit=1,
            ConsistentRead=True,
        )
        items = response.get("Items", [])
        if not items or not is_message(items[0]):  # empty, or only a marker left
            return head + 1
        first = int(items[0]["seq"]["N"])
        if int(items[0][TTL_ATTRIBUTE]["N"]) > now_s:
            return first
        # Expired but not yet deleted: messages expire in seq order, so binary-search for the
        # first live one with GetItems (log2 of the expired stretch, not a scan of it).
        lo, hi = first + 1, head + 1
        while lo < hi:
            mid = (lo + hi) // 2
            item = self.client.get_item(
                TableName=self.messages_table,
                Key={"pk": {"S": log_key(name, epoch)}, "seq": num(mid)},
                ProjectionExpression="expires_at",
                ConsistentRead=True,
            ).get("Item")
            if item is not None and int(item[TTL_ATTRIBUTE]["N"]) > now_s:
                hi = mid
            else:
                lo = mid + 1
        return lo


def _append_failure(error: ClientError, roles: list[str]) -> AppendConflictError:
    """What a cancelled append transaction means, from its per-item reasons: a taken seq
    first (the log grew), then claimed ids, else a moved state or a concurrent transaction."""
    reasons: list[dict[str, Any]] = error.response.get("CancellationReasons") or []  # type: ignore[assignment]
    taken: SeqTakenError | None = None
    claims: dict[str, int] = {}
    for role, reason in zip(roles, reasons, strict=False):
        if reason.get("Code") != "ConditionalCheckFailed":
            continue
        old = reason.get("Item")
        if role == "seq" and taken is None:
            taken = SeqTakenError(entry_from_item(old) if old else None)
        elif role.startswith("id:") and old is not None:
            claims[role[3:]] = int(old["seq"]["N"])
    if taken is not None:
        return taken
    if claims:
        return IdsClaimedError(claims)
    return AppendConflictError(cancellation_codes(error))


def _refs(item: dict[str, Any]) -> ForkRefs:
    return ForkRefs(
        frozenset(item.get("forks", {}).get("SS", [])),
        frozenset(item.get("pins", {}).get("SS", [])),
    )
