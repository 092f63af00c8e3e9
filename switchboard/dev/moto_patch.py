"""moto's DynamoDB made to behave as DynamoDB does under concurrency, and cheap transactions.

Applied by :func:`install` (the dev server and the tests that use it call it; nothing else
does), before the first request reaches moto. Results and errors are DynamoDB's
(``TransactionCanceledException`` with ``CancellationReasons``, ``TransactionConflictException``).

1. **Concurrency, as on AWS.** ThreadedMotoServer serves each request on its own thread and
   moto's DynamoDB backend has no locks: a conditional write checks and then applies, so two
   concurrent conditional writes on one item could both succeed, and a failed transaction's
   rollback could undo a concurrent request's write. Each request therefore applies
   atomically (``DATA_LOCK``, held only while moto touches its tables: one request's
   effects never interleave with another's, as DynamoDB applies each request). But nothing
   serializes requests beyond that, or conflicts would be impossible: as on DynamoDB, a
   transaction holds its items for the whole time it is in flight (``TRANSACTION_HOLD_S``
   and more, while it waits for its turn), and meanwhile another transaction touching one of
   them is cancelled with ``TransactionConflict`` and a single write to one of them fails
   with ``TransactionConflictException`` ("Transaction conflict handling", DynamoDB
   developer guide). Code that works here copes with what AWS does to it.

2. **Transactions.** ``DynamoDBBackend.transact_write_items`` deep-copies every table a
   transaction touches, on every call, to be able to roll back. The store appends messages
   with TransactWriteItems, so each publish got slower as the log grew (39 transactions/s at
   500 items in the probe). The replacement checks every condition first, against the state
   before the transaction (each item appears at most once in a transaction, so that is the
   state each operation would see), and applies only if all pass. An error while applying
   (for example an invalid update expression) rolls back through an undo log of the few items
   written, and the stream records they produced, instead of whole-table copies.
"""

from __future__ import annotations

import copy
import functools
import threading
import time
from dataclasses import dataclass
from typing import Any

from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import (
    ERROR_TYPE_PREFIX,
    ConditionalCheckFailed,
    DynamodbException,
    MockValidationException,
    MultipleTransactionsException,
    TooManyTransactionsException,
    TransactionCanceledException,
    TransactWriteSingleOpException,
)
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType, Item
from moto.dynamodb.models.table import Table
from moto.dynamodb.responses import DynamoHandler
from moto.dynamodbstreams.responses import DynamoDBStreamsHandler

_OPS = {"ConditionCheck", "Put", "Delete", "Update"}
# DynamoDB refuses a TransactWriteItems request over 4 MB in total (moto does not check; it
# does check the 400 KB item limit). "Amazon DynamoDB transactions" / service quotas.
MAX_TRANSACTION_BYTES = 4 * 1024 * 1024
TRANSACTION_TOO_LARGE = "Transaction request cannot be larger than 4 MB"
_installed = False
_install_lock = threading.Lock()
# Held while a request applies to moto's tables (see the module docstring): never across
# requests, never while a transaction waits.
DATA_LOCK = threading.RLock()
# How long a transaction holds its items before it applies: DynamoDB transactions take
# milliseconds, in which others touching their items conflict.
TRANSACTION_HOLD_S = 0.002
_WRITES = {"put_item": "Put", "update_item": "Update", "delete_item": "Delete"}
_held: dict[tuple[str, str], object] = {}  # item -> the transaction holding it
_held_lock = threading.Lock()


class TransactionConflictException(DynamodbException):
    """A single write to an item a transaction holds (DynamoDB's 400)."""

    error_type = ERROR_TYPE_PREFIX + "TransactionConflictException"

    def __init__(self) -> None:
        super().__init__(self.error_type, "Transaction is ongoing for the item")


@dataclass
class _Undo:
    """What one transaction operation overwrote, to put it back."""

    table: Table
    key: dict[str, Any]
    previous: Item | None
    stream_length: int | None


