"""The example agent worker: one channel per run, streamed out, listened to, resumable.

The pattern, in the order the code below follows it:

1. **A run is a channel.** Clients ask for a run by publishing ``{"run": id, "prompt": …}``
   on the request channel (``agents:requests``); everything about the run then lives on
   ``runs:<id>``: the prompt, status, thinking, tool calls, the answer's tokens, the user's
   interrupts and steers.
2. **The log is the state.** Before doing anything for a run, the worker reads the run's
   channel. Steps already there are skipped; an answer half written is continued from the
   character where it stops. A worker killed at any moment and started again therefore
   finishes its runs without writing anything twice. Every step has an idempotency id made
   of the run id and the step's name, so even a retried publish stores nothing twice.
3. **Stream out, listen in, on one socket.** The answer goes out through the SDK's token
   streamer (one message per 40 ms window); :class:`switchboard.client.AgentRun` delivers the
   messages addressed to the run (``{"to": id, "type": "interrupt" | "steer"}``) meanwhile.
   An interrupt ends generation before the next token; a steer restarts the model from the
   text written so far with the new instruction.
4. **Say you are alive.** While it serves a run, the worker is a presence member of the run's
   channel with its state (``{"role": "agent", "state": "thinking"}``), updated at each
   status, and leaves when the run ends. A worker that dies without leaving (killed, its
   machine gone) drops out when its socket closes or, at the latest, when its heartbeats stop
   for the presence TTL (40 s): a console watching the channel's presence tells a slow agent
   from a dead one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from switchboard.client import (
    BEGINNING,
    AgentRun,
    Channel,
    Message,
    NotFoundError,
    SwitchboardError,
    TextAssembler,
    stream_text,
)
from switchboard.client import Switchboard as Client

from .models import Model, Steer, model_from_env
from .tools import search_docs

REQUESTS_CHANNEL = "agents:requests"
#: Runs served at once; each holds one subscription on the worker's socket (at most 100).
MAX_RUNS = 32
#: Longest steer instruction the agent acts on (the rest is ignored).
MAX_STEER_CHARS = 200
FINAL_STATES = ("done", "interrupted", "failed")
_RUN_ID = re.compile(r"^[A-Za-z0-9._~@-]{1,128}$")

log = logging.getLogger("examples.agent")


def run_channel(run_id: str) -> str:
    return f"runs:{run_id}"


def answer_stream(run_id: str) -> str:
    return f"{run_id}:answer"


@dataclass
class RunLog:
    """What a run's channel already holds: where a (re)started worker picks up."""

    run_id: str
    prompt: str | None = None
    position: str = BEGINNING  # offset of the last message read
    ids: set[str] = field(default_factory=set)
    written: str = ""  # answer text already published
    answer_done: bool = False
    steers: list[Steer] = field(default_factory=list)  # steers applied, where they applied
    pending: list[Message] = field(default_factory=list)  # controls not yet acted on
    started: bool = False  # the agent has published something for this run
    finished: bool = False

    @classmethod
    async def read(cls, channel: Channel, run_id: str) -> RunLog:
        state = cls(run_id)
        answer = TextAssembler(answer_stream(run_id))
        applied: set[int] = set()
        controls: list[Message] = []
        try:
            async for message in channel.iter_history(BEGINNING):
                state.position = message.offset
                if message.id:
                    state.ids.add(message.id)
                data = message.data if isinstance(message.data, dict) else {}
                state.started = state.started or data.get("from") == run_id
                answer.feed(data)
                kind = data.get("type")
                if kind == "prompt" and state.prompt is None:
                    state.prompt = str(data.get("text", ""))
                elif kind == "steered" and data.get("from") == run_id:
                    state.steers.append(Steer(int(data["at"]), str(data["text"])))
                    applied.add(int(data["steer"]))
                elif kind == "status" and data.get("state") in FINAL_STATES:
                    state.finished = data.get("from") == run_id or state.finished
                elif data.get("to") == run_id and kind in ("steer", "interrupt"):
                    controls.append(message)
        except NotFoundError:
            pass  # nobody has written to the run yet
        state.written, state.answer_done = answer.text, answer.done
        state.pending = [m for m in controls if m.seq not in applied]
        return state


