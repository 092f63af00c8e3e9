"""``python -m examples.restate_agent --port 9080``: serve the workflow and its webhook.

Served in-process by hypercorn over HTTP/2 cleartext (Restate's bidirectional protocol) on
127.0.0.1; SIGTERM or SIGINT stop it. Register it with Restate once
(``POST {admin}/deployments {"uri": "http://127.0.0.1:9080"}``); a restart on the same port
needs no new registration.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import hypercorn.asyncio
import hypercorn.config

from .agent import application, subscribe


async def serve(host: str, port: int, public_url: str) -> None:
    config = hypercorn.config.Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await subscribe(public_url)
    print(f"restate agent service ready on http://{host}:{port}", flush=True)
    await hypercorn.asyncio.serve(application(), config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.restate_agent")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9080)
    parser.add_argument("--public-url", help="where Switchboard reaches /wake "
                        "(default http://<host>:<port>)")
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port, args.public_url or f"http://{args.host}:{args.port}"))


if __name__ == "__main__":
    main()
