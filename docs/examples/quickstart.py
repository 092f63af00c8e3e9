"""Publish to a channel, then read it back from the start and resume from a saved offset.

Run it against `make dev` with the key it printed:

    SWITCHBOARD_API_KEY=dev:... python docs/examples/quickstart.py
"""

import asyncio
import os
import sys

from switchboard.client import Switchboard, SwitchboardError


async def main() -> None:
    # Switchboard() reads SWITCHBOARD_URL (default http://127.0.0.1:8765) and
    # SWITCHBOARD_API_KEY (or SWITCHBOARD_TOKEN); pass url=/api_key=/token= to say otherwise.
    async with Switchboard() as sb:
        channel = sb.channel(f"runs:quickstart-{os.getpid()}")
        for step in ("plan", "search", "answer"):
            await channel.publish({"type": "status", "step": step})

        saved = None
        async with channel.subscribe(from_="-1") as subscription:
            async for message in subscription:
                print(message.seq, message.data["step"])
                saved = subscription.position  # persist this after processing
                if message.data["step"] == "search":
                    break

        # Later (another process, after a crash): continue right after "search".
        await channel.publish({"type": "status", "step": "done"})
        async with channel.subscribe(from_=saved) as subscription:
            async for message in subscription:
                print("resumed:", message.seq, message.data["step"])
                if message.data["step"] == "done":
                    break


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except SwitchboardError as error:  # e.g. unauthorized: the key is missing or wrong
        sys.exit(f"quickstart: {error}")
