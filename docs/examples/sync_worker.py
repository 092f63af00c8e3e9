"""A blocking worker: publish with an idempotency key, then export the channel's history."""

import os

from switchboard.client.sync import Switchboard

with Switchboard(os.environ.get("SWITCHBOARD_URL", "http://127.0.0.1:8765")) as sb:
    channel = sb.channel(f"jobs:nightly-{os.getpid()}")
    first = channel.publish({"type": "report", "rows": 42}, id="report-2024-06-01")
    retry = channel.publish({"type": "report", "rows": 42}, id="report-2024-06-01")
    print("stored once:", first.seq == retry.seq and retry.duplicate)
    print("history:", [m.data["rows"] for m in channel.iter_history()])
