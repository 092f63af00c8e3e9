"""An agent run as a Restate workflow, woken by a Switchboard webhook when the user writes.

The run streams into its channel ``runs:<id>``, then suspends on a Restate awakeable until
the user writes to that channel; a Switchboard webhook subscription (``runs/*``) calls
``POST /wake`` on this same service, which verifies the signature, finds the awakeable the
run announced and the user's message after it, and resolves the awakeable through Restate's
ingress. The run continues with what the user wrote. Nothing holds a socket open and nothing
polls while the run waits: it is a suspended invocation in Restate's journal.

The one rule that makes crashes harmless: every publish happens inside a durable step
(``ctx.run_typed``) with a message id derived from the run and the step
(``f"{run_id}:{step}"``). Restate replays finished steps from its journal and re-executes
only the step that was in flight (at least once); Switchboard stores a repeated id once.
So killing this service or the Restate server at any point, and starting it again, finishes
the run with every message in the channel exactly once (tests/examples/test_restate_agent.py).

Run it (docs/workflows.md): ``python -m examples.restate_agent --port 9080`` with
``SWITCHBOARD_URL``, ``SWITCHBOARD_TOKEN`` (an API key) and ``RESTATE_INGRESS`` set.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import restate
from restate import RunOptions, Workflow, WorkflowContext

from switchboard.webhooks import WebhookVerificationError, WebhookVerifier

SWITCHBOARD_URL = os.environ.get("SWITCHBOARD_URL", "http://127.0.0.1:8765").rstrip("/")
SWITCHBOARD_TOKEN = os.environ.get("SWITCHBOARD_TOKEN") or ""
RESTATE_INGRESS = os.environ.get("RESTATE_INGRESS", "http://127.0.0.1:8080").rstrip("/")
# How long the fake model "thinks" per chunk (so a test can kill the service mid-stream).
STEP_DELAY_S = float(os.environ.get("AGENT_STEP_DELAY_S", "0.2"))
SUBSCRIPTION = "restate-agent"

_http: httpx.AsyncClient | None = None


def http() -> httpx.AsyncClient:
    global _http
    if _http is None:
        headers = {"Authorization": f"Bearer {SWITCHBOARD_TOKEN}"} if SWITCHBOARD_TOKEN else {}
        _http = httpx.AsyncClient(base_url=SWITCHBOARD_URL, headers=headers, timeout=10.0)
    return _http


# -- the model (deterministic, so a replayed run writes the same text) -----------------------


def draft(prompt: str) -> list[str]:
    return [f"{word} " for word in f"Here is a first answer to: {prompt}".split()]


def revise(prompt: str, steer: str) -> list[str]:
    return [f"{word} " for word in f"Revised as asked ({steer}): {prompt}".split()]


# -- side effects, each run inside a durable step --------------------------------------------


async def publish(run_id: str, step: str, data: dict[str, Any]) -> str:
    """Publish with an id derived from the run and the step: a re-executed step (Restate
    runs a step at least once) stores nothing new. Returns the message's offset."""
    await asyncio.sleep(STEP_DELAY_S if data.get("type") == "token" else 0)
    response = await http().post(f"/v1/channels/runs:{run_id}/messages",
                                 json={"data": data, "id": f"{run_id}:{step}"})
    response.raise_for_status()
    return str(response.json()["offset"])


async def user_message_after(run_id: str, offset: str) -> dict[str, Any]:
    """The first message the user wrote after ``offset`` ({} if none yet)."""
    for message in await history(run_id, offset):
        if isinstance(message["data"], dict) and message["data"].get("type") == "user":
            return {"text": str(message["data"].get("text", "")), "offset": message["offset"]}
    return {}


async def history(run_id: str, after: str = "-1") -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    while True:
        response = await http().get(f"/v1/channels/runs:{run_id}/messages",
                                    params={"from": after, "limit": "1000"})
        response.raise_for_status()
        page = response.json()
        messages.extend(page["messages"])
        if page["up_to_date"] or not page["messages"]:
            return messages
        after = page["next"]


# -- the workflow ----------------------------------------------------------------------------

agent = Workflow("AgentRun")


async def step(ctx: WorkflowContext, run_id: str, name: str, data: dict[str, Any]) -> str:
    return await ctx.run_typed(name, publish, RunOptions(type_hint=str), run_id, name, data)


