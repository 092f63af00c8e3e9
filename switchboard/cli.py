"""The ``switchboard`` command: ``switchboard dev`` and the client commands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="switchboard", description="Durable, addressable pub/sub channels."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    dev = commands.add_parser("dev", help="run Switchboard locally over emulated AWS")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    dev.add_argument("--stream-poll-ms", type=int, default=50)
    args = parser.parse_args(argv)
    if args.command == "dev":
        from .dev.server import run

        return run(host=args.host, port=args.port, stream_poll_ms=args.stream_poll_ms)
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
