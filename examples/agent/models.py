"""Where the agent's words come from: a deterministic fake LLM, or an OpenAI-compatible API.

Both implement :class:`Model`: *continue the answer to ``prompt`` given the text already
written and the steering received so far*. That one shape serves the three situations the
worker meets: a fresh answer (``written == ""``), a steer mid-answer (start again from the
text written so far with one more instruction) and a restart after a crash (start again from
the text the channel's log already holds).

The fake is a pure function of ``(prompt, steers)``, so a restarted worker regenerates the
same words and skips exactly the characters already published. Its pace is a human-looking
30-80 tokens/s in bursts; ``SWITCHBOARD_AGENT_SPEED=4`` makes it four times faster (tests).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import httpx


@dataclass(frozen=True)
class Steer:
    """An instruction that took effect once ``at`` characters of the answer were written."""

    at: int
    text: str


class Model(Protocol):
    name: str
    #: How much faster than real time the model runs (thinking pauses scale with it too).
    speed: float

    def stream(self, prompt: str, written: str, steers: Sequence[Steer]) -> AsyncIterator[str]:
        """Yield the rest of the answer, as text chunks, paced like a real model."""
        ...


# -- the deterministic fake -----------------------------------------------------------------

_BODY = (
    "The run gets a channel of its own, named after the run, so anyone can find it by name.",
    "Every event the agent produces is appended to that channel's log with the next seq.",
    "A browser that reloads does not start over: it resumes from the offset it stored.",
    "Nothing is lost when a socket drops, because the log is written before anyone is told.",
    "Tokens are coalesced into one message every forty milliseconds, which keeps writes cheap.",
    "Control messages travel on the same channel, in the other direction, on the same socket.",
    "An interrupt is just another message: the agent sees it between two tokens and stops.",
    "Idempotency ids make retries harmless, since a second copy of a step stores nothing.",
    "Offsets sort in log order, so a client only ever has to remember one string per channel.",
    "A second tab replays the same log from the start and arrives at exactly the same text.",
    "Serverless means nothing runs while nobody talks: DynamoDB holds the log in between.",
    "The fan-out reads the stream of new records and posts each one to every subscriber.",
    "Gaps are detected by seq and filled from history, so delivery stays exactly once.",
    "A worker that crashes reads the run's log on restart and continues where it stopped.",
    "Latency is mostly the stream hop, a few hundred milliseconds at worst on AWS.",
    "None of this needs a database poll: subscribers are pushed every message as it lands.",
)
_CLOSERS = (
    "In short: name the run, stream into it, listen on it, and let the log do the remembering.",
    "That is the whole pattern, and it survives reloads, crashes and flaky networks alike.",
    "So the answer is a channel per run, with the log as the single source of truth.",
    "Put together, the user can leave, come back, and find the agent exactly where it was.",
)
_STEERED = (
    "With {s} in mind, the first thing to change is what the reader sees next.",
    "Taking {s} seriously means the remaining paragraphs bend toward it.",
    "Here is the same idea, retold for {s}.",
    "The channel carried your note to me between two tokens, which is why I could turn.",
    "Everything above stays as it was; from here on the answer follows {s}.",
)
_TOKEN = re.compile(r"\s*\S+")


def _rng(*parts: str) -> random.Random:
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _topic(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def tokens_of(text: str) -> list[str]:
    """Split text into word-sized tokens that keep their leading whitespace."""
    return _TOKEN.findall(text)


def answer_text(prompt: str) -> str:
    """The fake model's whole unsteered answer to ``prompt``."""
    rng = _rng("answer", prompt)
    picked = rng.sample(_BODY, 9)
    paragraphs = [" ".join(picked[i : i + 3]) for i in (0, 3, 6)]
    return f"Here is how I would approach “{_topic(prompt)}”. " + "\n\n".join(
        [*paragraphs, rng.choice(_CLOSERS)]
    )


def steer_text(prompt: str, steer: str) -> str:
    """What the fake model writes after ``steer`` arrives, replacing the rest of its plan."""
    rng = _rng("steer", prompt, steer)
    quoted = f"“{_topic(steer, 60)}”"
    lines = [rng.choice(_STEERED[:3]).format(s=quoted), _STEERED[3]]
    lines += rng.sample(_BODY, 2)
    lines.append(_STEERED[4].format(s=quoted))
    return f"\n\nChanging course, as you asked: {quoted}. " + " ".join(lines)


