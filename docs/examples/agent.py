"""An agent run streams its answer token by token and listens for a steer on one socket;
a user watching the channel, with a token the backend issued for that channel only, reads
the text back and sends the steer.

Run it against `make dev` with the key it printed:

    SWITCHBOARD_API_KEY=dev:... python docs/examples/agent.py
"""

import asyncio
import os
import sys
from collections.abc import AsyncIterator

from switchboard.client import AgentRun, Switchboard, SwitchboardError, read_text


async def fake_llm() -> AsyncIterator[str]:
    for word in ["Switchboard", "routes", "messages", "to", "runs", "by", "name", "."]:
        yield word + " "
        await asyncio.sleep(0.01)


async def agent(sb: Switchboard, name: str) -> None:
    async with AgentRun(sb.channel(name), "run-1") as run:
        await run.stream(fake_llm(), stream="answer")
        steer = await run.receive(timeout=10)  # addressed to us: {"to": "run-1", ...}
        print("agent got:", steer.data["type"] if steer else None)


async def user(token: str, name: str) -> None:
    async with Switchboard(token=token) as sb:  # a browser or CLI would hold this token
        channel = sb.channel(name)
        text = "".join([d async for d in read_text(channel, stream="run-1:answer")])
        print("user read:", text.strip())
        await channel.publish({"to": "run-1", "type": "steer", "text": "shorter, please"})


async def main() -> None:
    name = f"runs:agent-{os.getpid()}"
    # The backend: Switchboard() reads SWITCHBOARD_URL and SWITCHBOARD_API_KEY.
    async with Switchboard() as backend:
        # What your backend hands the user's page: a token for this run's channel only.
        issued = await backend.issue_token(
            "user-1", {name: ["subscribe", "publish", "history"]}, ttl=600
        )
        await asyncio.gather(agent(backend, name), user(issued["token"], name))


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except SwitchboardError as error:  # e.g. unauthorized: the key is missing or wrong
        sys.exit(f"agent: {error}")
