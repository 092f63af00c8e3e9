"""The agent's one tool: a tiny, deterministic search over Switchboard's own docs."""

from __future__ import annotations

import re
from typing import Any

_PASSAGES = (
    ("Channels, seqs and offsets", "docs/protocol.md",
     "channel log seq offset epoch append order gapless name"),
    ("How a subscription stays exact", "docs/protocol.md",
     "subscribe replay live resume duplicate gap exactly once"),
    ("Idempotent publish", "docs/protocol.md", "publish id idempotency retry duplicate ack"),
    ("Token streaming for agents", "docs/sdk.md",
     "token stream coalesce window llm text done agent"),
    ("The agent's inbox", "docs/sdk.md", "interrupt steer approve inbox agent run control"),
    ("Retention and expiry", "docs/protocol.md", "retention ttl expire offset expired history"),
    ("Fan-out through DynamoDB Streams", "docs/protocol.md",
     "fanout stream dynamodb lambda subscriber latency websocket"),
    ("The agent console", "docs/console.md",
     "console browser reload tab inspector latency interrupt steer"),
)


def search_docs(query: str, limit: int = 3) -> list[dict[str, Any]]:
    """The ``limit`` passages sharing the most words with ``query``, best first."""
    words = {w.lower() for w in re.findall(r"[A-Za-z]+", query)}
    scored = []
    for rank, (title, source, keywords) in enumerate(_PASSAGES):
        terms = set(keywords.split()) | {w.lower() for w in title.split()}
        # Crude stemming: "streams" matches "stream", "interrupting" matches "interrupt".
        hits = sum(1 for w in words if any(w.startswith(t) or t.startswith(w) for t in terms
                                           if min(len(w), len(t)) >= 4))
        scored.append((hits, -rank, title, source))
    scored.sort(reverse=True)
    best = max(scored[0][0], 1)
    return [
        {"title": title, "source": source, "score": round(0.35 + 0.6 * hits / best, 2)}
        for hits, _, title, source in scored[:limit]
    ]
