"""What each Switchboard operation costs on AWS, counted, not timed.

Runs the real services over DynamoDB on moto with a botocore hook that records every call,
derives the capacity units DynamoDB would bill from the items' sizes (moto's own
ConsumedCapacity figures are fixed fakes), and prices them with the public on-demand prices.

    .venv/bin/python bench/costs.py            # prints a markdown report
    .venv/bin/python bench/costs.py --json     # machine-readable

Never benchmark AWS *latency* on moto; operation counts are what transfer.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.update(
    AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
    AWS_REGION="us-east-1", AWS_ACCOUNT_ID_ENDPOINT_MODE="disabled",
    POWERTOOLS_LOG_LEVEL="ERROR", POWERTOOLS_METRICS_DISABLED="true",
)

from chalicelib import bootstrap
from chalicelib.adapters.clock import SystemClock
from chalicelib.adapters.memory import RecordingSender
from chalicelib.core.messages import NewMessage
from chalicelib.core.offsets import parse_start
from chalicelib.core.producers import ProducerRequest
from chalicelib.services.appends import AppendRequest
from chalicelib.services.sessions import WsContext
from chalicelib.services.streams import AppendStream, CreateStream
from chalicelib.settings import Settings
from tests.support.aws import dynamo_store, moto_dynamodb

# Public prices, us-east-1, checked 2026-11 (DynamoDB on-demand after the Nov 2024 cut).
PRICE_WRU = 0.625 / 1e6  # per write request unit
PRICE_RRU = 0.125 / 1e6  # per read request unit
PRICE_WS_MESSAGE = 1.00 / 1e6  # API Gateway WebSocket, per message (32 KB increments)
PRICE_LAMBDA_REQUEST = 0.20 / 1e6
PRICE_LAMBDA_GB_S_ARM = 0.0000133334
PRICE_REST_REQUEST = 3.50 / 1e6  # API Gateway REST API, first 333 M
PRICE_SQS_REQUEST = 0.40 / 1e6  # SQS standard queue, per request (64 KB)
# Lambda's SQS poller: a message is received then deleted (batches share requests at load;
# one each here, the worst case).
SQS_REQUESTS_PER_JOB = 3  # send + receive + delete
# Time a webhook receiver takes to answer, billed as the wake job's duration.
WEBHOOK_ANSWER_S = 0.1


def attribute_size(value: dict[str, Any]) -> int:
    (kind, raw), = value.items()
    if kind == "S":
        return len(str(raw).encode())
    if kind == "N":
        digits = str(raw).lstrip("-").replace(".", "").strip("0") or "0"
        return math.ceil(len(digits) / 2) + 1
    if kind == "B":
        return len(raw)
    if kind in ("SS",):
        return sum(len(s.encode()) for s in raw)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + attribute_size(v) for k, v in raw.items())
    if kind == "L":
        return 3 + sum(attribute_size(v) + 1 for v in raw)
    return 8


def item_size(item: dict[str, Any]) -> int:
    return sum(len(k.encode()) + attribute_size(v) for k, v in item.items())


def write_units(size: int) -> int:
    return max(1, math.ceil(size / 1024))


def read_units(size: int, consistent: bool) -> float:
    units = max(1, math.ceil(size / 4096))
    return float(units) if consistent else units / 2


@dataclass
class Meter:
    calls: Counter[str] = field(default_factory=Counter)
    wru: float = 0.0
    rru: float = 0.0

    def after(self, http_response: Any, parsed: dict[str, Any], model: Any,
              **kwargs: Any) -> None:
        name = model.name
        self.calls[name] += 1
        params = kwargs.get("context", {}).get("sb_params") or {}
        self._account(name, params, parsed)

    def provide(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["sb_params"] = params

    def _account(self, name: str, params: dict[str, Any], parsed: dict[str, Any]) -> None:
        consistent = bool(params.get("ConsistentRead"))
        if name == "PutItem":
            self.wru += write_units(item_size(params["Item"]))
        elif name in ("UpdateItem", "DeleteItem"):
            self.wru += 1  # every item we update or delete is well under 1 KB
        elif name == "TransactWriteItems":
            for entry in params["TransactItems"]:
                (kind, op), = entry.items()
                size = item_size(op["Item"]) if kind == "Put" else 100
                self.wru += 2 * write_units(size)
        elif name == "GetItem":
            self.rru += read_units(item_size(parsed.get("Item", {})), consistent)
        elif name == "Query":
            size = sum(item_size(i) for i in parsed.get("Items", []))
            self.rru += read_units(size, consistent)
        elif name == "BatchGetItem":
            for table, spec in params["RequestItems"].items():
                for item in parsed.get("Responses", {}).get(table, []):
                    self.rru += read_units(item_size(item), spec.get("ConsistentRead", False))
                missing = len(spec["Keys"]) - len(parsed.get("Responses", {}).get(table, []))
                self.rru += missing * read_units(0, spec.get("ConsistentRead", False))
        elif name == "BatchWriteItem":
            for requests in params["RequestItems"].values():
                self.wru += len(requests)

    def snapshot(self) -> tuple[Counter[str], float, float]:
        return Counter(self.calls), self.wru, self.rru

    def since(self, mark: tuple[Counter[str], float, float]) -> dict[str, Any]:
        calls = self.calls - mark[0]
        return {"calls": dict(sorted(calls.items())), "wru": self.wru - mark[1],
                "rru": self.rru - mark[2]}


def per(result: dict[str, Any], n: int) -> dict[str, Any]:
    return {
        "calls": {k: v / n for k, v in result["calls"].items()},
        "wru": result["wru"] / n,
        "rru": result["rru"] / n,
    }


def measure() -> dict[str, Any]:
    results: dict[str, Any] = {}
    with moto_dynamodb() as client:
        meter = Meter()
        client.meta.events.register("provide-client-params.dynamodb.*", meter.provide)
        client.meta.events.register("after-call.dynamodb.*", meter.after)
        store = dynamo_store(client)
        sender = RecordingSender()
        services = bootstrap.build(Settings(auth_enabled=False), store, store, sender,
                                   SystemClock(), rng=random.Random(1))
        data = {"type": "token", "text": "x" * 160}  # ~200-byte message

        def ws(cid: str) -> WsContext:
            return WsContext(cid, "https://example/api")

        def publish(channel: str, **fields: Any) -> None:
            services.sessions.handle(ws("p"), json.dumps(
                {"action": "publish", "channel": channel, "data": data, **fields}))

        n = 50
        # The first publish of a container to a channel reads its metadata and tail (and,
        # for a new log, records that it is written); the next ones know them (a token
        # stream: one publisher, one message after the other).
        mark = meter.snapshot()
        publish("bench:warm")
        results["publish, first of a container (creates the channel)"] = meter.since(mark)

        mark = meter.snapshot()
        for _ in range(n):
            publish("bench:warm")
        results["publish (WebSocket, no id)"] = per(meter.since(mark), n)

        mark = meter.snapshot()
        for i in range(n):
            publish("bench:warm", id=f"m{i}")
        results["publish (WebSocket, with id)"] = per(meter.since(mark), n)

        mark = meter.snapshot()
        publish("bench:warm", id="m0")
        results["publish (WebSocket), a retry of an id already stored"] = meter.since(mark)

        mark = meter.snapshot()
        services.appender.append(AppendRequest(
            "bench:warm",
            [NewMessage(services.channels.encode(data), f"b{i}") for i in range(10)],
            implicit_create=True))
        results["publish (REST batch of 10 with ids), per message"] = per(meter.since(mark), 10)

        # Another container's view is stale: it learns the tail from the failed put.
        other = bootstrap.build(Settings(auth_enabled=False), store, store, sender,
                                SystemClock(), rng=random.Random(2))
        other.sessions.handle(ws("q"), json.dumps(
            {"action": "publish", "channel": "bench:warm", "data": data}))
        publish("bench:warm")
        mark = meter.snapshot()
        other.sessions.handle(ws("q"), json.dumps(
            {"action": "publish", "channel": "bench:warm", "data": data}))
        results["publish after another container wrote (one lost race)"] = meter.since(mark)

        services.streams.create(CreateStream("bench:ds", "application/json", None, None,
                                             False, b""))
        mark = meter.snapshot()
        for _ in range(n):
            services.streams.append(AppendStream("bench:ds", json.dumps([data]).encode(),
                                                 "application/json", False, None, None))
        results["Durable Streams append (one message)"] = per(meter.since(mark), n)

        mark = meter.snapshot()
        for i in range(n):
            services.streams.append(AppendStream(
                "bench:ds", json.dumps([data]).encode(), "application/json", False,
                ProducerRequest("bench", 0, i), None))
        results["Durable Streams append with producer headers"] = per(meter.since(mark), n)

        mark = meter.snapshot()
        services.sessions.connect(ws("s1"))
        results["$connect"] = meter.since(mark)

        mark = meter.snapshot()
        services.sessions.handle(ws("s1"), json.dumps(
            {"action": "subscribe", "channel": "bench:warm"}))
        results["subscribe from now"] = meter.since(mark)

        services.sessions.connect(ws("s2"))
        mark = meter.snapshot()
        services.sessions.handle(ws("s2"), json.dumps(
            {"action": "subscribe", "channel": "bench:warm", "from": "-1", "batch": True}))
        replayed = services.channels.get("bench:warm").head
        results[f"subscribe from -1 (replays {replayed}, batched frames)"] = meter.since(mark)

        for subscribers in (1, 10):
            channel = f"bench:fan{subscribers}"
            services.channels.create(channel)
            for s in range(subscribers):
                services.sessions.connect(ws(f"f{subscribers}-{s}"))
                services.sessions.handle(ws(f"f{subscribers}-{s}"), json.dumps(
                    {"action": "subscribe", "channel": channel}))
            publish(channel)
            meta = services.channels.get(channel)
            stored = services.channels.read_after(meta, 0, 10)
            records = [(str(i), m) for i, m in enumerate(stored)]
            posts_before = sum(len(v) for v in sender.sent.values())
            mark = meter.snapshot()
            services.fanout.fan_out(records)
            cost = meter.since(mark)
            cost["api_gateway_posts"] = sum(len(v) for v in sender.sent.values()) - posts_before
            results[f"fan-out of one message to {subscribers} subscriber(s)"] = cost

        mark = meter.snapshot()
        services.sessions.end_connection("s1")
        results["$disconnect (1 subscription)"] = meter.since(mark)

        results.update(measure_presence(store, meter, sender))
    return results


def measure_presence(store: Any, meter: Meter, sender: RecordingSender) -> dict[str, Any]:
    """Presence: each change writes the member and appends to the presence log; a heartbeat
    is one conditional update (plus the sweeper's minute list when the minute changes)."""
    from chalicelib.adapters.dynamodb import DynamoPresenceStore
    from tests.support.aws import TABLES
    from tests.support.fakes import FakeClock

    results: dict[str, Any] = {}
    clock = FakeClock()
    presence = DynamoPresenceStore(store.messages.client, TABLES[2])
    services = bootstrap.build(Settings(auth_enabled=False), store, store, sender, clock,
                               rng=random.Random(3), presence=presence)
    state = {"role": "agent", "state": "thinking"}

    def frame(cid: str, **fields: Any) -> None:
        services.sessions.handle(WsContext(cid, "https://example/api"), json.dumps(
            {"action": "presence", "channel": "bench:presence", **fields}))

    services.presence.sweep()  # the sweeper runs from the deployment on
    services.sessions.connect(WsContext("m0", "https://example/api"))
    frame("m0", op="enter", data=state)  # the presence log's first write creates it
    for i in range(1, 11):
        services.sessions.connect(WsContext(f"m{i}", "https://example/api"))
    mark = meter.snapshot()
    for i in range(1, 11):
        frame(f"m{i}", op="enter", data=state)
    results["presence enter (WebSocket)"] = per(meter.since(mark), 10)

    clock.advance(1)
    mark = meter.snapshot()
    for i in range(1, 11):
        frame(f"m{i}", op="update", data={"role": "agent", "state": "writing"})
    results["presence update (new data)"] = per(meter.since(mark), 10)

    heartbeats = 40  # ten minutes at the SDKs' 15 s
    mark = meter.snapshot()
    for _ in range(heartbeats):
        clock.advance(15)
        frame("m1", op="heartbeat")
    results["presence heartbeat (average over 10 minutes)"] = per(meter.since(mark), heartbeats)

    mark = meter.snapshot()
    for i in range(2, 11):
        frame(f"m{i}", op="leave")
    results["presence leave"] = per(meter.since(mark), 9)

    mark = meter.snapshot()
    services.presence.members("bench:presence")
    results["presence members (2 present)"] = meter.since(mark)

    mark = meter.snapshot()
    services.sessions.end_connection("m1")
    results["$disconnect of a member (1 channel)"] = meter.since(mark)

    # m0 entered ten minutes ago and never heartbeated: the first sweep removes it.
    mark = meter.snapshot()
    services.presence.sweep()
    results["presence sweep removing one expired member"] = meter.since(mark)

    clock.advance(15)
    mark = meter.snapshot()
    services.presence.sweep()
    results["presence sweep, nothing due"] = meter.since(mark)
    return results


# The SDKs heartbeat every 15 s: 240 heartbeats a member-hour. On AWS the sweeper runs once a
# minute and, while anyone is present, sweeps every 15 s within it (about 45 s of a 128 MB
# function per minute, a fixed cost for the whole deployment, not per member).
HEARTBEATS_PER_HOUR = 3600 // 15
SWEEPER_GB_S_PER_HOUR = 60 * 45 * 0.128


def presence_costs(results: dict[str, Any]) -> dict[str, float]:
    """Dollars per member-hour (WebSocket and HTTP members) and the sweeper's hour."""
    hb = results["presence heartbeat (average over 10 minutes)"]
    ddb = hb["wru"] * PRICE_WRU + hb["rru"] * PRICE_RRU
    lambda_request = PRICE_LAMBDA_REQUEST + 0.256 * 0.010 * PRICE_LAMBDA_GB_S_ARM
    websocket = HEARTBEATS_PER_HOUR * (ddb + lambda_request + PRICE_WS_MESSAGE)
    http = HEARTBEATS_PER_HOUR * (ddb + lambda_request + PRICE_REST_REQUEST)
    sweep = results["presence sweep, nothing due"]
    sweeper = (SWEEPER_GB_S_PER_HOUR * PRICE_LAMBDA_GB_S_ARM + 60 * PRICE_LAMBDA_REQUEST
               + 60 * 4 * sweep["rru"] * PRICE_RRU)
    return {"websocket_member_hour": websocket, "http_member_hour": http,
            "sweeper_hour_while_anyone_is_present": sweeper}
class CountingQueue:
    """The in-memory wake queue, counting what would be SQS sends."""

    def __init__(self, clock: Any) -> None:
        from chalicelib.adapters.memory_wakes import MemoryWakeQueue

        self.queue = MemoryWakeQueue(clock.now_ms)
        self.sent = 0

    def send(self, job: str, delay_ms: int) -> None:
        self.sent += 1
        self.queue.send(job, delay_ms)


class StepClock:
    """Wall time that tests move forward: lease checks come due without waiting."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def now_ms(self) -> int:
        return SystemClock().now_ms() + self.offset_ms

    def sleep(self, seconds: float) -> None:
        self.offset_ms += int(seconds * 1000)


def measure_wakes() -> dict[str, Any]:
    """What one wake costs, per delivery mode: the stream consumer's work, the wake jobs,
    and the consumer's calls (callback, claim, ack), counted on moto."""
    from chalicelib.adapters.memory_wakes import RecordingPoster
    from chalicelib.ports import WebhookResponse

    results: dict[str, Any] = {}
    with moto_dynamodb() as client:
        meter = Meter()
        client.meta.events.register("provide-client-params.dynamodb.*", meter.provide)
        client.meta.events.register("after-call.dynamodb.*", meter.after)
        store = dynamo_store(client)
        clock = StepClock()
        queue = CountingQueue(clock)
        poster = RecordingPoster([WebhookResponse(200, b'{"done": true}')])
        services = bootstrap.build(
            Settings(auth_enabled=False, webhook_signing_seed="bench-" + "s" * 40), store,
            store, RecordingSender(), clock, rng=random.Random(1), wake_store=store.wakes,
            wake_queue=queue, poster=poster)
        wakes = services.wakes
        data = services.channels.encode({"type": "user", "text": "x" * 160})

        def publish(channel: str) -> list[tuple[str, Any]]:
            outcome = services.appender.append(
                AppendRequest(channel, [NewMessage(data)], implicit_create=True))
            meta = services.channels.get(channel)
            return [(str(r.seq), m) for r, m in zip(
                outcome.results, services.channels.read_after(meta, meta.head - 1, 1),
                strict=True)]

        def jobs() -> int:
            ran = 0
            while due := queue.queue.due():
                for job in due:
                    wakes.run_job(job)
                ran += len(due)
            return ran

        def counted(run: Any) -> dict[str, Any]:
            mark, sends = meter.snapshot(), queue.sent
            extra = run() or {}
            cost = meter.since(mark)
            cost["sqs_jobs"] = queue.sent - sends
            cost.update(extra)
            return cost

        # Every stream batch looks up each channel's subscriptions: two Queries, whether or
        # not it has any (the price every publish pays once subscriptions exist).
        records = publish("none:a")
        results["wake consumer, a channel no subscription covers"] = counted(
            lambda: wakes.on_messages(records))

        wakes.put("a", {"type": "webhook", "pattern": "cost/*",
                        "webhook": {"url": "https://hooks.example.com/a"}}, "https://api")
        publish("cost:warm")  # a first message links the stream; the next ones are counted
        wakes.on_messages(publish("cost:warm"))
        jobs()
        records = publish("cost:warm")

        def done_round() -> dict[str, Any]:
            wakes.on_messages(records)  # the stream consumer starts the wake...
            assert jobs() == 1  # ...and one job delivers it; the answer acks it
            return {"lambda_invocations": 2, "rest_requests": 0}

        results["webhook wake answered {done: true}"] = counted(done_round)

        poster.responses = [WebhookResponse(200, b"{}")]
        wakes.put("b", {"type": "webhook", "pattern": "costb/*",
                        "webhook": {"url": "https://hooks.example.com/b"}}, "https://api")
        publish("costb:warm")
        records = publish("costb:warm")

        def callback_round() -> dict[str, Any]:
            wakes.on_messages(records)
            jobs()
            wake = json.loads(poster.posted[-1][1])
            wakes.callback("b", f"Bearer {wake['callback_token']}", {
                "wake_id": wake["wake_id"], "generation": wake["generation"], "done": True,
                "acks": [{"stream": s["path"], "offset": s["tail_offset"]}
                         for s in wake["streams"]]})
            clock.sleep(31)  # the lease check comes due and finds the wake over
            jobs()
            return {"lambda_invocations": 4, "rest_requests": 1}

        results["webhook wake answered {}, then callback done"] = counted(callback_round)

        services.streams.create(CreateStream("wake:pool", "application/json", None, None,
                                             False, b""))
        wakes.put("c", {"type": "pull-wake", "pattern": "costc/*", "wake_stream": "wake/pool"},
                  "https://api")
        publish("costc:warm")
        records = publish("costc:warm")

        def pull_round() -> dict[str, Any]:
            wakes.on_messages(records)
            jobs()  # the wake event is appended to the wake stream...
            meta = services.channels.get("wake:pool")
            event = services.channels.read_after(meta, meta.head - 1, 1)
            wakes.on_messages([("e", m) for m in event])  # ...whose record passes the consumer
            services.channels.read("wake:pool", parse_start("-1"), 100)  # the worker reads it
            claim = wakes.claim("c", {"worker": "w"})
            wakes.ack("c", f"Bearer {claim['token']}", {
                "wake_id": claim["wake_id"], "generation": claim["generation"], "done": True,
                "acks": [{"stream": s["path"], "offset": s["tail_offset"]}
                         for s in claim["streams"]]})
            clock.sleep(31)
            jobs()
            return {"lambda_invocations": 7, "rest_requests": 3}

        results["pull-wake: wake event, claim, ack done"] = counted(pull_round)
    return results


def dollars_per_million_wakes(cost: dict[str, Any], webhook: bool) -> dict[str, float]:
    """A million wakes of one kind (``cost`` from :func:`measure_wakes`)."""
    ddb = cost["wru"] * PRICE_WRU + cost["rru"] * PRICE_RRU
    invocations = cost.get("lambda_invocations", 1)
    calls = sum(cost["calls"].values())
    # 256 MB; ~5 ms per invocation plus ~5 ms per DynamoDB call, and the receiver's answer.
    gb_s = 0.256 * (0.005 * invocations + 0.005 * calls + (WEBHOOK_ANSWER_S if webhook else 0))
    return {
        "dynamodb": ddb * 1e6,
        "sqs": cost["sqs_jobs"] * SQS_REQUESTS_PER_JOB * PRICE_SQS_REQUEST * 1e6,
        "lambda": (invocations * PRICE_LAMBDA_REQUEST + gb_s * PRICE_LAMBDA_GB_S_ARM) * 1e6,
        "api_gateway_rest": cost.get("rest_requests", 0) * PRICE_REST_REQUEST * 1e6,
    }


def wake_report(results: dict[str, Any]) -> str:
    lines = ["| per wake | DynamoDB calls | WRU | RRU | SQS jobs | Lambda | REST |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        calls = ", ".join(f"{k} {v:g}" for k, v in r["calls"].items())
        lines.append(f"| {name} | {calls} | {r['wru']:.2f} | {r['rru']:.2f} | "
                     f"{r['sqs_jobs']} | {r.get('lambda_invocations', 1)} | "
                     f"{r.get('rest_requests', 0)} |")
    lines += ["", "| per million wakes | DynamoDB | SQS | Lambda | API Gateway REST | total |",
              "|---|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        if name.startswith("wake consumer"):
            continue  # per stream batch, not per wake: see the table above
        cost = dollars_per_million_wakes(r, webhook="webhook" in name)
        lines.append(f"| {name} | ${cost['dynamodb']:.2f} | ${cost['sqs']:.2f} | "
                     f"${cost['lambda']:.2f} | ${cost['api_gateway_rest']:.2f} | "
                     f"${sum(cost.values()):.2f} |")
    return "\n".join(lines)


# A token stream (the SDK's stream_text: one message per 40 ms window, 25 a second) meets
# Lambda's four polls a second of the DynamoDB stream: about six messages per fan-out batch,
# which share one Query, one invocation and, for a subscriber that batches, one post.
TOKEN_STREAM_BATCH = 6


def dollars_per_million(
    results: dict[str, Any], subscribers: int, per_batch: int = TOKEN_STREAM_BATCH
) -> dict[str, float]:
    """Cost of one million messages published over WebSocket (with ids) and delivered, when
    ``per_batch`` messages share a fan-out batch (and, batching subscribers, a frame)."""
    publish = results["publish (WebSocket, with id)"]
    fan = results[f"fan-out of one message to {subscribers} subscriber(s)"]
    ddb = (publish["wru"] + fan["wru"] / per_batch) * PRICE_WRU + (
        publish["rru"] + fan["rru"] / per_batch) * PRICE_RRU
    # Inbound publish frame + its ack + the subscribers' frames.
    ws_messages = 2 + subscribers / per_batch
    lambda_requests = 1 + 1 / per_batch
    # 256 MB; ~5 ms of work plus ~5 ms per DynamoDB call (estimates, not measured on AWS).
    publish_calls = sum(publish["calls"].values())
    gb_s = 0.256 * (0.005 + 0.005 * publish_calls + 0.010 * subscribers / 16 / per_batch)
    return {
        "dynamodb": ddb * 1e6,
        "api_gateway_websocket": ws_messages * PRICE_WS_MESSAGE * 1e6,
        "lambda": (lambda_requests * PRICE_LAMBDA_REQUEST + gb_s * PRICE_LAMBDA_GB_S_ARM) * 1e6,
    }


def report(results: dict[str, Any]) -> str:
    lines = ["| operation | DynamoDB calls | WRU | RRU | API GW posts |",
             "|---|---|---:|---:|---:|"]
    for name, r in results.items():
        calls = ", ".join(f"{k} {v:g}" for k, v in r["calls"].items())
        lines.append(f"| {name} | {calls} | {r['wru']:.2f} | {r['rru']:.2f} | "
                     f"{r.get('api_gateway_posts', '')} |")
    lines.append("")
    lines.append("| per million messages (WebSocket publish with id) | DynamoDB | "
                 "API Gateway WS | Lambda | total |")
    lines.append("|---|---:|---:|---:|---:|")
    for subscribers in (1, 10):
        for per_batch, label in ((TOKEN_STREAM_BATCH, "token stream, batched frames"),
                                 (1, "one message per batch and frame")):
            cost = dollars_per_million(results, subscribers, per_batch)
            lines.append(f"| {subscribers} subscriber(s), {label} | ${cost['dynamodb']:.2f} "
                         f"| ${cost['api_gateway_websocket']:.2f} | ${cost['lambda']:.2f} | "
                         f"${sum(cost.values()):.2f} |")
    presence = presence_costs(results)
    lines.append("")
    lines.append("| presence | dollars |")
    lines.append("|---|---:|")
    lines.append(f"| per WebSocket member-hour (heartbeat every 15 s) | "
                 f"${presence['websocket_member_hour']:.6f} |")
    lines.append(f"| per HTTP member-hour (PUT every 15 s) | "
                 f"${presence['http_member_hour']:.6f} |")
    lines.append(f"| the sweeper, per hour while anyone is present (whole deployment) | "
                 f"${presence['sweeper_hour_while_anyone_is_present']:.6f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = measure()
    wakes = measure_wakes()
    if args.json:
        print(json.dumps({"operations": results,
                          "per_million": {s: dollars_per_million(results, s) for s in (1, 10)},
                          "presence": presence_costs(results),
                          "wakes": wakes,
                          "per_million_wakes": {
                              name: dollars_per_million_wakes(r, "webhook" in name)
                              for name, r in wakes.items()}},
                         indent=2))
    else:
        print(report(results))
        print()
        print(wake_report(wakes))


if __name__ == "__main__":
    main()
