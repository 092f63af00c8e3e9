"""``python -m examples.agent``: serve runs until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys

from .models import FakeModel, model_from_env
from .worker import MAX_RUNS, REQUESTS_CHANNEL, Worker


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m examples.agent",
        description="The example agent: serves runs requested on a Switchboard channel.",
    )
    parser.add_argument("--url", default=os.environ.get("SWITCHBOARD_URL",
                                                         "http://127.0.0.1:8765"))
    parser.add_argument("--requests", default=REQUESTS_CHANNEL,
                        help="channel the run requests arrive on (default %(default)s)")
    parser.add_argument("--speed", type=float, default=None,
                        help="fake model pace multiplier (env SWITCHBOARD_AGENT_SPEED)")
    parser.add_argument("--max-runs", type=int, default=MAX_RUNS)
    parser.add_argument("--api-key", default=os.environ.get("SWITCHBOARD_API_KEY"),
                        help="<key id>:<secret> (env SWITCHBOARD_API_KEY; switchboard dev "
                             "passes its key)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s agent: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    model = FakeModel(args.speed) if args.speed is not None else model_from_env()
    worker = Worker(args.url, requests=args.requests, model=model, max_runs=args.max_runs,
                    api_key=args.api_key or None)
    logging.getLogger("examples.agent").info(
        "serving runs requested on %s at %s (model: %s)", args.requests, args.url, model.name)
    return asyncio.run(_serve(worker))


async def _serve(worker: Worker) -> int:
    task = asyncio.create_task(worker.run())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return 0


if __name__ == "__main__":
    sys.exit(main())
