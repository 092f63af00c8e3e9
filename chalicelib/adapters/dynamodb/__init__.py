"""The DynamoDB adapters: one store per port, sharing item codecs (items.py)."""

from .items import TTL_ATTRIBUTE, message_from_item, message_item, table_definitions
from .leases import DynamoLeaseStore
from .messages import DynamoMessageStore
from .presence import DynamoPresenceStore
from .subscriptions import DynamoSubscriptionStore
from .wakes import DynamoWakeStore

__all__ = [
    "TTL_ATTRIBUTE",
    "DynamoLeaseStore",
    "DynamoMessageStore",
    "DynamoPresenceStore",
    "DynamoSubscriptionStore",
    "DynamoWakeStore",
    "message_from_item",
    "message_item",
    "table_definitions",
]