def full_text(prompt: str, steers: Sequence[Steer] = ()) -> str:
    """The fake model's complete answer given the steers and where each took effect."""
    text = ""
    plan = tokens_of(answer_text(prompt))
    pending = sorted(steers, key=lambda s: s.at)
    while True:
        while pending and pending[0].at <= len(text):
            plan = tokens_of(steer_text(prompt, pending.pop(0).text))
        if not plan:
            return text
        text += plan.pop(0)


class FakeModel:
    """A deterministic stand-in for an LLM with a realistic, bursty pace.

    ``speed`` multiplies the pace (``2`` is twice as fast); the default reads
    ``SWITCHBOARD_AGENT_SPEED``.
    """

    name = "fake"

    def __init__(self, speed: float | None = None) -> None:
        if speed is None:
            speed = float(os.environ.get("SWITCHBOARD_AGENT_SPEED", "1") or 1)
        if speed <= 0:
            raise ValueError(f"speed must be positive, not {speed}")
        self.speed = speed

    async def stream(
        self, prompt: str, written: str, steers: Sequence[Steer]
    ) -> AsyncIterator[str]:
        text = full_text(prompt, steers)
        if not text.startswith(written):
            # The log holds text this model would never write (another model wrote it):
            # carry on after it rather than contradict what the user already read.
            text = written + text[len(written) :]
        pace = _Pace(self.speed, _rng("pace", prompt, str(len(written))))
        rest = text[len(written) :]
        for token in tokens_of(rest):
            await asyncio.sleep(pace.next())
            yield token


class _Pace:
    """Delays between tokens: bursts at 30-80 tokens/s with short stalls between them."""

    def __init__(self, speed: float, rng: random.Random) -> None:
        self.speed = speed
        self.rng = rng
        self.left = 0
        self.rate = 50.0

    def next(self) -> float:
        if self.left <= 0:
            self.left = self.rng.randint(4, 16)
            self.rate = self.rng.uniform(30, 80)
            stall = self.rng.uniform(0.08, 0.3) if self.rng.random() < 0.2 else 0.0
        else:
            stall = 0.0
        self.left -= 1
        jitter = self.rng.uniform(0.5, 1.5)
        return (stall + jitter / self.rate) / self.speed


# -- an OpenAI-compatible endpoint (optional) ---------------------------------------------


class OpenAIModel:
    """Chat Completions over any OpenAI-compatible endpoint, streamed.

    Configured by ``SWITCHBOARD_AGENT_OPENAI_BASE_URL`` (e.g. ``https://api.openai.com/v1``),
    ``SWITCHBOARD_AGENT_OPENAI_API_KEY`` and ``SWITCHBOARD_AGENT_OPENAI_MODEL``. A steer or a
    restart asks the model to continue the text already written, which a real model does
    well enough; only the fake guarantees the very same words.
    """

    name = "openai"
    speed = 1.0

    def __init__(self, base_url: str, api_key: str, model: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.model = model

    async def stream(
        self, prompt: str, written: str, steers: Sequence[Steer]
    ) -> AsyncIterator[str]:
        messages = [
            {"role": "system", "content": "You are a concise, helpful assistant."},
            {"role": "user", "content": prompt},
        ]
        if written or steers:
            notes = "".join(f"\n- {s.text}" for s in steers)
            messages.append({"role": "assistant", "content": written})
            messages.append({
                "role": "user",
                "content": "Continue your answer exactly where it stops, without repeating "
                "anything." + (f" Follow these instructions from now on:{notes}" if notes else ""),
            })
        body = {"model": self.model, "messages": messages, "stream": True}
        headers = {"Authorization": f"Bearer {self.api_key}"}
        async with (
            httpx.AsyncClient(timeout=httpx.Timeout(60, connect=10)) as http,
            http.stream("POST", f"{self.base_url}/chat/completions", json=body,
                        headers=headers) as response,
        ):
            if response.status_code != 200:
                detail = (await response.aread()).decode(errors="replace")[:300]
                raise RuntimeError(
                    f"the model endpoint answered {response.status_code}: {detail}"
                )
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    return
                choices = json.loads(payload).get("choices") or [{}]
                chunk = (choices[0].get("delta") or {}).get("content")
                if chunk:
                    yield chunk


def model_from_env() -> Model:
    """The OpenAI-compatible model when its environment is set, else the fake."""
    base_url = os.environ.get("SWITCHBOARD_AGENT_OPENAI_BASE_URL")
    if base_url:
        return OpenAIModel(
            base_url,
            os.environ.get("SWITCHBOARD_AGENT_OPENAI_API_KEY", ""),
            os.environ.get("SWITCHBOARD_AGENT_OPENAI_MODEL", "gpt-4o-mini"),
        )
    return FakeModel()