@agent.main()
async def run(ctx: WorkflowContext, request: dict[str, Any]) -> dict[str, Any]:
    run_id, prompt = ctx.key(), str(request.get("prompt", ""))
    last = await step(ctx, run_id, "status:thinking", {"type": "status", "state": "thinking"})
    for i, chunk in enumerate(draft(prompt)):
        last = await step(ctx, run_id, f"draft:{i}", {"type": "token", "text": chunk})
    # Wait for the user: announce the awakeable in the channel, then suspend on it. A message
    # the user sent before the announcement is already in the log: look for it first.
    awakeable_id, reply = ctx.awakeable(type_hint=dict)
    await step(ctx, run_id, "waiting:1", {"type": "waiting", "awakeable": awakeable_id})
    early = await ctx.run_typed("check:1", user_message_after, RunOptions(type_hint=dict),
                                run_id, last)
    user = early or await reply
    await step(ctx, run_id, "status:revising", {"type": "status", "state": "revising",
                                                "steer": user["text"]})
    answer = revise(prompt, user["text"])
    for i, chunk in enumerate(answer):
        await step(ctx, run_id, f"revision:{i}", {"type": "token", "text": chunk})
    await step(ctx, run_id, "status:done", {"type": "status", "state": "done"})
    return {"run": run_id, "steer": user["text"], "answer": "".join(answer).strip()}


# -- the webhook: Switchboard wakes the run --------------------------------------------------


class Unavailable(Exception):
    """Restate could not be reached: answer 503 and Switchboard retries (1 s ... 60 s)."""


async def resolve(awakeable_id: str, value: dict[str, Any]) -> None:
    try:
        async with httpx.AsyncClient(timeout=5.0) as client:
            response = await client.post(
                f"{RESTATE_INGRESS}/restate/awakeables/{awakeable_id}/resolve", json=value)
    except httpx.HTTPError as error:
        raise Unavailable(str(error)) from None
    if response.status_code >= 500:
        raise Unavailable(f"Restate answered {response.status_code}")


async def on_wake(wake: dict[str, Any]) -> None:
    """For each run with new messages: resolve the awakeable of every ``waiting`` marker
    with the user's first message after it (resolving twice is a no-op in Restate)."""
    for stream in wake.get("streams", []):
        path = str(stream.get("path", ""))
        if not path.startswith("runs/") or not stream.get("has_pending"):
            continue
        run_id = path.split("/", 1)[1]
        waiting: str | None = None
        for message in await history(run_id):
            data = message["data"] if isinstance(message["data"], dict) else {}
            if data.get("type") == "waiting":
                waiting = str(data["awakeable"])
            elif data.get("type") == "user" and waiting is not None:
                await resolve(waiting, {"text": str(data.get("text", "")),
                                        "offset": message["offset"]})
                waiting = None


def webhook_app(verifier: WebhookVerifier) -> Callable[..., Awaitable[None]]:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        status, answer = 200, {"done": True}
        try:
            wake = await verifier.averify(body, headers.get("webhook-signature"))
            await on_wake(wake)
        except WebhookVerificationError as error:
            status, answer = 401, {"error": str(error)}
        except (Unavailable, httpx.HTTPError) as error:
            status, answer = 503, {"error": str(error)}
        payload = json.dumps(answer).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": payload})

    return app


def application() -> Callable[..., Awaitable[None]]:
    """Restate's endpoint, with ``POST /wake`` (the Switchboard webhook) beside it."""
    restate_app = restate.app(services=[agent])
    wake = webhook_app(WebhookVerifier(f"{SWITCHBOARD_URL}/v1/stream/__ds/jwks.json"))

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/wake" and scope["method"] == "POST":
            await wake(scope, receive, send)
        else:
            await restate_app(scope, receive, send)

    return app


async def subscribe(public_url: str) -> None:
    """Create (or confirm) the webhook subscription that wakes runs: every ``runs/*``."""
    body = {"type": "webhook", "pattern": "runs/*", "webhook": {"url": f"{public_url}/wake"},
            "description": "examples/restate_agent"}
    path = f"/v1/stream/__ds/subscriptions/{SUBSCRIPTION}"
    response = await http().put(path, json=body)
    if response.status_code == 409:  # another URL (the service moved): replace it
        await http().delete(path)
        response = await http().put(path, json=body)
    response.raise_for_status()
