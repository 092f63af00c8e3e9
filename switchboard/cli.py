"""The ``switchboard`` command: ``switchboard dev`` and the client commands.

Client commands (publish, tail, history, info, create, delete) write results to stdout (JSON
lines unless asked otherwise, so they pipe into ``jq``); progress and errors go to stderr. An
error is one readable line and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:  # imported lazily so `switchboard dev` starts without the client stack
    from .client import Message, Switchboard


def main(argv: Sequence[str] | None = None) -> int:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="switchboard", description="Durable, addressable pub/sub channels.",
        epilog="Client commands read SWITCHBOARD_URL, SWITCHBOARD_API_KEY (or "
               "SWITCHBOARD_TOKEN) and SWITCHBOARD_WS_URL. `switchboard COMMAND --help` "
               "describes a command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    dev = commands.add_parser(
        "dev", help="run Switchboard locally over emulated AWS",
        description="Run Switchboard on this machine: the real Lambda handlers behind an "
                    "emulated API Gateway (REST and WebSocket on one port) over emulated "
                    "DynamoDB and DynamoDB Streams (moto), the agent console at / and the "
                    "example agent. Prints the URL and this run's API key once it is ready; "
                    "Ctrl-C stops everything. Nothing is kept between runs.",
    )
    dev.add_argument("--host", default="127.0.0.1",
                     help="interface to listen on (default: %(default)s, this machine only)")
    dev.add_argument("--port", type=int, default=8765,
                     help="port for REST, WebSocket (/ws) and the console "
                          "(default: %(default)s; 0 picks a free port)")
    dev.add_argument("--stream-poll-ms", type=int, default=50, metavar="MS",
                     help="how often the stream pump polls DynamoDB Streams when idle "
                          "(default: %(default)s; AWS Lambda polls about every 250)")
    dev.add_argument(
        "--agent", action=argparse.BooleanOptionalAction, default=True,
        help="also run the example agent behind the console at / (default: on)",
    )
    dev.add_argument(
        "--no-auth", dest="auth", action="store_false",
        help="turn authentication off (anyone who reaches the port can do anything; "
             "default: on, with a fresh API key printed at start)",
    )
    dev.add_argument(
        "--lenient", action="store_true",
        help="relax AWS's limits (frame and message sizes, timeouts, 6 MB responses...) for "
             "hacking; by default the emulator fails where AWS fails",
    )
    add_commands(commands)
    args = parser.parse_args(argv)
    if args.command == "dev":
        from .dev.server import run

        return run(
            host=args.host, port=args.port, stream_poll_ms=args.stream_poll_ms,
            agent=args.agent,
            auth=args.auth,
            lenient=args.lenient,
        )
    if args.command in COMMANDS:
        return run_client(args)
    parser.print_help()
    return 2


DEFAULT_URL = "http://127.0.0.1:8765"
EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


def add_commands(commands: Any) -> None:
    """Register the client subcommands on ``switchboard``'s subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url",
        default=os.environ.get("SWITCHBOARD_URL", DEFAULT_URL),
        help="HTTP base URL (env SWITCHBOARD_URL; default %(default)s)",
    )
    common.add_argument(
        "--ws-url",
        default=os.environ.get("SWITCHBOARD_WS_URL"),
        help="WebSocket URL when it is not <url>/ws, e.g. on AWS (env SWITCHBOARD_WS_URL)",
    )
    common.add_argument(
        "--token",
        default=os.environ.get("SWITCHBOARD_TOKEN"),
        help="a token, or an API key '<key id>:<secret>' (env SWITCHBOARD_TOKEN)",
    )
    common.add_argument(
        "--api-key",
        default=os.environ.get("SWITCHBOARD_API_KEY"),
        metavar="KEY",
        help="an API key '<key id>:<secret>', e.g. the one `switchboard dev` prints "
             "(env SWITCHBOARD_API_KEY; --token wins when both are given)",
    )

    p = commands.add_parser(
        "publish", parents=[common], help="publish one message",
        description="Publish one message. DATA is JSON: '{\"type\": \"steer\"}', 42, "
                    "'\"text\"'. Other text is sent as a JSON string (with a note on "
                    "stderr), except text that looks like broken JSON ({... or [...), which "
                    "is refused; --text sends DATA as a string, as it is.",
    )
    p.add_argument("channel", metavar="CHANNEL", help="channel name, e.g. runs:7f3a")
    p.add_argument("data", metavar="DATA", help="a JSON value (or text, with --text)")
    p.add_argument("--text", action="store_true",
                   help="send DATA as a plain string, even if it parses as JSON")
    p.add_argument("--id", help="idempotency key: publishing the same id again stores "
                                "nothing (default: none; the command's own retries carry a "
                                "request token, so they cannot store the message twice)")

    p = commands.add_parser(
        "tail", parents=[common], help="follow a channel live, resuming across reconnects"
    )
    p.add_argument("channel", metavar="CHANNEL", help="channel name, e.g. runs:7f3a")
    p.add_argument("--from", dest="from_", default="now", metavar="OFFSET",
                   help="'now' (default: only new messages), '-1' (from the beginning) or "
                        "an offset a message carried")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", dest="fmt", action="store_const", const="json",
                     help="one JSON message per line (default when stdout is not a terminal)")
    fmt.add_argument("--pretty", dest="fmt", action="store_const", const="pretty",
                     help="a readable view (default on a terminal)")
    p.add_argument("--count", type=int, help="exit after this many messages")

    p = commands.add_parser(
        "history", parents=[common], help="export stored messages as JSON lines"
    )
    p.add_argument("channel", metavar="CHANNEL", help="channel name, e.g. runs:7f3a")
    p.add_argument("--from", dest="from_", default="-1", metavar="OFFSET",
                   help="'-1' (default: from the beginning) or an offset a message carried")
    p.add_argument("--limit", type=int, help="stop after this many messages (default: all)")
    progress = p.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_const", const=True,
                          help="show progress on stderr (default when stderr is a terminal)")
    progress.add_argument("--no-progress", dest="progress", action="store_const", const=False)

    p = commands.add_parser("info", parents=[common], help="show a channel's metadata")
    p.add_argument("channel", metavar="CHANNEL", help="channel name, e.g. runs:7f3a")

    p = commands.add_parser("create", parents=[common], help="create a channel")
    p.add_argument("channel", metavar="CHANNEL", help="channel name, e.g. runs:7f3a")
    p.add_argument("--retention", type=int, help="seconds messages are kept")

    p = commands.add_parser("delete", parents=[common], help="delete a channel and its log")
    p.add_argument("channel", metavar="CHANNEL", help="channel name, e.g. runs:7f3a")

    from . import cli_subscriptions

    cli_subscriptions.add(commands, common)


