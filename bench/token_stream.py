"""Writes per second the token streamer produces for an LLM emitting 100 tokens/s.

Starts `switchboard dev --port 0` (or uses --url), streams --tokens chunks at --rate per
second through `stream_text` for each window, and reports writes/s and tokens per write.

    .venv/bin/python bench/token_stream.py            # 500 tokens at 100/s, windows 0/40/100 ms
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

from switchboard.client import Switchboard, stream_text

READY = re.compile(r"ready: (http://\S+) ")


@contextmanager
def dev_server() -> Iterator[str]:
    entry = Path(sys.executable).parent / "switchboard"
    process = subprocess.Popen(
        [str(entry), "dev", "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    try:
        for line in process.stdout:
            if match := READY.search(line):
                # Keep draining its log so the server never blocks on a full pipe.
                threading.Thread(target=process.stdout.read, daemon=True).start()
                yield match.group(1)
                return
        raise SystemExit("switchboard dev exited before it was ready")
    finally:
        process.terminate()
        process.wait(10)


async def llm(tokens: int, rate: float) -> AsyncIterator[str]:
    start = time.monotonic()
    for i in range(tokens):
        # Paced against the clock, so slow iterations do not lower the rate.
        await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
        yield f" tok{i}"


async def measure(url: str, tokens: int, rate: float, window: float) -> dict[str, float]:
    async with Switchboard(url) as sb:
        channel = sb.channel(f"bench:{uuid.uuid4().hex[:8]}")
        await channel.publish({"type": "warmup"})  # open the socket outside the timing
        started = time.monotonic()
        result = await stream_text(channel, llm(tokens, rate), stream="s", window=window)
        elapsed = time.monotonic() - started
    return {
        "window_ms": window * 1000,
        "tokens": result.chunks,
        "seconds": round(elapsed, 2),
        "tokens_per_s": round(result.chunks / elapsed, 1),
        "writes": result.messages + 1,  # + the done marker
        "writes_per_s": round((result.messages + 1) / elapsed, 1),
        "tokens_per_write": round(result.chunks / result.messages, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running server (default: start switchboard dev)")
    parser.add_argument("--tokens", type=int, default=500)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--windows", default="0,40,100", help="milliseconds, comma-separated")
    args = parser.parse_args()
    windows = [float(w) / 1000 for w in args.windows.split(",")]

    async def run(url: str) -> None:
        for window in windows:
            print(json.dumps(await measure(url, args.tokens, args.rate, window)), flush=True)

    if args.url:
        asyncio.run(run(args.url))
    else:
        with dev_server() as url:
            asyncio.run(run(url))


if __name__ == "__main__":
    main()
