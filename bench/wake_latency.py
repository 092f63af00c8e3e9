"""Wake latency on `switchboard dev`: a publish until its webhook is received, verified.

    .venv/bin/python bench/wake_latency.py                    # starts its own dev server
    .venv/bin/python bench/wake_latency.py --count 200 --poll-ms 250
    .venv/bin/python bench/wake_latency.py --url http://127.0.0.1:8765 --api-key dev:…

A webhook subscription (``pattern: lat-<run>/*``) points at a receiver on 127.0.0.1 that
checks every ``Webhook-Signature`` against the server's JWKS (switchboard.webhooks) and
answers ``{"done": true}`` (so each wake acks itself and the next publish wakes again). One
publish at a time over the SDK's WebSocket, then wait for the wake that covers it. The path:
publish -> DynamoDB (moto) -> stream pump (``--stream-poll-ms``) -> wake consumer -> SQS
(moto) -> queue pump (long poll) -> wake job -> signed POST. Emulation only: on AWS the
stream hop (0-250 ms) and the SQS hop (tens of ms) dominate instead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from switchboard.client import Switchboard
from switchboard.webhooks import WebhookVerificationError, WebhookVerifier


class Receiver:
    """A webhook receiver on 127.0.0.1: verifies, records (arrival time, body), answers."""

    def __init__(self, verifier: WebhookVerifier | None = None,
                 answer: bytes = b'{"done": true}') -> None:
        self.verifier = verifier
        self.answer = answer
        self.received: list[tuple[float, dict[str, Any]]] = []
        self.rejected: list[str] = []
        self.unavailable = False  # answer 503 (a receiver that is down) while set
        self.refused = 0
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                at = time.perf_counter()
                if receiver.unavailable:
                    receiver.refused += 1
                    self.send_response(503)
                    self.end_headers()
                    return
                try:
                    assert receiver.verifier is not None
                    wake = receiver.verifier.verify(body, self.headers.get("webhook-signature"))
                except WebhookVerificationError as error:
                    receiver.rejected.append(str(error))
                    self.send_response(401)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(receiver.answer)
                with receiver.arrived:
                    receiver.received.append((at, wake))
                    receiver.arrived.notify_all()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/wake"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, path: str, offset: str, timeout: float = 15.0) -> float | None:
        """The arrival time of the first wake that covers ``offset`` of ``path``."""
        deadline = time.monotonic() + timeout
        with self.arrived:
            while True:
                for at, wake in self.received:
                    for stream in wake.get("streams", []):
                        if stream["path"] == path and stream["tail_offset"] >= offset:
                            return at
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.arrived.wait(left)


async def measure(url: str, count: int, api_key: str | None = None) -> list[float]:
    """Milliseconds from each publish to its webhook's arrival."""
    run = uuid.uuid4().hex[:8]
    verifier = WebhookVerifier(f"{url}/v1/stream/__ds/jwks.json")
    latencies: list[float] = []
    with Receiver(verifier) as receiver:
        async with Switchboard(url, api_key=api_key) as sb:
            await sb.subscriptions.create(f"lat-{run}", pattern=f"lat-{run}/*",
                                          webhook_url=receiver.url)
            try:
                for i in range(count):
                    channel = f"lat-{run}:c{i % 4}"
                    started = time.perf_counter()
                    ack = await sb.channel(channel).publish({"i": i}, id=f"m{i}")
                    arrived = await asyncio.to_thread(
                        receiver.wait_for, channel.replace(":", "/"), ack.offset)
                    if arrived is None:
                        raise RuntimeError(f"no webhook for publish {i} within 15 s")
                    latencies.append((arrived - started) * 1000)
            finally:
                await sb.subscriptions.delete(f"lat-{run}")
    if receiver.rejected:
        raise RuntimeError(f"signatures rejected: {receiver.rejected[:3]}")
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def report(latencies: list[float]) -> str:
    return (f"{len(latencies)} wakes: p50 {percentile(latencies, 50):.0f} ms, "
            f"p99 {percentile(latencies, 99):.0f} ms, mean {statistics.mean(latencies):.0f} ms, "
            f"max {max(latencies):.0f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="an existing server (default: start switchboard dev)")
    parser.add_argument("--api-key")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--poll-ms", type=int, default=50, help="the dev server's "
                        "--stream-poll-ms (when this script starts it)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.url:
        latencies = asyncio.run(measure(args.url, args.count, args.api_key))
    else:
        from tests.support.devserver import running

        with running("--no-agent", "--stream-poll-ms", str(args.poll_ms)) as server:
            latencies = asyncio.run(measure(server.http, args.count, server.api_key))
    if args.json:
        print(json.dumps({"count": len(latencies), "p50_ms": percentile(latencies, 50),
                          "p99_ms": percentile(latencies, 99), "latencies_ms": latencies}))
    else:
        print(report(latencies))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