def _key_of(table: Table, op_type: str, op: dict[str, Any]) -> dict[str, Any]:
    if op_type != "Put":
        return dict(op["Key"])
    attrs = op["Item"]
    key = {table.hash_key_attr: attrs[table.hash_key_attr]}
    if table.range_key_attr is not None:
        key[table.range_key_attr] = attrs[table.range_key_attr]
    return key


def _restore(backend: DynamoDBBackend, undo: _Undo) -> None:
    table = undo.table
    hash_value, range_value = backend.get_keys_value(table, undo.key)
    if undo.previous is None:
        if range_value is not None:
            table.items.get(hash_value, {}).pop(range_value, None)
        else:
            table.items.pop(hash_value, None)
    elif range_value is not None:
        table.items[hash_value][range_value] = undo.previous
    else:
        table.items[hash_value] = undo.previous  # type: ignore[assignment]
    if table.stream_shard is not None and undo.stream_length is not None:
        del table.stream_shard.items[undo.stream_length :]


def _attributes_bytes(attributes: dict[str, Any] | None) -> int:
    """DynamoDB's size of some attributes: names (UTF-8) plus values."""
    return sum(len(str(name).encode()) + DynamoType(value).size()
               for name, value in (attributes or {}).items())


def transaction_bytes(transact_items: list[dict[str, Any]]) -> int:
    """The data a transaction carries: items put, keys, and expression values."""
    total = 0
    for entry in transact_items:
        for op in entry.values():
            if not isinstance(op, dict):
                continue
            total += _attributes_bytes(op.get("Item")) + _attributes_bytes(op.get("Key"))
            total += _attributes_bytes(op.get("ExpressionAttributeValues"))
    return total


def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    """Check every condition, then apply every write; same errors as moto's original (and
    DynamoDB's 4 MB limit on the whole request, which moto lacks)."""
    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    if transaction_bytes(transact_items) > MAX_TRANSACTION_BYTES:
        raise MockValidationException(TRANSACTION_TOO_LARGE)
    seen: set[tuple[str, str]] = set()
    planned: list[tuple[int, str, dict[str, Any], Table, dict[str, Any]]] = []
    errors: list[tuple[str | None, str | None, dict[str, Any] | None]] = []
    for index, entry in enumerate(transact_items):
        if len(entry) > 1:
            raise TransactWriteSingleOpException
        op_type, op = next(iter(entry.items()))
        original: dict[str, Any] | None = None
        try:
            if op_type not in _OPS:
                raise ValueError("Unsupported transaction operation")
            table = self.get_table(op["TableName"])
            key = _key_of(table, op_type, op)
            unique = (str(op["TableName"]), str(dict(sorted(key.items()))))
            if unique in seen:
                raise MultipleTransactionsException()
            seen.add(unique)
            current = self.get_item(op["TableName"], key)
            condition = op.get("ConditionExpression")
            if condition is not None:
                check = get_filter_expression(
                    condition, op.get("ExpressionAttributeNames"),
                    op.get("ExpressionAttributeValues"),
                )
                if not check.expr(current):
                    if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
                        original = current.to_json()["Attributes"]
                    raise ConditionalCheckFailed(item=original)
            planned.append((index, op_type, op, table, key))
            errors.append((None, None, None))
        except MockValidationException:
            raise  # moto answers these as a ValidationException, not a cancellation
        except ConditionalCheckFailed as error:
            errors.append(("ConditionalCheckFailed", str(error.message), original))
        except Exception as error:  # same catch-all as moto: reported as the reason
            errors.append((type(error).__name__, str(error), original))
    if any(code is not None for code, _, _ in errors):
        raise TransactionCanceledException(errors)

    undo: list[_Undo] = []
    failed = -1
    try:
        for index, op_type, op, table, key in planned:
            failed = index
            if op_type == "ConditionCheck":
                continue
            previous = self.get_item(op["TableName"], key)
            shard = table.stream_shard
            undo.append(_Undo(table, key, copy.deepcopy(previous),
                              len(shard.items) if shard is not None else None))
            # Conditions were checked above against this same state: apply unconditionally.
            if op_type == "Put":
                self.put_item(op["TableName"], op["Item"])
            elif op_type == "Delete":
                self.delete_item(op["TableName"], key)
            else:
                self.update_item(
                    op["TableName"], key, update_expression=op["UpdateExpression"],
                    expression_attribute_names=op.get("ExpressionAttributeNames") or {},
                    expression_attribute_values=op.get("ExpressionAttributeValues") or {},
                )
    except Exception as error:
        for step in reversed(undo):
            _restore(self, step)
        if isinstance(error, MockValidationException):
            raise
        raise TransactionCanceledException(
            [(type(error).__name__, str(error), None) if i == failed else (None, None, None)
             for i in range(len(transact_items))]
        ) from None


