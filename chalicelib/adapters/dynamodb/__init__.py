"""The DynamoDB adapters: one store per port, sharing item codecs (items.py)."""

from .items import TTL_ATTRIBUTE, message_from_item, message_item, table_definitions
from .leases import DynamoLeaseStore
from .messages import DynamoMessageStore
from .subscriptions import DynamoSubscriptionStore

__all__ = [
    "TTL_ATTRIBUTE",
    "DynamoLeaseStore",
    "DynamoMessageStore",
    "DynamoSubscriptionStore",
    "message_from_item",
    "message_item",
    "table_definitions",
]
