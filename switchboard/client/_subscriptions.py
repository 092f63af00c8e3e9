"""Durable Streams subscriptions from Python: wake a worker when its streams get messages.

``sb.subscriptions`` manages them (create, get, list, delete, link and unlink streams) and
drives pull-wake workers (claim, ack as heartbeat, ack done, release). Webhook receivers
verify deliveries with :mod:`switchboard.webhooks`. Stream paths may be written with ``/``
(``runs/7f3a``, the Durable Streams form) or ``:`` (``runs:7f3a``, the channel name): they
name the same channel.

Examples:
    >>> async with Switchboard(url, api_key=key) as sb:  # doctest: +SKIP
    ...     await sb.subscriptions.create(
    ...         "agent-runs", type="webhook", pattern="runs/*",
    ...         webhook_url="https://agents.example.com/wake")
    ...     wake = await sb.subscriptions.claim("workers", worker="w1")   # pull-wake
    ...     await sb.subscriptions.ack(wake, wake.acks(), done=True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from ._errors import SwitchboardError
from ._http import HttpApi

ROOT = "/v1/stream/__ds/subscriptions"
Streams = list[str]
Acks = list[dict[str, str]]


def _id(subscription: str) -> str:
    return quote(subscription, safe="")


class SubscriptionError(SwitchboardError):
    """An error of the subscription APIs, with the protocol's code (``FENCED``,
    ``ALREADY_CLAIMED``, ``NO_PENDING_WORK``, ``WEBHOOK_URL_REJECTED`` …) as ``code``."""

    def __init__(self, code: str, message: str, detail: dict[str, Any] | None = None,
                 status: int | None = None) -> None:
        super().__init__(message, detail, status)
        setattr(self, "code", code)  # noqa: B010 (per instance: the protocol's codes vary)


def _protocol_error(error: SwitchboardError) -> SwitchboardError:
    code = error.detail.get("code")
    if isinstance(code, str) and code.isupper():
        return SubscriptionError(code, error.message, error.detail, error.status)
    return error


@dataclass(frozen=True)
class Wake:
    """A claimed pull-wake: ack its streams (``acks()``) with ``done=True`` when finished,
    ack without ``done`` as a heartbeat, or release it."""

    subscription: str
    wake_id: str
    generation: int
    token: str
    streams: list[dict[str, Any]] = field(default_factory=list)
    lease_ttl_ms: int = 0

    def acks(self) -> list[dict[str, str]]:
        """Acks up to every stream's tail as of the wake."""
        return [{"stream": s["path"], "offset": s["tail_offset"]} for s in self.streams]


class Subscriptions:
    def __init__(self, http: HttpApi) -> None:
        self._http = http

    async def _request(self, method: str, path: str, json: Any = None,
                       params: dict[str, str] | None = None) -> Any:
        try:
            return await self._http._request(method, path, json, params)
        except SwitchboardError as error:
            raise _protocol_error(error) from None

    async def create(
        self, subscription: str, *, type: str = "webhook", pattern: str | None = None,
        streams: list[str] | None = None, webhook_url: str | None = None,
        wake_stream: str | None = None, lease_ttl_ms: int | None = None,
        description: str | None = None,
    ) -> dict[str, Any]:
        """Create the subscription, or confirm it exists with this configuration (a
        different one raises ``SwitchboardError`` with code SUBSCRIPTION_ALREADY_EXISTS)."""
        body: dict[str, Any] = {"type": type}
        if pattern is not None:
            body["pattern"] = pattern
        if streams is not None:
            body["streams"] = streams
        if webhook_url is not None:
            body["webhook"] = {"url": webhook_url}
        if wake_stream is not None:
            body["wake_stream"] = wake_stream
        if lease_ttl_ms is not None:
            body["lease_ttl_ms"] = lease_ttl_ms
        if description is not None:
            body["description"] = description
        result: dict[str, Any] = await self._request(
            "PUT", f"{ROOT}/{_id(subscription)}", body)
        return result

    async def get(self, subscription: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("GET", f"{ROOT}/{_id(subscription)}")
        return result

    async def list(self) -> list[dict[str, Any]]:
        """Every subscription these credentials administer (all pages)."""
        out: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            params = {"after": after} if after else None
            page = await self._request("GET", ROOT, params=params)
            out.extend(page["subscriptions"])
            after = page.get("next")
            if not after:
                return out

    async def delete(self, subscription: str) -> None:
        await self._request("DELETE", f"{ROOT}/{_id(subscription)}")

    async def add_streams(self, subscription: str, streams: Streams) -> None:
        await self._request("POST", f"{ROOT}/{_id(subscription)}/streams",
                                  {"streams": streams})

    async def remove_stream(self, subscription: str, stream: str) -> None:
        await self._request(
            "DELETE", f"{ROOT}/{_id(subscription)}/streams/{quote(stream, safe='')}")

    async def jwks(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("GET", "/v1/stream/__ds/jwks.json")
        return result

    # -- pull-wake workers ---------------------------------------------------------------

    async def claim(self, subscription: str, worker: str) -> Wake | None:
        """Take the pending work, or None when there is none (NO_PENDING_WORK). Raises
        ``SwitchboardError`` (code ALREADY_CLAIMED) when another worker holds it."""
        try:
            body = await self._request(
                "POST", f"{ROOT}/{_id(subscription)}/claim", {"worker": worker})
        except SwitchboardError as error:
            if error.code == "NO_PENDING_WORK":
                return None
            raise
        return Wake(subscription, str(body["wake_id"]), int(body["generation"]),
                    str(body["token"]), list(body.get("streams") or []),
                    int(body.get("lease_ttl_ms") or 0))

    async def ack(self, wake: Wake, acks: Acks | None = None,
                  done: bool = False) -> bool:
        """Ack offsets; ``done`` ends the wake (returns whether another follows at once),
        without it this is the heartbeat that extends the lease."""
        body = await self._wake_call(wake, "ack", {"acks": acks or [], "done": done})
        return bool(body and body.get("next_wake"))

    async def release(self, wake: Wake) -> None:
        """Give the wake back unfinished: another wake follows if work is left."""
        await self._wake_call(wake, "release", {})

    async def _wake_call(self, wake: Wake, action: str, extra: dict[str, Any]) -> Any:
        # The wake's own token, not the client's credential.
        try:
            return await self._http.request_with_token(
                "POST", f"{ROOT}/{_id(wake.subscription)}/{action}", wake.token,
                {"wake_id": wake.wake_id, "generation": wake.generation, **extra})
        except SwitchboardError as error:
            raise _protocol_error(error) from None
