"""An agent run streams its answer token by token and listens for a steer on one socket;
a user watching the channel reads the text back and sends the steer."""

import asyncio
import os
from collections.abc import AsyncIterator

from switchboard.client import AgentRun, Switchboard, read_text


async def fake_llm() -> AsyncIterator[str]:
    for word in ["Switchboard", "routes", "messages", "to", "runs", "by", "name", "."]:
        yield word + " "
        await asyncio.sleep(0.01)


async def agent(url: str, name: str) -> None:
    async with Switchboard(url) as sb, AgentRun(sb.channel(name), "run-1") as run:
        await run.stream(fake_llm(), stream="answer")
        steer = await run.receive(timeout=10)  # addressed to us: {"to": "run-1", ...}
        print("agent got:", steer.data["type"] if steer else None)


async def user(url: str, name: str) -> None:
    async with Switchboard(url) as sb:
        channel = sb.channel(name)
        text = "".join([d async for d in read_text(channel, stream="run-1:answer")])
        print("user read:", text.strip())
        await channel.publish({"to": "run-1", "type": "steer", "text": "shorter, please"})


async def main(url: str) -> None:
    name = f"runs:agent-{os.getpid()}"
    await asyncio.gather(agent(url, name), user(url, name))


if __name__ == "__main__":
    asyncio.run(main(os.environ.get("SWITCHBOARD_URL", "http://127.0.0.1:8765")))
