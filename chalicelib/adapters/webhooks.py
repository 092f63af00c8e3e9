"""The webhook poster: one signed POST, to a vetted address, with bounded time and size.

The URL was checked when the subscription was created (core/wakes.py
``check_webhook_url``, from the URL alone). Here the host name is resolved and **every**
address it resolves to must be public (or loopback where allowed), then the connection goes
to that vetted address, so a name that re-resolves to a private address between the check
and the connect (DNS rebinding) cannot redirect it. TLS is verified against the host name
(SNI and certificate), redirects are not followed, and at most ``MAX_ANSWER_BYTES`` of the
answer are read.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from ..core.wakes import address_allowed, ip_literal
from ..ports import WebhookResponse

MAX_ANSWER_BYTES = 64 * 1024
CONNECT_TIMEOUT_S = 5.0

if TYPE_CHECKING:
    import httpx

Resolver = Callable[[str, int], list[str]]


def resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


class UnsafeAddressError(Exception):
    pass


def vetted_address(host: str, port: int, allow_loopback: bool,
                   resolver: Resolver = resolve) -> str:
    """The address to connect to for ``host``: refuses if any address it names is not
    public (loopback only when allowed)."""
    literal = ip_literal(host)
    addresses = [str(literal)] if literal is not None else resolver(host, port)
    if not addresses:
        raise UnsafeAddressError(f"{host} resolves to no address")
    for address in addresses:
        if not address_allowed(ipaddress.ip_address(address.split("%")[0]), allow_loopback):
            raise UnsafeAddressError(f"{host} resolves to a non-public address ({address})")
    return addresses[0]


class HttpxWebhookPoster:
    """Built at every cold start; the HTTP client (TLS context and all) on the first POST."""

    def __init__(self, allow_loopback: bool, timeout_s: float = 10.0,
                 resolver: Resolver = resolve,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.allow_loopback = allow_loopback
        self.timeout_s = timeout_s
        self.resolver = resolver
        self._transport = transport
        self._http: Any = None

    def _client(self) -> httpx.Client:
        if self._http is None:
            import httpx

            self._http = httpx.Client(
                timeout=httpx.Timeout(self.timeout_s,
                                      connect=min(CONNECT_TIMEOUT_S, self.timeout_s)),
                follow_redirects=False, transport=self._transport, trust_env=False)
        client: httpx.Client = self._http
        return client

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> WebhookResponse:
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            address = vetted_address(host, port, self.allow_loopback, self.resolver)
        except (UnsafeAddressError, OSError) as error:
            return WebhookResponse(0, error=f"refused: {error}")
        target = address if ":" not in address else f"[{address}]"
        netloc = f"{target}:{parts.port}" if parts.port else target
        pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        host_header = parts.netloc.rsplit("@", 1)[-1]
        import httpx

        try:
            with self._client().stream(
                "POST", pinned, content=body,
                headers={**headers, "Host": host_header, "User-Agent": "Switchboard-Webhooks"},
                extensions={"sni_hostname": host} if parts.scheme == "https" else {},
            ) as response:
                answer = b""
                for chunk in response.iter_bytes():
                    answer += chunk
                    if len(answer) >= MAX_ANSWER_BYTES:
                        break
                return WebhookResponse(response.status_code, answer[:MAX_ANSWER_BYTES])
        except httpx.HTTPError as error:
            return WebhookResponse(0, error=f"{type(error).__name__}: {error}"[:300])