class AgentPresence:
    """The worker's presence on one run's channel: entered with the run's state, updated at
    each status, left at the end. Presence is a courtesy to watchers: updates go out in the
    background (the SDK coalesces them to the channel's update rate, so they never hold a
    token back), and a refused or failed one is logged once and never fails the run."""

    def __init__(self, channel: Channel, run_id: str) -> None:
        self.channel = channel
        self.run_id = run_id
        self.working = True
        self._pending: set[asyncio.Future[str]] = set()

    def show(self, state: str, text: str = "") -> None:
        if not self.working:
            return
        data = {"role": "agent", "run": self.run_id, "state": state, "text": text[:200]}
        update = asyncio.ensure_future(self.channel.presence.update(data))
        self._pending.add(update)
        update.add_done_callback(self._settled)

    def _settled(self, update: asyncio.Future[str]) -> None:
        self._pending.discard(update)
        error = None if update.cancelled() else update.exception()
        if error is not None and self.working:
            self.working = False
            log.warning("run %s: presence off (%s)", self.run_id, error)

    async def leave(self) -> None:
        if self._pending:
            await asyncio.wait(self._pending, timeout=5)
        with contextlib.suppress(SwitchboardError):
            await self.channel.presence.leave()


class Turn:
    """One run, from its log's current state to a final status."""

    def __init__(self, run: AgentRun, state: RunLog, model: Model,
                 presence: AgentPresence | None = None) -> None:
        self.run = run
        self.state = state
        self.model = model
        self.presence = presence
        self.written = state.written
        self.steers = list(state.steers)
        self.waiting: list[Message] = [m for m in state.pending if m.data["type"] == "steer"]
        self.interrupted = any(m.data["type"] == "interrupt" for m in state.pending)
        self.wake = asyncio.Event()  # any control message arrived
        self.stopped = asyncio.Event()  # an interrupt arrived
        if self.waiting or self.interrupted:
            self.wake.set()
        if self.interrupted:
            self.stopped.set()

    async def emit(self, step: str, data: dict[str, Any]) -> bool:
        """Publish a step once: False if the log already has it (a restart)."""
        id = f"{self.run.run_id}:{step}"
        if self.presence is not None:
            if data["type"] == "status":
                self.presence.show(data["state"], data.get("text", ""))
            elif data["type"] == "tool_call":
                self.presence.show("tool", f"Calling {data['name']}")
            elif data["type"] == "tool_result":
                self.presence.show("thinking", "Reading the results")
        if id in self.state.ids:
            return False
        await self.run.send(data, id=id)
        return True

    async def listen(self) -> None:
        """Move messages addressed to the run into this turn's state, as they arrive."""
        while True:
            message = await self.run.receive()
            if message is None:
                continue
            kind = message.data.get("type")
            if kind == "interrupt":
                self.interrupted = True
                self.stopped.set()
            elif kind == "steer" and isinstance(message.data.get("text"), str):
                self.waiting.append(message)
            else:
                log.info("run %s: ignoring a %r message", self.run.run_id, kind)
                continue
            self.wake.set()

    async def pause(self, seconds: float) -> None:
        """Take a model-paced moment (thinking, a tool call); an interrupt cuts it short."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopped.wait(), seconds / self.model.speed)

    async def play(self, prompt: str) -> str:
        """Run the turn to its end; returns the final state."""
        listener = asyncio.create_task(self.listen())
        try:
            return await self._play(prompt)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def _play(self, prompt: str) -> str:
        run_id = self.run.run_id
        await self.emit("prompt", {"type": "prompt", "text": prompt})
        if not self.state.written and not self.interrupted:
            await self._prelude(prompt)
        if not self.state.answer_done:
            if not self.interrupted:
                await self.emit("status:writing", {"type": "status", "state": "writing",
                                                  "text": "Writing the answer"})
            # After a crash the answer goes on from the length already in the log.
            await stream_text(
                self.run.channel, self._chunks(prompt), stream=answer_stream(run_id),
                extra={"from": run_id}, start=len(self.state.written),
            )
        if self.interrupted:
            await self.emit("status:interrupted", {
                "type": "status", "state": "interrupted",
                "text": f"Stopped at your request after {len(self.written)} characters",
            })
            return "interrupted"
        await self.emit("status:done", {"type": "status", "state": "done",
                                        "text": f"Answered in {len(self.written)} characters"})
        return "done"

    async def _prelude(self, prompt: str) -> None:
        """Thinking and one tool call before the answer (skipped where the log has them)."""
        steps: list[tuple[str, dict[str, Any], float]] = [
            ("status:thinking", {"type": "status", "state": "thinking",
                                 "text": "Reading your request"}, 0.3),
            ("thinking:1", {"type": "thinking", "text": (
                f"The question is about “{' '.join(prompt.split())[:80]}”. Before answering "
                "I want the relevant parts of the docs in front of me.")}, 0.5),
        ]
        query = " ".join(re.findall(r"[A-Za-z]{4,}", prompt)[:6]) or "channels"
        hits = search_docs(query)
        steps += [
            ("tool:1:call", {"type": "tool_call", "call": "call-1", "name": "search_docs",
                             "args": {"query": query}}, 0.6),
            ("tool:1:result", {"type": "tool_result", "call": "call-1", "name": "search_docs",
                               "result": {"hits": hits}}, 0.2),
            ("thinking:2", {"type": "thinking", "text": (
                f"{len(hits)} passages look relevant, the best being “{hits[0]['title']}”. "
                "I will explain the pattern in plain words and keep it short.")}, 0.4),
        ]
        for step, data, seconds in steps:
            if self.interrupted:
                return
            if await self.emit(step, data):
                await self.pause(seconds)

    async def _chunks(self, prompt: str) -> AsyncIterator[str]:
        """The model's tokens, restarted on each steer, ended by an interrupt."""
        while not self.interrupted:
            await self._apply_steers()
            tokens = self.model.stream(prompt, self.written, self.steers)
            try:
                while True:
                    token = asyncio.ensure_future(anext(tokens))
                    woken = asyncio.ensure_future(self.wake.wait())
                    await asyncio.wait({token, woken}, return_when=asyncio.FIRST_COMPLETED)
                    woken.cancel()
                    if token.done():
                        try:
                            text = token.result()
                        except StopAsyncIteration:
                            return
                        self.written += text
                        yield text
                    else:
                        token.cancel()
                        with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                            await token
                    if self.wake.is_set():
                        self.wake.clear()
                        break  # an interrupt or a steer: decide again with the new state
            finally:
                await tokens.aclose()  # type: ignore[attr-defined]

    async def _apply_steers(self) -> None:
        while self.waiting and not self.interrupted:
            message = self.waiting.pop(0)
            steer = Steer(len(self.written), str(message.data["text"])[:MAX_STEER_CHARS])
            self.steers.append(steer)
            await self.emit(f"steered:{message.seq}", {
                "type": "steered", "steer": message.seq, "at": steer.at, "text": steer.text,
            })


