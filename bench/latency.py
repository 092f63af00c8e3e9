"""Publish-to-receive latency and throughput on `switchboard dev` (local emulation only).

    .venv/bin/python bench/latency.py                       # sweeps --stream-poll-ms 10,50,250
    .venv/bin/python bench/latency.py --poll-ms 50 --count 400
    .venv/bin/python bench/latency.py --url http://127.0.0.1:8765   # a server already running

For each poll interval it starts `switchboard dev --port 0 --stream-poll-ms N`, then:

- latency: one publisher sends ``--rate`` messages per second over the WebSocket (without
  waiting for acks), one subscriber receives them; latency is receive time minus send time
  (same clock), through the whole path: publish Lambda -> DynamoDB (moto) -> stream -> pump ->
  fan-out Lambda -> Management API -> socket. Reports p50/p99/max.
- throughput: one publisher pushes ``--burst`` messages with ``--window`` publishes in flight,
  and the subscriber's receive rate is measured from first send to last receive.

These are figures for the local emulation (moto, one process, this machine), not for AWS:
see docs/architecture.md for how the same path behaves there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import websockets

_readers: set[asyncio.Task[None]] = set()  # keep reader tasks referenced until they end
READY = re.compile(r"Switchboard dev server ready: (http://\S+) \(WebSocket: (ws://\S+)\)")


def start_server(poll_ms: int) -> tuple[subprocess.Popen[str], str]:
    script = Path(sys.executable).with_name("switchboard")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "switchboard.cli"]
    process = subprocess.Popen(
        # Transport only: no auth, no example agent competing for the CPU.
        [*command, "dev", "--port", "0", "--stream-poll-ms", str(poll_ms), "--no-auth",
         "--no-agent"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if match := READY.search(line):
            return process, match.group(2)
    process.wait()
    raise SystemExit(f"switchboard dev --stream-poll-ms {poll_ms} did not start")


async def _subscriber(ws_url: str, channel: str) -> tuple[Any, asyncio.Queue[tuple[int, float]]]:
    connection = await websockets.connect(ws_url, max_size=None)
    await connection.send(json.dumps({"action": "subscribe", "ref": "s", "channel": channel}))
    while json.loads(await connection.recv()).get("type") != "subscribed":
        pass
    arrivals: asyncio.Queue[tuple[int, float]] = asyncio.Queue()

    async def read() -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in connection:
                frame = json.loads(raw)
                if frame.get("type") == "message":
                    arrivals.put_nowait((int(frame["data"]["i"]), time.perf_counter()))

    task = asyncio.create_task(read())
    _readers.add(task)
    task.add_done_callback(_readers.discard)
    return connection, arrivals


async def _publisher(ws_url: str) -> tuple[Any, asyncio.Queue[str]]:
    connection = await websockets.connect(ws_url)
    acks: asyncio.Queue[str] = asyncio.Queue()

    async def read() -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in connection:
                acks.put_nowait(json.loads(raw).get("type", "?"))

    task = asyncio.create_task(read())
    _readers.add(task)
    task.add_done_callback(_readers.discard)
    return connection, acks


def _publish_frame(channel: str, i: int) -> str:
    return json.dumps({"action": "publish", "ref": f"p{i}", "channel": channel,
                       "data": {"i": i, "text": "token " * 8}})


async def latency(ws_url: str, rate: float, count: int) -> dict[str, float]:
    channel = f"bench:{uuid.uuid4().hex[:10]}"
    sub, arrivals = await _subscriber(ws_url, channel)
    pub, _acks = await _publisher(ws_url)
    sent: dict[int, float] = {}
    start = time.perf_counter()
    for i in range(count):
        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
        sent[i] = time.perf_counter()
        await pub.send(_publish_frame(channel, i))
    received: dict[int, float] = {}
    deadline = time.perf_counter() + 30
    while len(received) < count and time.perf_counter() < deadline:
        try:
            i, at = await asyncio.wait_for(arrivals.get(), 30)
        except TimeoutError:
            break
        received.setdefault(i, at)
    await pub.close()
    await sub.close()
    samples = sorted((received[i] - sent[i]) * 1000 for i in received)
    return {
        "received": len(samples),
        "p50": statistics.median(samples),
        "p99": samples[min(len(samples) - 1, int(len(samples) * 0.99))],
        "max": samples[-1],
    }


async def throughput(ws_url: str, burst: int, window: int) -> dict[str, float]:
    channel = f"bench:{uuid.uuid4().hex[:10]}"
    sub, arrivals = await _subscriber(ws_url, channel)
    pub, acks = await _publisher(ws_url)
    start = time.perf_counter()
    in_flight = 0
    for i in range(burst):
        if in_flight >= window:
            await acks.get()
            in_flight -= 1
        await pub.send(_publish_frame(channel, i))
        in_flight += 1
    published = time.perf_counter()
    seen: set[int] = set()
    last = start
    while len(seen) < burst:
        try:
            i, last_at = await asyncio.wait_for(arrivals.get(), 30)
        except TimeoutError:
            break
        seen.add(i)
        last = max(last, last_at)
    await pub.close()
    await sub.close()
    return {
        "published_per_s": burst / (published - start),
        "delivered_per_s": len(seen) / (last - start),
        "received": len(seen),
    }


async def measure(ws_url: str, args: argparse.Namespace) -> dict[str, Any]:
    await latency(ws_url, args.rate, 20)  # warm up: first invocations import and connect
    return {
        "latency": await latency(ws_url, args.rate, args.count),
        "throughput": await throughput(ws_url, args.burst, args.window),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--poll-ms", default="10,50,250", help="comma-separated values")
    parser.add_argument("--rate", type=float, default=20.0, help="messages/s for latency")
    parser.add_argument("--count", type=int, default=200, help="messages for latency")
    parser.add_argument("--burst", type=int, default=500, help="messages for throughput")
    parser.add_argument("--window", type=int, default=8, help="publishes in flight")
    parser.add_argument("--url", help="measure this running server instead of starting one")
    args = parser.parse_args()

    print("Local emulation figures (moto, one process), not AWS figures.")
    print(f"latency: 1 publisher -> 1 subscriber at {args.rate:g} msgs/s, {args.count} messages; "
          f"throughput: {args.burst} messages, {args.window} in flight\n")
    print("| stream poll | p50 ms | p99 ms | max ms | published msgs/s | delivered msgs/s |")
    print("|---|---|---|---|---|---|")
    targets: list[tuple[str, str | None]] = []
    if args.url:
        targets.append(("(running server)", args.url.replace("http://", "ws://") + "/ws"))
    else:
        targets.extend((f"{p} ms", None) for p in args.poll_ms.split(","))
    for label, ws_url in targets:
        process = None
        if ws_url is None:
            process, ws_url = start_server(int(label.split()[0]))
        try:
            result = asyncio.run(measure(ws_url, args))
        finally:
            if process is not None:
                process.terminate()
                process.wait(30)
        lat, thr = result["latency"], result["throughput"]
        print(f"| {label} | {lat['p50']:.0f} | {lat['p99']:.0f} | {lat['max']:.0f} "
              f"| {thr['published_per_s']:.0f} | {thr['delivered_per_s']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
