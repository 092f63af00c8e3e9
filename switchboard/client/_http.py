"""The HTTP half of the client: history, channel admin, and batch publishing over /v1."""

from __future__ import annotations

import asyncio
import inspect
import random
import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import quote

import httpx

from ._env import NO_CREDENTIALS_HINT
from ._errors import (
    InternalError,
    RateLimitedError,
    SwitchboardError,
    UnauthorizedError,
    UnavailableError,
    error_from_payload,
    with_hint,
)
from ._options import Options, backoff_delay
from ._presence import PresenceMember
from ._types import Ack, ChannelInfo, HistoryPage, Message

#: Returns a fresh token; may be a coroutine function. Called when the server says
#: ``unauthorized`` (and before the first request when no ``token`` was given).
TokenProvider = Callable[[], "str | Awaitable[str]"]

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Marks a publish as a re-send of one whose answer was lost (see ``HttpApi.publish``).
RETRY_HEADER = "X-Switchboard-Retry"


class Credentials:
    """The current token plus the optional hook that renews it."""

    def __init__(self, token: str | None, auth: TokenProvider | None) -> None:
        self.token = token
        self.auth = auth
        self._lock = asyncio.Lock()

    @property
    def given(self) -> bool:
        """Whether the application gave any credential at all (a token or a hook)."""
        return bool(self.token) or self.auth is not None

    async def current(self) -> str | None:
        if self.token is None and self.auth is not None:
            await self.refresh()
        return self.token

    async def refresh(self) -> bool:
        """Ask the hook for a new token; False when there is no hook to ask."""
        if self.auth is None:
            return False
        async with self._lock:
            value = self.auth()
            if inspect.isawaitable(value):
                value = await value
            self.token = str(value)
        return True


def channel_path(channel: str) -> str:
    # Valid names are already path-safe; quoting keeps an invalid one from escaping the path
    # (the server then answers invalid_channel).
    return quote(channel, safe=":@._~-")