class Worker:
    """Serves every run requested on ``requests``, resuming the unfinished ones on start."""

    def __init__(
        self,
        url: str,
        *,
        requests: str = REQUESTS_CHANNEL,
        model: Model | None = None,
        max_runs: int = MAX_RUNS,
        api_key: str | None = None,
    ) -> None:
        self.url = url
        # A backend authenticates with an API key; the SDK turns it into short-lived tokens.
        self.api_key = api_key
        self.requests = requests
        self.model = model or model_from_env()
        self._slots = asyncio.Semaphore(max_runs)
        self._seen: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        async with Client(self.url, api_key=self.api_key, client_id="example-agent") as client:
            # From the beginning of the retained log: runs requested while this worker was
            # down are served now, and finished ones cost one history read each.
            async for request in client.channel(self.requests).subscribe(from_=BEGINNING):
                parsed = _parse_request(request)
                if parsed is None or parsed[0] in self._seen:
                    continue
                self._seen.add(parsed[0])
                task = asyncio.create_task(self._serve(client, *parsed))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _serve(self, client: Client, run_id: str, prompt: str) -> None:
        async with self._slots:
            channel = client.channel(run_channel(run_id))
            try:
                state = await RunLog.read(channel, run_id)
                if state.finished:
                    return
                if state.started:
                    log.info("run %s: resuming after %d characters", run_id, len(state.written))
                else:
                    log.info("run %s: started (%s)", run_id, prompt[:60])
                presence = AgentPresence(channel, run_id)
                try:
                    presence.show("starting", "Picked the run up")
                    async with AgentRun(channel, run_id, from_=state.position) as run:
                        final = await Turn(run, state, self.model, presence).play(
                            state.prompt or prompt)
                finally:
                    await presence.leave()
                log.info("run %s: %s", run_id, final)
            except (SwitchboardError, RuntimeError, ValueError, KeyError, TypeError) as error:
                log.warning("run %s failed: %s", run_id, error)
                with contextlib.suppress(SwitchboardError):
                    await channel.publish(
                        {"type": "status", "state": "failed", "from": run_id,
                         "text": f"The agent stopped with an error: {error}"},
                        id=f"{run_id}:status:failed",
                    )


def _parse_request(message: Message) -> tuple[str, str] | None:
    data = message.data
    if not isinstance(data, dict):
        return None
    run_id, prompt = data.get("run"), data.get("prompt")
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id) or not isinstance(prompt, str):
        log.warning("ignoring request seq %d: expected {\"run\": id, \"prompt\": text}",
                    message.seq)
        return None
    return run_id, prompt.strip() or "Say hello"