COMMANDS = ("publish", "tail", "history", "info", "create", "delete", "subscriptions")


def run_client(args: argparse.Namespace) -> int:
    from . import cli_subscriptions

    handler: Callable[[Switchboard, argparse.Namespace], Awaitable[None]] = {
        "subscriptions": cli_subscriptions.run,
        "publish": _publish,
        "tail": _tail,
        "history": _history,
        "info": _info,
        "create": _create,
        "delete": _delete,
    }[args.command]

    from .client import NotFoundError, Options, Switchboard, SwitchboardError
    from .client._env import split_credential

    if args.command == "publish":
        try:
            args.value = publish_data(args.data, args.text)
        except UsageError as error:
            _fail(f"invalid_request: {error}")
            return EXIT_ERROR

    async def main() -> None:
        # A CLI should fail fast when the server is down, not retry for a minute.
        options = Options(publish_deadline=15.0, http_attempts=3)
        # An API key (id:secret, not a JWT) never goes in a WebSocket URL: the client mints
        # itself tokens with it instead.
        given = split_credential(args.token or args.api_key)
        async with Switchboard(
            args.url, given.token, api_key=given.api_key,
            client_id="cli", ws_url=args.ws_url, options=options,
        ) as client:
            await handler(client, args)

    try:
        asyncio.run(main())
    except NotFoundError as error:
        channel = error.detail.get("channel", getattr(args, "channel", ""))
        _fail(f"{error.code}: Channel {channel!r} does not exist. Create it with "
              f"`switchboard create {channel}`, or publish to it with "
              f"`switchboard publish {channel} DATA`.")
        return EXIT_ERROR
    except SwitchboardError as error:
        _fail(f"{error.code}: {error.message}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `switchboard tail ch | head`: the reader went away; that is a normal end.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (OSError, ValueError) as error:
        _fail(f"{error.__class__.__name__}: {error}")
        return EXIT_ERROR
    return 0


def _fail(line: str) -> None:
    print(f"switchboard: error: {line}", file=sys.stderr)


def _emit(obj: Any, stream: TextIO = sys.stdout) -> None:
    stream.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")
    stream.flush()


class UsageError(Exception):
    """The command line asks for something that cannot be done; the message says why."""


def parse_data(text: str) -> Any:
    """DATA is JSON when it parses as JSON, else the plain string itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def publish_data(text: str, as_text: bool) -> tuple[Any, str | None]:
    """What ``switchboard publish`` sends for DATA, and a note for stderr if any.

    With ``--text`` the string itself; else its JSON value. Text that is not JSON is sent as
    a string, with a note saying so; text that looks like an object or array but does not
    parse is refused, since it was almost certainly meant as JSON (``{'a': 1}``).
    """
    if as_text:
        return text, None
    try:
        return json.loads(text), None
    except ValueError as error:
        reason = str(error)
    if text.lstrip().startswith(("{", "[")):
        raise UsageError(
            f"DATA is not valid JSON ({reason}): {text[:60]!r}. JSON needs double quotes, "
            "e.g. '{\"a\": 1}'; to send the text as a string, add --text."
        )
    note = (f"switchboard: note: DATA is not JSON, so it was sent as the JSON string "
            f"{json.dumps(text, ensure_ascii=False)[:80]} (--text says so and skips this note)")
    return text, note


async def _publish(client: Switchboard, args: argparse.Namespace) -> None:
    value, note = args.value
    ack = await client.http.publish(args.channel, value, args.id)
    if note is not None:
        print(note, file=sys.stderr)
    _emit({"channel": ack.channel, "seq": ack.seq, "offset": ack.offset,
           "duplicate": ack.duplicate})


async def _tail(client: Switchboard, args: argparse.Namespace) -> None:
    fmt = args.fmt or ("pretty" if sys.stdout.isatty() else "json")
    seen = 0
    async with client.channel(args.channel).subscribe(from_=args.from_) as subscription:
        async for message in subscription:
            if fmt == "json":
                _emit(message.to_dict())
            else:
                sys.stdout.write(pretty(message) + "\n")
                sys.stdout.flush()
            seen += 1
            if args.count is not None and seen >= args.count:
                return


def pretty(message: Message) -> str:
    when = datetime.fromtimestamp((message.ts or 0) / 1000).strftime("%H:%M:%S.%f")[:-3]
    data = message.data
    who = f" {message.publisher}" if message.publisher else ""
    raw = message.bytes
    if raw is not None:  # an entry of a Durable Streams byte stream
        preview = raw[:60].decode("utf-8", errors="replace")
        body = f"bytes[{len(raw)}]: {preview!r}{'…' if len(raw) > 60 else ''}"
    elif isinstance(data, dict) and data.get("type") == "token" and isinstance(
        data.get("text"), str
    ):
        body = f"token {data.get('stream', '')}: {data['text']!r}"
    elif isinstance(data, str):
        body = data
    else:
        body = json.dumps(data, ensure_ascii=False)
    return f"#{message.seq:<6} {when}{who}  {body}"


async def _history(client: Switchboard, args: argparse.Namespace) -> None:
    channel = client.channel(args.channel)
    show = sys.stderr.isatty() if args.progress is None else args.progress
    total: int | None = None
    if show:
        info = await channel.info()
        total = info.head_seq if args.limit is None else min(args.limit, info.head_seq)
    written = 0
    last_shown = 0.0
    started = time.monotonic()
    async for message in channel.iter_history(args.from_, page_size=1000):
        _emit(message.to_dict())
        written += 1
        if show and time.monotonic() - last_shown >= 0.2:
            last_shown = time.monotonic()
            _progress(written, total, started)
        if args.limit is not None and written >= args.limit:
            break
    if show:
        _progress(written, total, started, final=True)


def _progress(done: int, total: int | None, started: float, final: bool = False) -> None:
    rate = done / max(time.monotonic() - started, 1e-6)
    of = f" / ~{total:,}" if total else ""
    end = "\n" if final else ""
    sys.stderr.write(f"\rexported {done:,}{of} messages ({rate:,.0f}/s){end}")
    sys.stderr.flush()


async def _info(client: Switchboard, args: argparse.Namespace) -> None:
    info = await client.channel(args.channel).info()
    print(json.dumps(info.raw, indent=2, ensure_ascii=False))


async def _create(client: Switchboard, args: argparse.Namespace) -> None:
    info = await client.channel(args.channel).create(args.retention)
    print(json.dumps(info.raw, indent=2, ensure_ascii=False))


async def _delete(client: Switchboard, args: argparse.Namespace) -> None:
    await client.channel(args.channel).delete()
    print(f"deleted {args.channel}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