class HttpApi:
    """Typed calls to the /v1 API with transient-failure retries."""

    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        options: Options,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._credentials = credentials
        self._options = options
        self._rng = rng or random.Random()
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=options.request_timeout,
            transport=transport,
            headers={"User-Agent": "switchboard-python"},
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- endpoints ------------------------------------------------------------------------

    async def publish(
        self,
        channel: str,
        data: Any,
        id: str | None = None,
        *,
        token: str | None = None,
        retry: bool = False,
        attempts: int | None = None,
        timeout: float | None = None,
    ) -> Ack:
        """``POST /v1/channels/{channel}/messages`` with one message.

        With an ``id`` the publish is idempotent. Without one it carries a request
        ``token`` (``token``, else a random one), and every re-send says
        ``X-Switchboard-Retry: true`` (the first too, with ``retry``: it re-sends an attempt
        whose answer was lost), so the server finds an earlier attempt instead of storing
        the message twice. ``attempts`` bounds the tries (default ``Options.http_attempts``).
        """
        body: dict[str, Any] = {"data": data}
        if id is not None:
            body["id"] = id
        else:
            body["token"] = token or secrets.token_hex(16)
        answer = await self._request(
            "POST", f"/v1/channels/{channel_path(channel)}/messages", body,
            resend_header=id is None, resent=retry, attempts=attempts, timeout=timeout,
        )
        return Ack.from_dict(answer)

    async def publish_many(self, channel: str, items: Sequence[tuple[Any, str]]) -> list[Ack]:
        payload = [{"data": data, "id": id} for data, id in items]
        body = await self._request(
            "POST", f"/v1/channels/{channel_path(channel)}/messages", payload
        )
        return [Ack.from_dict(a) for a in body]

    async def history(self, channel: str, from_: str = "-1", limit: int = 100) -> HistoryPage:
        body = await self._request(
            "GET",
            f"/v1/channels/{channel_path(channel)}/messages",
            params={"from": from_, "limit": str(limit)},
        )
        return HistoryPage(
            messages=[Message.from_dict(m) for m in body["messages"]],
            next=str(body["next"]),
            up_to_date=bool(body["up_to_date"]),
        )

    async def info(self, channel: str) -> ChannelInfo:
        return ChannelInfo.from_dict(
            await self._request("GET", f"/v1/channels/{channel_path(channel)}")
        )

    async def create(self, channel: str, retention: int | None = None) -> ChannelInfo:
        body = {} if retention is None else {"retention": retention}
        return ChannelInfo.from_dict(
            await self._request("PUT", f"/v1/channels/{channel_path(channel)}", body)
        )

    async def delete(self, channel: str) -> None:
        await self._request("DELETE", f"/v1/channels/{channel_path(channel)}")

    async def presence_members(self, channel: str) -> list[PresenceMember]:
        """``GET /v1/channels/{channel}/presence``: the members now, oldest first."""
        body = await self._request("GET", f"/v1/channels/{channel_path(channel)}/presence")
        return [PresenceMember.from_dict(m) for m in body["members"]]

    async def presence_put(
        self, channel: str, instance: str, data: dict[str, Any] | None
    ) -> dict[str, Any]:
        """``PUT /v1/channels/{channel}/presence/{instance}``: enter or update with ``data``;
        with None, a heartbeat (``not_found`` when the member is gone: enter again). Sent
        once: the member's task decides what to retry (``rate_limited`` means "send the
        latest state later", not "send this again")."""
        body: dict[str, Any] = await self._request(
            "PUT", f"/v1/channels/{channel_path(channel)}/presence/{quote(instance, safe='')}",
            None if data is None else {"data": data}, attempts=1,
        )
        return body

    async def presence_delete(self, channel: str, instance: str) -> None:
        await self._request(
            "DELETE",
            f"/v1/channels/{channel_path(channel)}/presence/{quote(instance, safe='')}",
        )

    async def issue_token(
        self, client_id: str, capabilities: dict[str, list[str]], ttl: int = 3600
    ) -> dict[str, Any]:
        """POST /v1/tokens: needs an API key as the credential."""
        issued: dict[str, Any] = await self._request(
            "POST", "/v1/tokens",
            json={"client_id": client_id, "capabilities": capabilities, "ttl": ttl},
        )
        return issued

    async def check_credentials(self, channel: str) -> SwitchboardError | None:
        """Why the server refuses these credentials, in its own words, or None if it does
        not. One request, no retries, no refresh: used to explain a refused WebSocket
        handshake, which carries a status but no message."""
        headers = {}
        if self._credentials.token:
            headers["Authorization"] = f"Bearer {self._credentials.token}"
        try:
            response = await self._client.request(
                "GET", f"/v1/channels/{channel_path(channel)}", headers=headers,
                timeout=min(self._options.request_timeout, 3.0),
            )
        except httpx.HTTPError:
            return None
        if response.status_code not in (401, 403):
            return None
        return self._hinted(_error_of(response))

    def _hinted(self, error: SwitchboardError) -> SwitchboardError:
        if isinstance(error, UnauthorizedError) and not self._credentials.given:
            return with_hint(error, NO_CREDENTIALS_HINT)
        return error
    async def request_with_token(self, method: str, path: str, token: str, json: Any) -> Any:
        """One request authorized by a token other than the client's (a wake's callback or
        claim token: Durable Streams subscriptions), not retried."""
        try:
            response = await self._client.request(
                method, path, json=json, headers={"Authorization": f"Bearer {token}"})
        except httpx.TransportError as exc:
            raise UnavailableError(f"Could not reach {self._client.base_url}: {exc}.") from None
        if response.status_code >= 400:
            raise _error_of(response)
        return response.json() if response.content else None

    # -- plumbing -------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        json: Any = None,
        params: dict[str, str] | None = None,
        *,
        resend_header: bool = False,
        resent: bool = False,
        attempts: int | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Send with retries on transport errors and 429/5xx (after the server's
        ``retry_after_ms`` for 429). Every request we retry is idempotent (publishes carry
        an id, or a token and, with ``resend_header``, ``X-Switchboard-Retry: true`` on
        every re-send: from the first when ``resent``), so a retry after a lost response is
        safe."""
        refreshed = False
        attempt = 0
        limit = attempts if attempts is not None else self._options.http_attempts
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        while True:
            headers = {}
            token = await self._credentials.current()
            if token:
                headers["Authorization"] = f"Bearer {token}"
            if resend_header and resent:
                headers[RETRY_HEADER] = "true"
            resent = True  # whatever happens next, this attempt may have reached the server
            try:
                response = await self._client.request(
                    method, path, json=json, params=params, headers=headers, **extra
                )
            except httpx.TransportError as exc:
                error: SwitchboardError = UnavailableError(
                    f"Could not reach {self._client.base_url}: {exc.__class__.__name__}: {exc}. "
                    "Check the URL and that the server is running."
                )
            else:
                if response.status_code < 400:
                    return response.json() if response.content else None
                error = _error_of(response)
                if isinstance(error, UnauthorizedError) and not refreshed:
                    refreshed = True
                    if await self._credentials.refresh():
                        continue
                if response.status_code not in _RETRY_STATUSES:
                    raise self._hinted(error)
            attempt += 1
            if attempt >= limit:
                raise error
            delay = backoff_delay(
                attempt, self._options.backoff_initial, self._options.backoff_max, self._rng
            )
            if isinstance(error, RateLimitedError) and error.retry_after is not None:
                delay = max(delay, error.retry_after)
            await asyncio.sleep(delay)


def _error_of(response: httpx.Response) -> SwitchboardError:
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        return error_from_payload(payload["error"], response.status_code)
    return InternalError(
        f"The server answered HTTP {response.status_code} without a Switchboard error body "
        f"({response.text[:120]!r}); is the URL a Switchboard server?",
        {"status": response.status_code},
        response.status_code,
    )
