"""Publish to a channel, then read it back from the start and resume from a saved offset."""

import asyncio
import os

from switchboard.client import Switchboard


async def main(url: str) -> None:
    async with Switchboard(url) as sb:
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
    asyncio.run(main(os.environ.get("SWITCHBOARD_URL", "http://127.0.0.1:8765")))
