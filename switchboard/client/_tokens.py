"""Token streaming for agents, the reader that puts the text back together, and the agent's
inbox for messages addressed to its run.

Conventions (the browser client reads the same shapes):

* A text stream is a series of messages ``{"type": "token", "stream": S, "start": N,
  "text": T}`` where ``N`` is the character offset of ``T`` in the whole text, closed by
  ``{"type": "done", "stream": S, "start": L, "length": L}`` (plus ``"error"`` if the
  producer failed). The idempotency id of each message is ``"{S}:{N}"`` (``"{S}:done"`` for
  the marker), so a producer that restarts and re-publishes the same text under the same
  stream id stores nothing twice where windows line up, and the reader trims any overlap by
  offset where they do not: the reassembled text is exact either way.
* A message is addressed to a run when its data is an object with ``"to": <run id>``
  (``{"to": "run-7", "type": "interrupt"}``, ``"steer"`` with ``"text"``, ``"approve"``
  with ``"call"``...). A run's own messages carry ``"from": <run id>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from ._client import Channel, Subscription
from ._types import NOW, Message

DEFAULT_WINDOW = 0.040
#: Characters per message, far below the 32 KB frame limit even for 4-byte characters.
MAX_CHARS = 4_000

_END = object()


@dataclass(frozen=True)
class StreamResult:
    stream: str
    text: str
    messages: int  # token messages published (the done marker not included)
    chunks: int  # chunks read from the source


async def stream_text(
    channel: Channel,
    chunks: AsyncIterable[str],
    *,
    stream: str,
    window: float = DEFAULT_WINDOW,
    extra: dict[str, Any] | None = None,
    max_chars: int = MAX_CHARS,
    start: int = 0,
) -> StreamResult:
    """Publish an async iterator of text chunks coalesced into one message per ``window``.

    At 100 tokens/s and the default 40 ms window that is at most 25 writes/s; each publish
    waits for its ack, so order is preserved and a slow server only makes windows fuller.
    ``extra`` is merged into every message (e.g. ``{"from": run_id}``).

    Ids are ``{stream}:{character offset}``. A producer restarted after a crash passes
    ``start`` = the length of the text already in the log and only the rest of the chunks:
    its messages then continue the stream instead of colliding with the first window's id.

    Examples:
        >>> result = await stream_text(ch, llm_tokens(), stream="run-7:answer")  # doctest: +SKIP
    """
    queue: asyncio.Queue[object] = asyncio.Queue()
    failure: list[BaseException] = []

    async def pump() -> None:
        try:
            async for chunk in chunks:
                if chunk:
                    queue.put_nowait(chunk)
        except Exception as exc:  # reported on the channel, then re-raised to the caller
            failure.append(exc)
        finally:
            queue.put_nowait(_END)

    base = dict(extra or {})
    reader = asyncio.create_task(pump())
    text: list[str] = []
    offset = start
    messages = 0
    count = 0
    try:
        ended = False
        while not ended:
            item = await queue.get()
            if item is _END:
                break
            pending = [str(item)]
            size = len(pending[0])
            deadline = time.monotonic() + window
            while size < max_chars:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(queue.get(), remaining)
                except TimeoutError:
                    break
                if item is _END:
                    ended = True
                    break
                pending.append(str(item))
                size += len(pending[-1])
            count += len(pending)
            piece = "".join(pending)
            await channel.publish(
                {**base, "type": "token", "stream": stream, "start": offset, "text": piece},
                id=f"{stream}:{offset}",
            )
            text.append(piece)
            offset += len(piece)
            messages += 1
        done: dict[str, Any] = {
            **base, "type": "done", "stream": stream, "start": offset, "length": offset,
        }
        if failure:
            done["error"] = f"{failure[0].__class__.__name__}: {failure[0]}"
        await channel.publish(done, id=f"{stream}:done")
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    if failure:
        raise failure[0]
    return StreamResult(stream, "".join(text), messages, count)


class TextAssembler:
    """Rebuilds streamed text from token messages, trimming overlap by character offset.

    Feed it every message of the channel; it ignores other streams and other types.
    """

    def __init__(self, stream: str | None = None) -> None:
        self.stream = stream
        self.parts: list[str] = []
        self.length = 0
        self.done = False
        self.error: str | None = None

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def feed(self, data: Any) -> str:
        """Return the new text this message adds ("" if none)."""
        if not isinstance(data, dict) or data.get("type") not in ("token", "done"):
            return ""
        if self.stream is None and isinstance(data.get("stream"), str):
            self.stream = data["stream"]  # follow the first stream seen
        if data.get("stream") != self.stream or self.done:
            return ""
        start = data.get("start")
        if not isinstance(start, int):
            return ""
        if data["type"] == "done":
            self.done = True
            self.error = data.get("error") if isinstance(data.get("error"), str) else None
            return ""
        text = data.get("text")
        if not isinstance(text, str) or start > self.length:
            # A hole in the text cannot happen on an exactly-once subscription; skip
            # rather than splice text at the wrong place.
            return ""
        delta = text[self.length - start :]
        if delta:
            self.parts.append(delta)
            self.length += len(delta)
        return delta


async def read_text(
    channel: Channel, stream: str | None = None, from_: str = "-1"
) -> AsyncIterator[str]:
    """Yield the text of a token stream as it grows, until its done marker.

    ``stream`` picks one stream; ``None`` follows the first one that appears after
    ``from_``.
    """
    assembler = TextAssembler(stream)
    async with channel.subscribe(from_=from_) as subscription:
        async for message in subscription:
            delta = assembler.feed(message.data)
            if delta:
                yield delta
            if assembler.done:
                if assembler.error:
                    raise RuntimeError(f"the producer failed: {assembler.error}")
                return


class AgentRun:
    """An agent run's side of its channel on one connection: stream out, receive control.

    Messages whose data has ``"to": run_id`` land in :attr:`inbox`; everything the run
    publishes carries ``"from": run_id``. Both go over the client's single socket.

    Examples:
        >>> async with AgentRun(sb.channel("runs:7f3a"), "run-7") as run:  # doctest: +SKIP
        ...     async for chunk in llm:
        ...         ...
        ...     await run.stream(llm_tokens(), stream="answer")
        ...     if (msg := run.inbox_nowait()) and msg.data["type"] == "interrupt": ...
    """

    def __init__(self, channel: Channel, run_id: str, from_: str = NOW) -> None:
        self.channel = channel
        self.run_id = run_id
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._subscription: Subscription = channel.subscribe(from_=from_)
        self._listener: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None

    async def __aenter__(self) -> AgentRun:
        await self._subscription.start()
        self._listener = asyncio.create_task(self._listen())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await self._subscription.aclose()

    @property
    def position(self) -> str | None:
        return self._subscription.position

    async def _listen(self) -> None:
        try:
            async for message in self._subscription:
                data = message.data
                if isinstance(data, dict) and data.get("to") == self.run_id:
                    self.inbox.put_nowait(message)
        except Exception as exc:  # surfaced by receive()/inbox_nowait()
            self._failure = exc

    def _check(self) -> None:
        if self._failure is not None:
            raise self._failure

    async def send(self, data: dict[str, Any], id: str | None = None) -> None:
        await self.channel.publish({**data, "from": self.run_id}, id=id)

    async def stream(
        self, chunks: AsyncIterable[str], stream: str, window: float = DEFAULT_WINDOW
    ) -> StreamResult:
        self._check()
        return await stream_text(
            self.channel, chunks, stream=f"{self.run_id}:{stream}", window=window,
            extra={"from": self.run_id},
        )

    async def receive(self, timeout: float | None = None) -> Message | None:
        """The next message addressed to this run, or ``None`` after ``timeout``."""
        self._check()
        try:
            return await asyncio.wait_for(self.inbox.get(), timeout)
        except TimeoutError:
            self._check()
            return None

    def inbox_nowait(self) -> Message | None:
        """A message addressed to this run if one is waiting (poll between tokens)."""
        self._check()
        try:
            return self.inbox.get_nowait()
        except asyncio.QueueEmpty:
            return None
