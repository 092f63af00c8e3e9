"""The DynamoDB adapters: one store per port, sharing item codecs (items.py).

``DynamoWakeStore`` lives in ``.wakes`` and is imported from there, only by what uses
Durable Streams subscriptions: the other functions' cold starts skip core/wakes.py.
"""

from .items import TTL_ATTRIBUTE, message_from_item, message_item, table_definitions
from .leases import DynamoLeaseStore
from .messages import DynamoMessageStore
from .presence import DynamoPresenceStore
from .subscriptions import DynamoSubscriptionStore

__all__ = [
    "TTL_ATTRIBUTE",
    "DynamoLeaseStore",
    "DynamoMessageStore",
    "DynamoPresenceStore",
    "DynamoSubscriptionStore",
    "message_from_item",
    "message_item",
    "table_definitions",
]
