"""``switchboard subscriptions …``: Durable Streams subscriptions from the command line.

    switchboard subscriptions create agent-runs --pattern 'runs/*' \\
        --webhook https://agents.example.com/wake
    switchboard subscriptions create workers --type pull-wake --pattern 'jobs/*' \\
        --wake-stream wake/pool
    switchboard subscriptions list | get ID | delete ID
    switchboard subscriptions add-stream ID runs/7f3a | remove-stream ID runs/7f3a
    switchboard subscriptions claim workers --worker w1 > wake.json   # pull-wake
    switchboard subscriptions ack --wake wake.json --done               # ack every stream
    switchboard subscriptions release --wake wake.json

Results are JSON on stdout; errors one line on stderr (cli.py runs these).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .client import Switchboard, Wake


def add(commands: Any, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        "subscriptions", parents=[common],
        help="Durable Streams subscriptions: wake a webhook or a worker on new messages",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="create (or confirm) a subscription")
    create.add_argument("id")
    create.add_argument("--type", choices=["webhook", "pull-wake"], default="webhook")
    create.add_argument("--pattern", help="glob over stream paths: 'runs/*', 'runs/**'")
    create.add_argument("--stream", dest="streams", action="append",
                        help="an explicit stream path (repeatable)")
    create.add_argument("--webhook", help="the https:// URL to POST wakes to")
    create.add_argument("--wake-stream", help="pull-wake: the stream wake events go to")
    create.add_argument("--lease-ms", type=int, help="lease, 1000-600000 ms (default 30000)")
    create.add_argument("--description")
    actions.add_parser("list", help="the subscriptions your credentials administer")
    for name, text in (("get", "show a subscription and its streams"),
                       ("delete", "delete a subscription")):
        actions.add_parser(name, help=text).add_argument("id")
    for name, text in (("add-stream", "link a stream explicitly"),
                       ("remove-stream", "unlink an explicit stream")):
        sub = actions.add_parser(name, help=text)
        sub.add_argument("id")
        sub.add_argument("stream")
    claim = actions.add_parser("claim", help="pull-wake: take the pending work (prints it)")
    claim.add_argument("id")
    claim.add_argument("--worker", required=True)
    for name, text in (("ack", "pull-wake: ack a claimed wake (heartbeat without --done)"),
                       ("release", "pull-wake: give a claimed wake back")):
        sub = actions.add_parser(name, help=text)
        sub.add_argument("--wake", required=True,
                         help="the JSON `claim` printed: a file, or - for stdin")
        if name == "ack":
            sub.add_argument("--done", action="store_true",
                             help="ack every stream of the wake and end it")


def _read_wake(source: str) -> Wake:
    from .client import Wake

    text = sys.stdin.read() if source == "-" else Path(source).read_text()
    raw = json.loads(text)
    return Wake(raw["subscription"], raw["wake_id"], int(raw["generation"]), raw["token"],
                list(raw.get("streams") or []), int(raw.get("lease_ttl_ms") or 0))


async def run(client: Switchboard, args: argparse.Namespace) -> None:
    subs = client.subscriptions
    out: Any = None
    if args.action == "create":
        out = await subs.create(
            args.id, type=args.type, pattern=args.pattern, streams=args.streams,
            webhook_url=args.webhook, wake_stream=args.wake_stream,
            lease_ttl_ms=args.lease_ms, description=args.description)
    elif args.action == "list":
        out = await subs.list()
    elif args.action == "get":
        out = await subs.get(args.id)
    elif args.action == "delete":
        await subs.delete(args.id)
    elif args.action == "add-stream":
        await subs.add_streams(args.id, [args.stream])
    elif args.action == "remove-stream":
        await subs.remove_stream(args.id, args.stream)
    elif args.action == "claim":
        wake = await subs.claim(args.id, args.worker)
        out = asdict(wake) if wake is not None else None
        if wake is None:
            print("switchboard: no pending work", file=sys.stderr)
    elif args.action == "ack":
        wake = _read_wake(args.wake)
        next_wake = await subs.ack(wake, wake.acks() if args.done else [], done=args.done)
        out = {"ok": True, "next_wake": next_wake}
    elif args.action == "release":
        await subs.release(_read_wake(args.wake))
    if out is not None:
        sys.stdout.write(json.dumps(out, ensure_ascii=False, indent=2) + "\n")
