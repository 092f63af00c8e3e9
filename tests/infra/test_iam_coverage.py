"""The hand-written IAM covers every DynamoDB call each function really makes.

Each Lambda entry point runs through chalice.test.Client against moto, with authentication
on and the API keys in (moto's) Secrets Manager, while a botocore ``before-parameter-build``
hook records (function, resource, IAM action) for every DynamoDB and Secrets Manager request;
a transaction is split into the per-item actions IAM checks. Every recorded action must be
granted to that function by infra/iam.py (which the template tests pin to the stack).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from chalice.test import Client

import app as app_module
from chalicelib import bootstrap
from chalicelib.adapters.memory import RecordingSender
from chalicelib.adapters.memory_wakes import RecordingPoster
from chalicelib.adapters.sqs import SqsWakeQueue
from chalicelib.settings import Settings
from infra import iam
from switchboard.dev.rest import ApiGatewayRouteMatcher
from tests.support.aws import TABLES, dynamo_store, moto_dynamodb
from tests.support.events import frame, stream_event, ws_event
from tests.support.fakes import FakeClock

pytestmark = [pytest.mark.infra, pytest.mark.integration]

TABLE_KINDS = dict(zip(TABLES, iam.TABLES, strict=True))
SECRET = "api-keys"  # what the recorder calls the API keys secret
SIGNING = "webhook-signing"  # ... and the webhook signing secret
QUEUE = "wake-jobs"  # ... and the wake job queue
SECRETS = {"sb-api-keys": SECRET, "sb-signing": SIGNING}
KEY_SECRET = "iam-coverage-secret-0123456789abcdef"
KEYS_DOCUMENT = json.dumps({"keys": [{"id": "k1", "secret": KEY_SECRET,
                                      "capabilities": {"*": ["*"]}}]})
BEARER = {"authorization": f"Bearer k1:{KEY_SECRET}"}
_TRANSACT_ACTIONS = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                     "ConditionCheck": "ConditionCheckItem"}


class Recorder:
    """(function, table kind, action) of every DynamoDB request made inside :meth:`running`."""

    def __init__(self) -> None:
        self.function: str | None = None
        self.calls: set[tuple[str, str, str]] = set()

    @contextmanager
    def running(self, function: str) -> Iterator[None]:
        self.function = function
        try:
            yield
        finally:
            self.function = None

    def __call__(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        if self.function is None:
            return
        operation = model.name
        if model.service_model.service_name == "secretsmanager":
            self.calls.add((self.function, SECRETS[params["SecretId"]], operation))
        elif model.service_model.service_name == "sqs":
            self.calls.add((self.function, QUEUE, operation))
        elif operation == "TransactWriteItems":
            for item in params["TransactItems"]:
                ((kind, body),) = item.items()
                self._add(body["TableName"], _TRANSACT_ACTIONS[kind])
        elif operation in ("BatchGetItem", "BatchWriteItem"):
            for table in params["RequestItems"]:
                self._add(table, operation)
        else:
            self._add(params["TableName"], operation)

    def _add(self, table: str, action: str) -> None:
        assert self.function is not None
        self.calls.add((self.function, TABLE_KINDS[table], action))


@pytest.fixture
def world() -> Iterator[tuple[Client, Recorder, RecordingSender, Any]]:
    with moto_dynamodb() as dynamodb:
        recorder = Recorder()
        dynamodb.meta.events.register("before-parameter-build.dynamodb", recorder)
        boto3.client("secretsmanager", region_name="us-east-1").create_secret(
            Name="sb-api-keys", SecretString=KEYS_DOCUMENT)
        # The key ring's Secrets Manager client is created by build() below, from the
        # default session: hook it there. Refresh 0: every check reads, so every reader shows.
        boto3.setup_default_session(region_name="us-east-1")
        boto3.DEFAULT_SESSION.events.register(  # type: ignore[union-attr]
            "before-parameter-build.secretsmanager", recorder)
        boto3.client("secretsmanager", region_name="us-east-1").create_secret(
            Name="sb-signing", SecretString=json.dumps({"seed": "s" * 43}))
        queue_url = boto3.client("sqs", region_name="us-east-1").create_queue(
            QueueName="sb-wake-jobs")["QueueUrl"]
        boto3.DEFAULT_SESSION.events.register(  # type: ignore[union-attr]
            "before-parameter-build.sqs", recorder)
        sender = RecordingSender()
        settings = Settings(channels_table=TABLES[0], messages_table=TABLES[1],
                            connections_table=TABLES[2], wakes_table=TABLES[3],
                            auth_enabled=True, api_keys_secret_id="sb-api-keys",
                            api_keys_refresh_s=0, webhook_signing_secret_id="sb-signing",
                            webhook_signing_refresh_s=0, wake_queue_url=queue_url,
                            replay_page=1)  # so a replay of two messages takes leases
        store = dynamo_store(dynamodb)
        queue = SqsWakeQueue(lambda: boto3.client("sqs", region_name="us-east-1"), queue_url)
        bootstrap.install(bootstrap.build(settings, store, store, sender, FakeClock(),
                                          rng=random.Random(7), wake_store=store.wakes,
                                          wake_queue=queue, poster=RecordingPoster()))
        try:
            with Client(app_module.app) as client:
                client.http._local_gateway.event_converter._route_matcher = (
                    ApiGatewayRouteMatcher(list(app_module.app.routes)))
                yield client, recorder, sender, dynamodb
        finally:
            bootstrap.install(None)
            boto3.DEFAULT_SESSION = None


def _post(client: Client, path: str, body: Any, content_type: str = "application/json") -> Any:
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.http.post(path, body=data, headers={"content-type": content_type, **BEARER})


def _authorized(event: dict[str, Any], claims: str) -> dict[str, Any]:
    """What API Gateway adds to every event of a connection its authorizer allowed."""
    event["requestContext"]["authorizer"] = {"claims": claims, "principalId": "browser"}
    return event


def test_every_dynamodb_call_is_granted_to_the_function_making_it(world: Any) -> None:
    client, recorder, sender, dynamodb = world
    ws = client.lambda_

    with recorder.running("api_handler"):
        assert client.http.put("/v1/channels/runs:a", body=json.dumps({"retention": 3600}),
                               headers={"content-type": "application/json", **BEARER}
                               ).status_code == 201
        assert _post(client, "/v1/channels/runs:a/messages",
                     [{"data": 1, "id": "x"}, {"data": 2}]).status_code == 201
        # A repeated id loses the transaction and is looked up (BatchGetItem).
        assert _post(client, "/v1/channels/runs:a/messages",
                     {"data": 1, "id": "x"}).status_code == 200
        assert client.http.get("/v1/channels/runs:a", headers=BEARER).status_code == 200
        assert client.http.get("/v1/channels/runs:a/messages?from=-1",
                               headers=BEARER).status_code == 200
        assert client.http.put("/v1/stream/s1", body=b"", headers={
            "content-type": "application/json", **BEARER}).status_code == 201
        assert _post(client, "/v1/stream/s1", [{"a": 1}]).status_code == 204
        assert client.http.head("/v1/stream/s1", headers=BEARER).status_code == 200
        # A fork (its source's bookkeeping item, a check of the source), a long-poll (its
        # lease), a soft delete of the forked source, then the fork's delete collecting it.
        assert client.http.put("/v1/stream/s2", body=b"", headers={
            "stream-forked-from": "/v1/stream/s1", **BEARER}).status_code == 201
        assert client.http.get("/v1/stream/s2?offset=-1&live=long-poll",
                               headers=BEARER).status_code == 200
        assert client.http.delete("/v1/stream/s1", headers=BEARER).status_code == 204
        assert client.http.delete("/v1/stream/s2", headers=BEARER).status_code == 204
        assert client.http.delete("/v1/channels/runs:a", headers=BEARER).status_code == 204
        # A backend in presence over HTTP: enter, heartbeat, list, leave.
        for body in (b'{"data":{"state":"x"}}', b""):
            assert client.http.put("/v1/channels/runs:p/presence/w1", body=body, headers={
                "content-type": "application/json", **BEARER}).status_code == 200
        assert client.http.get("/v1/channels/runs:p/presence", headers=BEARER
                               ).status_code == 200
        assert client.http.delete("/v1/channels/runs:p/presence/w1", headers=BEARER
                                  ).status_code == 204
        assert client.http.put("/v1/channels/runs:p/presence/w2", body=b'{"data":{}}',
                               headers={"content-type": "application/json", **BEARER}
                               ).status_code == 200
        issued = _post(client, "/v1/tokens", {"client_id": "browser",
                                              "capabilities": {"runs:*": ["*"]}})
        assert issued.status_code == 201, issued.body
        token = json.loads(issued.body)["token"]

    with recorder.running("ws_authorizer"):
        allowed = ws.invoke("ws_authorizer", {
            "type": "REQUEST", "methodArn": "arn:aws:execute-api:us-east-1:1:abc/api/$connect",
            "queryStringParameters": {"token": token}, "headers": {},
            "requestContext": {"routeKey": "$connect", "eventType": "CONNECT"},
        }).payload
    claims = allowed["context"]["claims"]

    def event(route: str, connection: str, body: str | None = None) -> dict[str, Any]:
        return _authorized(ws_event(route, connection, body), claims)

    with recorder.running("websocket_connect"):
        for connection in ("c1", "c2", "c3"):
            assert ws.invoke("connect", event("$connect", connection)).payload == {
                "statusCode": 200}

    with recorder.running("websocket_message"):
        for n in (1, 2):
            ws.invoke("message", event("$default", "c2", frame(
                action="publish", ref=f"b{n}", channel="runs:b", data={"n": n})))
        for connection in ("c1", "c3"):
            ws.invoke("message", event("$default", connection, frame(
                action="subscribe", ref="s", channel="runs:b", **{"from": "-1"})))
        ws.invoke("message", event("$default", "c2", frame(
            action="publish", ref="p", channel="runs:b", data={"n": 1}, id="m1")))
        ws.invoke("message", event("$default", "c2", frame(action="ping", ref="q")))
        ws.invoke("message", event("$default", "c3", frame(
            action="unsubscribe", ref="u", channel="runs:b")))
        for connection in ("c1", "c3"):
            ws.invoke("message", event("$default", connection, frame(
                action="presence", ref="e", op="enter", channel="runs:b", data={"s": 1})))
        ws.invoke("message", event("$default", "c3", frame(
            action="presence", ref="h", op="heartbeat", channel="runs:b")))
        ws.invoke("message", event("$default", "c2", frame(
            action="subscribe", ref="w", channel="runs:b", presence=True)))
        sender.gone.add("c2")  # a reply to a closed socket deletes its connection
        ws.invoke("message", event("$default", "c2", frame(action="ping", ref="r")))
        sender.gone.discard("c2")
    subscribed = [json.loads(f)["type"] for f in sender.sent["c1"]]
    assert subscribed[0] == "subscribed", subscribed

    items = [i for i in dynamodb.scan(TableName=TABLES[1])["Items"]
             if i.get("channel", {}).get("S") == "runs:b"]
    assert items
    sender.gone.add("c1")  # the fan-out finds c1 gone and cleans it up
    with recorder.running("fanout_records"):
        result = ws.invoke("fanout_records", stream_event(items)).payload
    assert result == {"batchItemFailures": []}

    with recorder.running("websocket_disconnect"):
        ws.invoke("disconnect", event("$disconnect", "c3"))

    # The HTTP member w2 stops heartbeating: a sweep well past its expiry removes it.
    bootstrap.built().presence.clock.advance(120)  # type: ignore[union-attr]
    with recorder.running("presence_sweeper"):
        swept = ws.invoke("presence_sweeper", client.events.generate_cw_event(
            source="aws.events", detail_type="Scheduled Event", detail={}, resources=[]))
    assert swept.payload["removed"] >= 1, swept.payload
    _subscriptions(client, recorder, dynamodb)

    functions_seen = {function for function, _, _ in recorder.calls}
    assert functions_seen == set(iam.FUNCTIONS), "the scenario must exercise every function"
    missing = sorted(
        f"{function}: {action} on {resource}"
        for function, resource, action in recorder.calls
        if not _granted(iam.FUNCTIONS[function], resource, action)
    )
    assert not missing, "infra/iam.py does not grant: " + "; ".join(missing)
    # The transactions really were split into their per-item actions.
    assert ("api_handler", iam.CHANNELS, "PutItem") in recorder.calls
    assert ("websocket_message", iam.MESSAGES, "Query") in recorder.calls
    assert ("fanout_records", iam.CONNECTIONS, "Query") in recorder.calls
    assert ("fanout_records", iam.CONNECTIONS, "BatchWriteItem") in recorder.calls
    assert ("ws_authorizer", SECRET, "GetSecretValue") in recorder.calls
    # Frames re-check the key; forks check their source inside the transaction.
    assert ("websocket_message", SECRET, "GetSecretValue") in recorder.calls
    assert ("api_handler", iam.CHANNELS, "ConditionCheckItem") in recorder.calls
    assert ("wake_jobs", SIGNING, "GetSecretValue") in recorder.calls
    assert ("wake_records", QUEUE, "SendMessage") in recorder.calls
    assert ("api_handler", iam.WAKES, "ConditionCheckItem") in recorder.calls


def _subscriptions(client: Client, recorder: Recorder, dynamodb: Any) -> None:
    """Durable Streams subscriptions: the REST routes, the stream consumer, the job queue."""
    sqs = boto3.client("sqs", region_name="us-east-1")
    queue_url = sqs.get_queue_url(QueueName="sb-wake-jobs")["QueueUrl"]
    subs = "/v1/stream/__ds/subscriptions"

    def put(path: str, body: Any) -> Any:
        return client.http.put(path, body=json.dumps(body) if not isinstance(body, str)
                               else body, headers={"content-type": "application/json", **BEARER})

    def jobs() -> None:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get(
            "Messages", [])
        with recorder.running("wake_jobs"):
            result = client.lambda_.invoke("wake_jobs", {"Records": [
                {"messageId": m["MessageId"], "body": m["Body"]} for m in messages]}).payload
        assert messages and result == {"batchItemFailures": []}
        for m in messages:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])

    with recorder.running("api_handler"):
        assert put("/v1/stream/wake/pool", "[]").status_code == 201
        assert put(f"{subs}/hook", {"type": "webhook", "pattern": "runs/*",
                                    "streams": ["runs/x"],
                                    "webhook": {"url": "https://hooks.example.com/w"}}
                   ).status_code == 201
        assert put(f"{subs}/pull", {"type": "pull-wake", "pattern": "runs/*",
                                    "wake_stream": "wake/pool"}).status_code == 201
        assert client.http.get(f"{subs}/hook", headers=BEARER).status_code == 200
        assert client.http.get("/v1/stream/__ds/jwks.json").status_code == 200
        assert _post(client, "/v1/channels/runs:c/messages", {"data": 1}).status_code == 201
    items = [i for i in dynamodb.scan(TableName=TABLES[1])["Items"]
             if i.get("channel", {}).get("S") == "runs:c"]
    with recorder.running("wake_records"):
        assert client.lambda_.invoke("wake_records", stream_event(items)).payload == {
            "batchItemFailures": []}
    jobs()  # the webhook is posted (answered {}: a lease job follows), the wake event written
    with recorder.running("api_handler"):
        claim = _post(client, f"{subs}/pull/claim", {"worker": "w"})
        assert claim.status_code == 200, claim.body
        claimed = json.loads(claim.body)
        done = client.http.post(f"{subs}/pull/ack", body=json.dumps({
            "wake_id": claimed["wake_id"], "generation": claimed["generation"], "done": True,
            "acks": [{"stream": s["path"], "offset": s["tail_offset"]}
                     for s in claimed["streams"]]}),
            headers={"content-type": "application/json",
                     "authorization": f"Bearer {claimed['token']}"})
        assert done.status_code == 200, done.body
        assert _post(client, f"{subs}/hook/streams", {"streams": ["runs/y"]}
                     ).status_code == 204
        assert client.http.delete(f"{subs}/hook/streams/runs%2Fy",
                                  headers=BEARER).status_code == 204
        assert client.http.delete(f"{subs}/hook", headers=BEARER).status_code == 204


def _granted(grants: iam.Grants, resource: str, action: str) -> bool:
    if resource == SECRET:
        return action == "GetSecretValue" and grants.read_api_keys
    if resource == SIGNING:
        return action == "GetSecretValue" and grants.read_signing_key
    if resource == QUEUE:
        return action == "SendMessage" and grants.send_wake_jobs
    return f"dynamodb:{action}" in grants.table_actions(resource)
