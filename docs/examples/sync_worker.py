"""A blocking worker: publish with an idempotency key, then export the channel's history.

Run it against `make dev` with the key it printed:

    SWITCHBOARD_API_KEY=dev:... python docs/examples/sync_worker.py
"""

import os
import sys

from switchboard.client import SwitchboardError
from switchboard.client.sync import Switchboard

try:
    # Switchboard() reads SWITCHBOARD_URL and SWITCHBOARD_API_KEY (or SWITCHBOARD_TOKEN).
    with Switchboard() as sb:
        channel = sb.channel(f"jobs:nightly-{os.getpid()}")
        first = channel.publish({"type": "report", "rows": 42}, id="report-2024-06-01")
        retry = channel.publish({"type": "report", "rows": 42}, id="report-2024-06-01")
        print("stored once:", first.seq == retry.seq and retry.duplicate)
        print("history:", [m.data["rows"] for m in channel.iter_history()])
except SwitchboardError as error:  # e.g. unauthorized: the key is missing or wrong
    sys.exit(f"sync_worker: {error}")
