"""Least-privilege IAM for each Lambda function, written by hand from the code.

One table of grants feeds two outputs:

- :func:`cloudformation_policy`: the role policy merged into the packaged stack, with exact ARNs
  (``Fn::GetAtt`` on the tables, the stream, the queue; ``Ref`` on the WebSocket API);
- :func:`chalice_policy`: the same actions for ``.chalice/policy-<stage>-<function>.json``,
  which Chalice needs on disk (``autogen_policy`` is off) and which ``chalice deploy`` would use;
  its ARNs are pinned by name because the account, region and API id are unknown there.

Where the actions come from (chalicelib/adapters/dynamodb/, read per call):

- channels:    GetItem (get_channel, fork bookkeeping, leases), PutItem (create_channel, the
               id claims inside ``append``'s transaction, leases), UpdateItem (Durable Streams
               state, fork bookkeeping, leases), DeleteItem (delete_channel), BatchGetItem
               (find_ids), ConditionCheckItem (create_fork and the soft delete check the
               source and its fork bookkeeping without writing them);
- messages:    PutItem (``append``'s transaction), Query (read, first_retained), GetItem
               (first_retained's binary search over expired items);
- connections: PutItem (put_connection, subscribe), UpdateItem (subscribe, unsubscribe, go_live),
               GetItem + BatchWriteItem (delete_connection), DeleteItem (unsubscribe),
               Query (subscribers: fan-out only); presence members, minute lists and the
               sweep cursor (GetItem, PutItem, UpdateItem, DeleteItem, Query, and the
               sweeper's BatchGetItem);
- wakes:       Durable Streams subscriptions (dynamodb/wakes.py): GetItem (get), PutItem (save,
               create's transaction, explicit index), UpdateItem (links), ConditionCheckItem
               (save's transaction), BatchGetItem (links), Query (links, the index),
               DeleteItem + BatchWriteItem (delete, unlink).

TransactWriteItems has no IAM action of its own: each item is authorised as the PutItem,
UpdateItem or ConditionCheckItem it is. Nothing Scans, and no function gets ``dynamodb:*``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

CHANNELS, MESSAGES, CONNECTIONS, WAKES = "channels", "messages", "connections", "wakes"
TABLES = (CHANNELS, MESSAGES, CONNECTIONS, WAKES)

# CloudFormation logical ids of what the grants point at (declared in infra/stack.py).
TABLE_LOGICAL_IDS = {
    CHANNELS: "ChannelsTable",
    MESSAGES: "MessagesTable",
    CONNECTIONS: "ConnectionsTable",
    WAKES: "WakesTable",
}
WEBSOCKET_API_LOGICAL_ID = "WebsocketAPI"  # Chalice's name for the WebSocket API
DLQ_LOGICAL_ID = "FanoutDeadLetterQueue"
SECRET_LOGICAL_ID = "ApiKeysSecret"
# Durable Streams subscriptions: the job queue (deliveries, retries, leases), its dead letters
# (jobs that keep failing, and stream batches the wake consumer gave up on), the signing key.
WAKE_QUEUE_LOGICAL_ID = "WakeJobsQueue"
WAKE_DLQ_LOGICAL_ID = "WakeDeadLetterQueue"
SIGNING_SECRET_LOGICAL_ID = "WebhookSigningSecret"

# What ChannelService does against the store: every function that publishes or reads.
_CHANNEL_SERVICE = {
    CHANNELS: ("GetItem", "PutItem", "UpdateItem", "DeleteItem", "BatchGetItem"),
    MESSAGES: ("GetItem", "PutItem", "Query"),
}
# What WakeService does against the wakes table (stream consumer, jobs, REST routes).
_WAKES = ("GetItem", "PutItem", "UpdateItem", "ConditionCheckItem", "BatchGetItem", "Query")


@dataclass(frozen=True)
class Grants:
    """What one function may do. Table actions are DynamoDB action names without the prefix."""

    tables: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # POST /@connections/{id} (PostToConnection) on this stack's WebSocket API.
    post_to_connections: bool = False
    read_messages_stream: bool = False
    send_to_dlq: bool = False
    # The API keys document (chalicelib/adapters/keys.py): whoever checks an API key or
    # verifies or issues a token signed with one.
    read_api_keys: bool = False
    # Only where no $connect authorizer runs (`chalice deploy`): $connect verifies tokens itself.
    read_api_keys_without_authorizer: bool = False
    # Durable Streams subscriptions: queue wake jobs, consume them (the SQS trigger), read the
    # webhook signing secret, set aside stream batches the wake consumer gave up on.
    send_wake_jobs: bool = False
    consume_wake_jobs: bool = False
    read_signing_key: bool = False
    send_to_wake_dlq: bool = False

    def table_actions(self, table: str) -> list[str]:
        return sorted(f"dynamodb:{a}" for a in set(self.tables.get(table, ())))


def _merge(*parts: Mapping[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    merged: dict[str, set[str]] = {}
    for part in parts:
        for table, actions in part.items():
            merged.setdefault(table, set()).update(actions)
    return {table: tuple(sorted(actions)) for table, actions in merged.items()}


# Presence (adapters/dynamodb/presence.py, in the connections table): enter and heartbeat
# write members and the sweeper's minute lists; a leave deletes the member and unlinks it from
# its connection; members are listed with a Query.
_PRESENCE = {CONNECTIONS: ("GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query")}
_PRESENCE_LEAVE = {CONNECTIONS: ("GetItem", "UpdateItem", "DeleteItem", "Query")}

# Keys are Chalice's function names (the ``lambda_functions`` keys of .chalice/config.json).
FUNCTIONS: dict[str, Grants] = {
    # Every REST route: /v1/channels/* and /v1/stream/* (ChannelService), and the reserved
    # subscription APIs /v1/stream/__ds/* (wakes: delete too; wake jobs for leases and the
    # next wake; the signing secret for the JWKS and wake tokens).
    # Bearer API keys and tokens are checked on every request; POST /v1/tokens signs tokens.
    # Forks and the soft delete check the source and its fork bookkeeping in their
    # transactions (ConditionCheckItem on the channels table).
    "api_handler": Grants(
        tables=_merge(_CHANNEL_SERVICE, _PRESENCE,
                      {CHANNELS: ("ConditionCheckItem",),
                       WAKES: (*_WAKES, "DeleteItem", "BatchWriteItem")}),
        read_api_keys=True, send_wake_jobs=True, read_signing_key=True,
    ),
    # The $connect authorizer verifies the token and hands its claims to every later event.
    "ws_authorizer": Grants(read_api_keys=True),
    # $connect stores the connection item (with the authorizer's claims).
    "websocket_connect": Grants(
        tables={CONNECTIONS: ("PutItem",)}, read_api_keys_without_authorizer=True
    ),
    # $default: publish, subscribe (replay, go live), unsubscribe, replies to the sender;
    # a Gone reply deletes the connection (GetItem + BatchWriteItem).
    # Every frame re-checks that the key behind the connection is not revoked (the key
    # document, cached for at most a minute).
    "websocket_message": Grants(
        tables=_merge(
            _CHANNEL_SERVICE,
            {
                CHANNELS: ("ConditionCheckItem",),
                CONNECTIONS: ("GetItem", "PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem"),
            },
            _PRESENCE,
        ),
        post_to_connections=True,
        read_api_keys=True,
    ),
    # The connection's members leave presence (their leave appended to the presence log).
    "websocket_disconnect": Grants(tables=_merge(_CHANNEL_SERVICE, _PRESENCE_LEAVE, {
        CONNECTIONS: ("GetItem", "BatchWriteItem")})),
    # The stream consumer: find subscribers, post, drop stale subscriptions and gone sockets
    # (whose members leave presence).
    "fanout_records": Grants(
        tables=_merge(_CHANNEL_SERVICE, _PRESENCE_LEAVE, {
            CONNECTIONS: ("Query", "GetItem", "UpdateItem", "DeleteItem", "BatchWriteItem")}),
        post_to_connections=True,
        read_messages_stream=True,
        send_to_dlq=True,
    ),
    # The scheduled sweep of members that stopped heartbeating (their leave logged).
    "presence_sweeper": Grants(tables=_merge(_CHANNEL_SERVICE, _PRESENCE_LEAVE, {
        CONNECTIONS: ("BatchGetItem",)})),
    # The messages stream's second consumer: raise links, start wakes (queue their delivery).
    "wake_records": Grants(
        tables={WAKES: _WAKES}, read_messages_stream=True, send_wake_jobs=True,
        send_to_wake_dlq=True,
    ),
    # The wake queue's consumer: webhook POSTs (signed), wake events appended to a wake
    # stream (ChannelService), retries and lease checks queued again.
    "wake_jobs": Grants(
        tables=_merge(_CHANNEL_SERVICE, {WAKES: _WAKES}), send_wake_jobs=True,
        consume_wake_jobs=True, read_signing_key=True,
    ),
}

# Chalice's CloudFormation logical ids for each function (and its role: ``<id>Role``... except
# the REST handler, whose function is ``APIHandler`` but whose role is ``ApiHandlerRole``).
FUNCTION_LOGICAL_IDS = {
    "api_handler": "APIHandler",
    "ws_authorizer": "WsAuthorizer",
    "websocket_connect": "WebsocketConnect",
    "websocket_message": "WebsocketMessage",
    "websocket_disconnect": "WebsocketDisconnect",
    "fanout_records": "FanoutRecords",
    "presence_sweeper": "PresenceSweeper",
    "wake_records": "WakeRecords",
    "wake_jobs": "WakeJobs",
}
ROLE_LOGICAL_IDS = {
    "api_handler": "ApiHandlerRole",
    "ws_authorizer": "WsAuthorizerRole",
    "websocket_connect": "WebsocketConnectRole",
    "websocket_message": "WebsocketMessageRole",
    "websocket_disconnect": "WebsocketDisconnectRole",
    "fanout_records": "FanoutRecordsRole",
    "presence_sweeper": "PresenceSweeperRole",
    "wake_records": "WakeRecordsRole",
    "wake_jobs": "WakeJobsRole",
}
LOG_GROUP_LOGICAL_IDS = {
    function: role.removesuffix("Role") + "LogGroup" for function, role in ROLE_LOGICAL_IDS.items()
}
# Short, stage-prefixed Lambda names (they also name the log groups the roles may write to).
FUNCTION_NAMES = {
    "api_handler": "rest",
    "ws_authorizer": "ws-authorizer",
    "websocket_connect": "ws-connect",
    "websocket_message": "ws-message",
    "websocket_disconnect": "ws-disconnect",
    "fanout_records": "fanout",
    "presence_sweeper": "presence-sweeper",
    "wake_records": "wake-records",
    "wake_jobs": "wake-jobs",
}

STREAM_READ_ACTIONS = [
    "dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator",
]
# The stream itself is chosen by the event source mapping; ListStreams has no resource-level
# permissions (IAM accepts only "*"), and it lists stream ARNs, not data.
LIST_STREAMS_ACTION = "dynamodb:ListStreams"
LOG_ACTIONS = ["logs:CreateLogStream", "logs:PutLogEvents"]
# What Lambda's SQS event source mapping does with the function's role.
CONSUME_QUEUE_ACTIONS = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
                         "sqs:ChangeMessageVisibility"]


def function_name(app: str, stage: str, function: str) -> str:
    return f"{app}-{stage}-{FUNCTION_NAMES[function]}"


def _statement(sid: str, actions: list[str], resources: list[Any]) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources}


@dataclass(frozen=True)
class _Arns:
    """How to name each resource: intrinsics in the stack, name patterns for Chalice."""

    table: Any
    stream: Any
    connections_api: Any
    dlq: Any
    secret: Any
    wake_queue: Any
    wake_dlq: Any
    signing_secret: Any


def _statements(grants: Grants, arns: _Arns, log_group: Any,
                authorizer: bool) -> list[dict[str, Any]]:
    statements = [_statement("WriteOwnLogs", LOG_ACTIONS, [log_group])]
    for table in TABLES:
        actions = grants.table_actions(table)
        if actions:
            sid = f"{table.capitalize()}Table"
            statements.append(_statement(sid, actions, [arns.table(table)]))
    if grants.read_messages_stream:
        statements.append(_statement("ReadMessagesStream", STREAM_READ_ACTIONS, [arns.stream]))
        statements.append(_statement("ListStreams", [LIST_STREAMS_ACTION], ["*"]))
    if grants.send_to_dlq:
        statements.append(_statement("SetAsideFailedBatches", ["sqs:SendMessage"], [arns.dlq]))
    if grants.send_to_wake_dlq:
        statements.append(_statement("SetAsideFailedWakeBatches", ["sqs:SendMessage"],
                                     [arns.wake_dlq]))
    if grants.send_wake_jobs:
        statements.append(_statement("SendWakeJobs", ["sqs:SendMessage"], [arns.wake_queue]))
    if grants.consume_wake_jobs:
        statements.append(_statement("ConsumeWakeJobs", CONSUME_QUEUE_ACTIONS,
                                     [arns.wake_queue]))
    if grants.read_signing_key:
        statements.append(_statement("ReadWebhookSigningKey", ["secretsmanager:GetSecretValue"],
                                     [arns.signing_secret]))
    if grants.post_to_connections:
        statements.append(
            _statement("PostToConnections", ["execute-api:ManageConnections"],
                       [arns.connections_api])
        )
    if grants.read_api_keys or (grants.read_api_keys_without_authorizer and not authorizer):
        statements.append(
            _statement("ReadApiKeys", ["secretsmanager:GetSecretValue"], [arns.secret])
        )
    return statements


def cloudformation_policy(app: str, stage: str, api_stage: str, function: str) -> dict[str, Any]:
    """The role policy document for ``function`` inside the packaged stack."""
    arns = _Arns(
        table=lambda t: {"Fn::GetAtt": [TABLE_LOGICAL_IDS[t], "Arn"]},
        stream={"Fn::GetAtt": [TABLE_LOGICAL_IDS[MESSAGES], "StreamArn"]},
        connections_api={
            "Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:"
            f"${{{WEBSOCKET_API_LOGICAL_ID}}}/{api_stage}/POST/@connections/*"
        },
        dlq={"Fn::GetAtt": [DLQ_LOGICAL_ID, "Arn"]},
        secret={"Ref": SECRET_LOGICAL_ID},
        wake_queue={"Fn::GetAtt": [WAKE_QUEUE_LOGICAL_ID, "Arn"]},
        wake_dlq={"Fn::GetAtt": [WAKE_DLQ_LOGICAL_ID, "Arn"]},
        signing_secret={"Ref": SIGNING_SECRET_LOGICAL_ID},
    )
    log_group = {
        "Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:"
        f"/aws/lambda/{function_name(app, stage, function)}:*"
    }
    return {"Version": "2012-10-17",
            "Statement": _statements(FUNCTIONS[function], arns, log_group, authorizer=True)}


def table_name(app: str, stage: str, table: str) -> str:
    return f"{app}-{stage}-{table}"


def chalice_policy(app: str, stage: str, api_stage: str, function: str) -> dict[str, Any]:
    """The same grants for .chalice/policy-<stage>-<function>.json (names, not ids: Chalice
    cannot reference the stack's resources, and `chalice deploy` names functions itself;
    nor does it wire the $connect authorizer, so $connect verifies tokens itself there)."""
    arns = _Arns(
        table=lambda t: f"arn:aws:dynamodb:*:*:table/{table_name(app, stage, t)}",
        stream=f"arn:aws:dynamodb:*:*:table/{table_name(app, stage, MESSAGES)}/stream/*",
        connections_api=f"arn:aws:execute-api:*:*:*/{api_stage}/POST/@connections/*",
        dlq=f"arn:aws:sqs:*:*:{app}-{stage}-fanout-dlq",
        secret=f"arn:aws:secretsmanager:*:*:secret:{app}/{stage}/api-keys-*",
        wake_queue=f"arn:aws:sqs:*:*:{app}-{stage}-wake-jobs",
        wake_dlq=f"arn:aws:sqs:*:*:{app}-{stage}-wake-dlq",
        signing_secret=f"arn:aws:secretsmanager:*:*:secret:{app}/{stage}/webhook-signing-*",
    )
    log_group = f"arn:aws:logs:*:*:log-group:/aws/lambda/{app}-{stage}-*:*"
    return {"Version": "2012-10-17",
            "Statement": _statements(FUNCTIONS[function], arns, log_group, authorizer=False)}