def _item(handler: DynamoHandler, table_name: str, op_type: str, op: dict[str, Any]) -> (
    tuple[str, str]
):
    table = handler.dynamodb_backend.get_table(table_name)
    key = _key_of(table, op_type, op)
    return table_name, repr(sorted((k, repr(v)) for k, v in key.items()))


def _transaction(method: Any) -> Any:
    """TransactWriteItems: hold every item it touches while in flight; a transaction that
    finds one held by another is cancelled with TransactionConflict at that item."""

    @functools.wraps(method)
    def call(self: DynamoHandler) -> Any:
        entries = self.body.get("TransactItems") or []
        items: list[tuple[str, str] | None] = []
        for entry in entries:
            try:
                op_type, op = next(iter(entry.items()))
                items.append(_item(self, op["TableName"], op_type, op))
            except Exception:
                items.append(None)  # moto's own validation answers for it
        owner = object()
        with _held_lock:
            conflicts = [i for i, item in enumerate(items) if item in _held]
            if not conflicts:
                for item in items:
                    if item is not None:
                        _held[item] = owner
        if conflicts:
            raise TransactionCanceledException(
                [("TransactionConflict", "Transaction is ongoing for the item", None)
                 if i in conflicts else (None, None, None) for i in range(len(items))]
            )
        try:
            time.sleep(TRANSACTION_HOLD_S)
            with DATA_LOCK:
                return method(self)
        finally:
            with _held_lock:
                for item in items:
                    if item is not None and _held.get(item) is owner:
                        del _held[item]

    return call


def _single_write(method: Any, op_type: str) -> Any:
    """PutItem, UpdateItem, DeleteItem: atomic, and refused while a transaction holds the
    item."""

    @functools.wraps(method)
    def call(self: DynamoHandler) -> Any:
        try:
            item: tuple[str, str] | None = _item(self, self.body["TableName"], op_type, self.body)
        except Exception:
            item = None
        with DATA_LOCK:
            with _held_lock:
                if item is not None and item in _held:
                    raise TransactionConflictException()
            return method(self)

    return call


def _atomic(method: Any) -> Any:
    """Every other request (reads, batches, DDL, streams): applied atomically."""

    @functools.wraps(method)
    def call(self: Any) -> Any:
        action = getattr(self, "_get_action", lambda: "")()
        if self.__class__ is DynamoHandler and action in _SELF_LOCKING:
            return method(self)  # its method wrapper takes what it needs
        with DATA_LOCK:
            return method(self)

    return call


_SELF_LOCKING = {"TransactWriteItems", "PutItem", "UpdateItem", "DeleteItem"}


def install() -> None:
    """Patch moto in this process (idempotent)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
        DynamoHandler.transact_write_items = _transaction(  # type: ignore[method-assign]
            DynamoHandler.transact_write_items
        )
        for name, op_type in _WRITES.items():
            setattr(DynamoHandler, name, _single_write(getattr(DynamoHandler, name), op_type))
        DynamoHandler.call_action = _atomic(DynamoHandler.call_action)  # type: ignore[method-assign]
        DynamoDBStreamsHandler.call_action = _atomic(  # type: ignore[method-assign]
            DynamoDBStreamsHandler.call_action
        )
        _installed = True
