"""Durable Streams subscriptions ("wakes"): the model, in one module that can follow the protocol.

What PROTOCOL.md §6-7 ("Reserved subscription APIs", "Subscription delivery") says and what
conformance 0.3.6 tests (``runConformanceTests({ subscriptions: true })``): the reserved paths,
request and response fields, error codes, glob patterns, lease bounds, the retry schedule,
the webhook signature header, callback tokens and the wake payloads. Pure: no I/O, no clock
(callers pass ``now``). The protocol is still moving (later drafts scope subscriptions per
service); what changes there changes here, and services/wakes.py keeps the state machine.

Names: a *wake subscription* (this module) is not a WebSocket subscription
(core/subscriptions.py). It links streams (channels) to a consumer that is woken when they
hold unprocessed messages: by a signed webhook, or by a wake event appended to a stream that
workers read (pull-wake).

Stream paths and channel names: a Durable Streams path is ``/``-separated (``events/a``); a
channel name is ``:``-separated (``events:a``). They are the same thing written two ways:
:func:`channel_of_path` and :func:`path_of_channel` map one onto the other (segments keep the
channel grammar, so the map is a bijection). Paths in subscription bodies are emitted in the
``/`` form and accepted in either.

    SubscriptionError (code, HTTP status)
    ├── InvalidSubscriptionRequestError   INVALID_REQUEST              400
    ├── WebhookUrlRejectedError           WEBHOOK_URL_REJECTED         400
    ├── TokenInvalidError                 TOKEN_INVALID                401
    ├── TokenExpiredError                 TOKEN_EXPIRED                401
    ├── SubscriptionNotFoundError         SUBSCRIPTION_NOT_FOUND       404
    ├── SubscriptionExistsError           SUBSCRIPTION_ALREADY_EXISTS  409
    ├── FencedError                       FENCED                       409
    ├── AlreadyClaimedError               ALREADY_CLAIMED              409
    ├── NoPendingWorkError                NO_PENDING_WORK              409
    └── InvalidAckError                   INVALID_OFFSET               409
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import random
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

from .errors import InvalidChannelError, SwitchboardError
from .names import validate_channel
from .offsets import BEGINNING, decode

RESERVED_SEGMENT = "__ds"
ZERO_OFFSET = "0000000000000000_0000000000000000"

WEBHOOK = "webhook"
PULL_WAKE = "pull-wake"
TYPES = (WEBHOOK, PULL_WAKE)
GLOB = "glob"
EXPLICIT = "explicit"

LEASE_MIN_MS = 1_000
LEASE_MAX_MS = 600_000
LEASE_DEFAULT_MS = 30_000
# Retries of a failed delivery: 1 s, 2 s, 4 s, ... at most 60 s, each +-20 %.
BACKOFF_BASE_MS = 1_000
BACKOFF_MAX_MS = 60_000
BACKOFF_JITTER = 0.2
TOKEN_TTL_S = 24 * 3600
# Streams one wake lists (the rest of the pending work follows in the next wake).
SNAPSHOT_MAX = 100
# Explicit streams per request, and per subscription.
STREAMS_MAX = 100
DESCRIPTION_MAX = 1024
URL_MAX = 2048
_ID = re.compile(r"[A-Za-z0-9._~@-]{1,128}\Z")


# -- errors ----------------------------------------------------------------------------------


class SubscriptionError(SwitchboardError):
    """An error of the reserved subscription APIs: the protocol's upper-case code, with its
    extra fields (``current_holder``, ``generation``) directly on ``error``."""

    code: ClassVar[str] = "INVALID_REQUEST"
    status: ClassVar[int] = 400

    def __init__(
        self, message: str, detail: dict[str, Any] | None = None, **extra: Any
    ) -> None:
        super().__init__(message, detail)
        self.extra = extra

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), **self.extra}


class InvalidSubscriptionRequestError(SubscriptionError):
    code = "INVALID_REQUEST"
    status = 400


class WebhookUrlRejectedError(SubscriptionError):
    code = "WEBHOOK_URL_REJECTED"
    status = 400


class TokenInvalidError(SubscriptionError):
    code = "TOKEN_INVALID"
    status = 401


class TokenExpiredError(SubscriptionError):
    code = "TOKEN_EXPIRED"
    status = 401


class SubscriptionNotFoundError(SubscriptionError):
    code = "SUBSCRIPTION_NOT_FOUND"
    status = 404


class SubscriptionExistsError(SubscriptionError):
    code = "SUBSCRIPTION_ALREADY_EXISTS"
    status = 409


class FencedError(SubscriptionError):
    code = "FENCED"
    status = 409


class AlreadyClaimedError(SubscriptionError):
    code = "ALREADY_CLAIMED"
    status = 409


class NoPendingWorkError(SubscriptionError):
    code = "NO_PENDING_WORK"
    status = 409


class InvalidAckError(SubscriptionError):
    code = "INVALID_OFFSET"
    status = 409


# -- paths -----------------------------------------------------------------------------------


def channel_of_path(path: str) -> str:
    """The channel a Durable Streams path names: ``events/a`` (or ``/events/a/``, or
    ``events:a``) is ``events:a``. :class:`InvalidChannelError` for anything else."""
    if not isinstance(path, str):
        raise InvalidChannelError("A stream path must be a string such as 'events/a'.")
    name = path.strip("/").replace("/", ":")
    return validate_channel(name)


def path_of_channel(channel: str) -> str:
    """The Durable Streams path of a channel: ``events:a`` is ``events/a``."""
    return channel.replace(":", "/")


def validate_id(raw: str) -> str:
    """A subscription id as it appears in the URL (percent-decoded by the caller)."""
    if not _ID.match(raw):
        raise InvalidSubscriptionRequestError(
            "A subscription id is 1 to 128 letters, digits and '._~@-'.",
            {"id": raw[:80]},
        )
    return raw


# -- glob patterns ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Pattern:
    """A glob over stream paths: ``*`` is one segment, ``**`` zero or more.

    The first segment must be literal: it is the namespace the pattern is indexed under
    (the stream consumer looks up a channel's subscriptions by its first segment, one Query),
    so ``*/x`` and ``**`` are refused.
    """

    segments: tuple[str, ...]

    @property
    def text(self) -> str:
        return "/".join(self.segments)

    @property
    def namespace(self) -> str:
        return self.segments[0]

    def matches(self, channel: str) -> bool:
        return _glob(self.segments, tuple(channel.split(":")))


def _glob(pattern: tuple[str, ...], parts: tuple[str, ...]) -> bool:
    if not pattern:
        return not parts
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_glob(rest, parts[i:]) for i in range(len(parts) + 1))
    if not parts:
        return False
    return (head == "*" or head == parts[0]) and _glob(rest, parts[1:])


def parse_pattern(raw: object) -> Pattern:
    if not isinstance(raw, str) or not raw.strip("/:"):
        raise InvalidSubscriptionRequestError(
            "'pattern' must be a non-empty glob over stream paths, such as 'events/*'."
        )
    segments = tuple(raw.strip("/").replace(":", "/").split("/"))
    if segments[0] == RESERVED_SEGMENT:
        raise InvalidSubscriptionRequestError(f"Paths under {RESERVED_SEGMENT}/ are reserved.")
    for index, segment in enumerate(segments):
        if segment in ("*", "**"):
            if index == 0:
                raise InvalidSubscriptionRequestError(
                    f"Pattern {raw!r} starts with a wildcard: its first segment must be a "
                    "literal namespace ('events/*', 'runs/**').",
                    {"pattern": raw[:200]},
                )
            continue
        try:
            validate_channel(segment)
        except InvalidChannelError:
            raise InvalidSubscriptionRequestError(
                f"Pattern {raw!r}: each segment is '*', '**' or letters, digits and '._~@-'.",
                {"pattern": raw[:200]},
            ) from None
    return Pattern(segments)


# -- configuration ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SubscriptionConfig:
    """What a PUT asks for, normalized (its hash decides 201/200/409)."""

    type: str
    pattern: Pattern | None
    streams: tuple[str, ...]  # channels, sorted
    webhook_url: str | None
    wake_stream: str | None  # a channel
    lease_ttl_ms: int
    description: str | None

    def config_hash(self) -> str:
        return hashlib.sha256(
            json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "pattern": self.pattern.text if self.pattern else None,
            "streams": list(self.streams),
            "webhook_url": self.webhook_url,
            "wake_stream": self.wake_stream,
            "lease_ttl_ms": self.lease_ttl_ms,
            "description": self.description,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> SubscriptionConfig:
        return cls(
            type=raw["type"],
            pattern=parse_pattern(raw["pattern"]) if raw.get("pattern") else None,
            streams=tuple(raw.get("streams") or ()),
            webhook_url=raw.get("webhook_url"),
            wake_stream=raw.get("wake_stream"),
            lease_ttl_ms=int(raw["lease_ttl_ms"]),
            description=raw.get("description"),
        )

    def excludes(self, channel: str) -> bool:
        """A pull-wake subscription never links its own wake stream (each wake event would
        wake it again)."""
        return channel == self.wake_stream


_FIELDS = {"type", "pattern", "streams", "webhook", "wake_stream", "lease_ttl_ms", "description"}


def parse_streams(raw: object, field_name: str = "streams") -> tuple[str, ...]:
    if not isinstance(raw, list) or len(raw) > STREAMS_MAX:
        raise InvalidSubscriptionRequestError(
            f"'{field_name}' must be a list of at most {STREAMS_MAX} stream paths "
            "(['events/a', 'events/b'])."
        )
    channels = []
    for item in raw:
        try:
            channels.append(channel_of_path(item))
        except InvalidChannelError as error:
            raise InvalidSubscriptionRequestError(
                f"'{field_name}' holds an invalid stream path: {error.message}",
                {"stream": str(item)[:200]},
            ) from None
    for channel in channels:
        if channel.split(":", 1)[0] == RESERVED_SEGMENT:
            raise InvalidSubscriptionRequestError(f"Paths under {RESERVED_SEGMENT}/ are reserved.")
    return tuple(sorted(set(channels)))


def parse_config(body: object, allow_loopback: bool) -> SubscriptionConfig:
    """Validate a PUT body; :class:`SubscriptionError` says what is wrong."""
    if not isinstance(body, dict):
        raise InvalidSubscriptionRequestError("The body must be a JSON object.")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise InvalidSubscriptionRequestError(
            f"Unknown fields: {', '.join(unknown)}. A subscription has "
            f"{', '.join(sorted(_FIELDS))}.",
            {"fields": unknown},
        )
    kind = body.get("type")
    if kind not in TYPES:
        raise InvalidSubscriptionRequestError("'type' must be 'webhook' or 'pull-wake'.")
    pattern = parse_pattern(body["pattern"]) if body.get("pattern") is not None else None
    streams = parse_streams(body["streams"]) if body.get("streams") is not None else ()
    if pattern is None and not streams:
        raise InvalidSubscriptionRequestError(
            "Give a 'pattern' (a glob such as 'events/*'), 'streams' (explicit paths), or both."
        )
    lease = body.get("lease_ttl_ms", LEASE_DEFAULT_MS)
    if not isinstance(lease, int) or isinstance(lease, bool) or not (
        LEASE_MIN_MS <= lease <= LEASE_MAX_MS
    ):
        raise InvalidSubscriptionRequestError(
            f"'lease_ttl_ms' must be an integer from {LEASE_MIN_MS} to {LEASE_MAX_MS}."
        )
    description = body.get("description")
    if description is not None and (
        not isinstance(description, str) or len(description) > DESCRIPTION_MAX
    ):
        raise InvalidSubscriptionRequestError(
            f"'description' must be a string of at most {DESCRIPTION_MAX} characters."
        )
    webhook_url = wake_stream = None
    if kind == WEBHOOK:
        webhook = body.get("webhook")
        if not isinstance(webhook, dict) or set(webhook) - {"url"} or "url" not in webhook:
            raise InvalidSubscriptionRequestError(
                'A webhook subscription needs "webhook": {"url": "https://..."}.'
            )
        if "wake_stream" in body:
            raise InvalidSubscriptionRequestError("'wake_stream' is for pull-wake subscriptions.")
        webhook_url = check_webhook_url(webhook["url"], allow_loopback)
    else:
        if "webhook" in body:
            raise InvalidSubscriptionRequestError("'webhook' is for webhook subscriptions.")
        try:
            wake_stream = channel_of_path(body.get("wake_stream"))  # type: ignore[arg-type]
        except InvalidChannelError:
            raise InvalidSubscriptionRequestError(
                "A pull-wake subscription needs 'wake_stream': the path of a stream (which "
                "the application creates) that wake events are appended to."
            ) from None
    return SubscriptionConfig(
        type=kind, pattern=pattern, streams=streams, webhook_url=webhook_url,
        wake_stream=wake_stream, lease_ttl_ms=lease, description=description,
    )


# -- webhook URLs (SSRF) ---------------------------------------------------------------------


def _reject(url: str, why: str) -> WebhookUrlRejectedError:
    return WebhookUrlRejectedError(f"Webhook URL refused: {why}", {"url": url[:200]})


def ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host names without any lookup: dotted, bracketed IPv6, and the other
    forms resolvers accept for IPv4 (``2130706433``, ``0x7f.1``, ``127.1``)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, UnicodeError, ValueError):
        return None


def address_allowed(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, allow_loopback: bool
) -> bool:
    """Public unicast only, plus loopback where the deployment allows it (dev and tests)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return allow_loopback
    return bool(
        address.is_global and not address.is_multicast and not address.is_reserved
        and not address.is_link_local and not address.is_private
        and not address.is_unspecified
    )


def is_loopback_host(host: str) -> bool:
    address = ip_literal(host)
    if address is not None:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return address.is_loopback
    return host == "localhost" or host.endswith(".localhost")


def check_webhook_url(raw: object, allow_loopback: bool) -> str:
    """Refuse, from the URL alone and before any connection, what a server must never call.

    ``https://`` to a public host; ``http://`` only to loopback (``localhost``, 127.0.0.0/8,
    ``[::1]``) and only where ``allow_loopback`` is on (``switchboard dev``, tests; off on
    AWS, where 127.0.0.1:9001 is the Lambda runtime API). Private, link-local (the metadata
    service), unspecified, multicast and reserved addresses are refused in every spelling;
    hostnames are resolved and checked again at delivery (adapters/webhooks.py).
    """
    if not isinstance(raw, str) or not raw or len(raw) > URL_MAX:
        raise WebhookUrlRejectedError(f"'webhook.url' must be a URL of at most {URL_MAX} chars.")
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        raise _reject(raw, "it is not a valid URL.") from None
    if parts.scheme not in ("http", "https"):
        raise _reject(raw, "use https://.")
    if parts.username is not None or parts.password is not None:
        raise _reject(raw, "credentials in the URL are not allowed.")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise _reject(raw, "it has no host.")
    if port == 0:
        raise _reject(raw, "port 0.")
    loopback = is_loopback_host(host)
    if loopback:
        if not allow_loopback:
            raise _reject(raw, "loopback addresses are allowed only on a development server.")
        return raw
    if parts.scheme != "https":
        raise _reject(raw, "http:// is allowed only for localhost or 127.0.0.x; use https://.")
    address = ip_literal(host)
    if address is not None and not address_allowed(address, allow_loopback=False):
        raise _reject(raw, "private, link-local and other non-public addresses are refused.")
    if address is None and (host.endswith((".internal", ".local")) or "." not in host):
        raise _reject(raw, "use a public host name.")
    return raw


# -- delivery schedule -----------------------------------------------------------------------


def retry_delay_ms(attempt: int, rng: random.Random) -> int:
    """Delay before retry ``attempt`` (1 = the first retry): 1 s doubling to 60 s, +-20 %."""
    base = min(BACKOFF_BASE_MS * 2 ** max(0, attempt - 1), BACKOFF_MAX_MS)
    return max(1, int(base * (1 + rng.uniform(-BACKOFF_JITTER, BACKOFF_JITTER))))


# -- state -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Link:
    """One stream's cursor in a subscription: ``acked`` is the last offset processed
    (inclusive), ``tail`` the highest offset the server has seen there. Offsets compare as
    strings: within an epoch by seq, across epochs by creation time; ``-1`` sorts first."""

    channel: str
    link_types: frozenset[str]
    acked: str
    tail: str

    @property
    def pending(self) -> bool:
        return self.tail > self.acked

    @property
    def link_type(self) -> str:
        return EXPLICIT if EXPLICIT in self.link_types else GLOB

    def info(self, tail: str | None = None) -> dict[str, Any]:
        tail = tail or self.tail
        return {
            "path": path_of_channel(self.channel),
            "link_type": self.link_type,
            "acked_offset": self.acked,
            "tail_offset": tail,
            "has_pending": tail > self.acked,
        }


@dataclass(frozen=True)
class Wake:
    """The wake in flight (at most one per subscription)."""

    wake_id: str
    generation: int
    snapshot: tuple[tuple[str, str], ...]  # (channel, tail offset) as of the wake
    token_id: str  # the callback (webhook) or claim (pull-wake) token this wake accepts
    issued_ms: int
    delivered: bool = False  # the webhook answered 2xx / the wake event was appended
    attempts: int = 0  # failed deliveries so far
    next_attempt_ms: int = 0
    lease_until_ms: int | None = None  # None: no lease running
    holder: str | None = None  # pull-wake: the worker that claimed it

    def snapshot_map(self) -> dict[str, str]:
        return dict(self.snapshot)


@dataclass(frozen=True)
class WakeSubscription:
    """A subscription with its delivery state; ``version`` guards every change."""

    id: str
    config: SubscriptionConfig
    config_hash: str
    created_ms: int  # also its incarnation: links and tokens of an older one never match
    base_url: str  # where callback and JWKS URLs point (the URL the PUT came to)
    generation: int = 0
    wake: Wake | None = None
    pending: frozenset[str] = frozenset()  # channels that may hold unprocessed messages
    failing: bool = False  # the last delivery failed and a retry is scheduled
    version: int = 0

    @property
    def incarnation(self) -> str:
        return f"{self.created_ms:013d}"

    @property
    def callback_url(self) -> str:
        return f"{self.base_url}/v1/stream/{RESERVED_SEGMENT}/subscriptions/{self.id}/callback"

    @property
    def jwks_url(self) -> str:
        return jwks_url(self.base_url)

    def to_doc(self) -> str:
        wake = None
        if self.wake is not None:
            wake = {**self.wake.__dict__, "snapshot": [list(p) for p in self.wake.snapshot]}
        return json.dumps({
            "id": self.id, "config": self.config.to_dict(), "hash": self.config_hash,
            "created": self.created_ms, "base_url": self.base_url, "gen": self.generation,
            "wake": wake, "pending": sorted(self.pending), "failing": self.failing,
        }, separators=(",", ":"))

    @classmethod
    def from_doc(cls, doc: str, version: int) -> WakeSubscription:
        raw = json.loads(doc)
        wake = None
        if raw.get("wake") is not None:
            w = dict(raw["wake"])
            w["snapshot"] = tuple((c, t) for c, t in w["snapshot"])
            wake = Wake(**w)
        return cls(
            id=raw["id"], config=SubscriptionConfig.from_dict(raw["config"]),
            config_hash=raw["hash"], created_ms=int(raw["created"]), base_url=raw["base_url"],
            generation=int(raw["gen"]), wake=wake, pending=frozenset(raw["pending"]),
            failing=bool(raw["failing"]), version=version,
        )

    def info(self, links: list[Link]) -> dict[str, Any]:
        """The GET (and PUT) response: never a shared secret."""
        out: dict[str, Any] = {
            "id": self.id,
            "subscription_id": self.id,
            "type": self.config.type,
            "pattern": self.config.pattern.text if self.config.pattern else None,
            "streams": [
                {"path": path_of_channel(link.channel), "link_type": link.link_type,
                 "acked_offset": link.acked, "tail_offset": link.tail}
                for link in links
            ],
            "lease_ttl_ms": self.config.lease_ttl_ms,
            "created_at": datetime.fromtimestamp(self.created_ms / 1000, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "status": "failed" if self.failing else "active",
            "description": self.config.description,
            "generation": self.generation,
        }
        if self.config.type == WEBHOOK:
            out["webhook"] = {"url": self.config.webhook_url}
        else:
            assert self.config.wake_stream is not None
            out["wake_stream"] = path_of_channel(self.config.wake_stream)
        return out


def jwks_url(base_url: str) -> str:
    return f"{base_url}/v1/stream/{RESERVED_SEGMENT}/jwks.json"


@dataclass(frozen=True)
class IndexEntry:
    """How the stream consumer finds a subscription from a channel: by the pattern's
    namespace, or by an explicit stream."""

    id: str
    created_ms: int
    type: str
    pattern: Pattern | None = None  # None for an explicit entry
    wake_stream: str | None = None

    def to_doc(self) -> str:
        return json.dumps({"id": self.id, "created": self.created_ms, "type": self.type,
                           "pattern": self.pattern.text if self.pattern else None,
                           "wake_stream": self.wake_stream}, separators=(",", ":"))

    @classmethod
    def from_doc(cls, doc: str) -> IndexEntry:
        raw = json.loads(doc)
        return cls(raw["id"], int(raw["created"]), raw["type"],
                   parse_pattern(raw["pattern"]) if raw.get("pattern") else None,
                   raw.get("wake_stream"))

    @property
    def incarnation(self) -> str:
        return f"{self.created_ms:013d}"


# -- acks ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ack:
    channel: str
    offset: str


@dataclass(frozen=True)
class AckRequest:
    wake_id: str
    generation: int
    acks: tuple[Ack, ...] = ()
    done: bool = False


def parse_ack_request(body: object, with_acks: bool = True) -> AckRequest:
    """A callback, ack or release body: ``{wake_id, generation, acks: [{stream, offset}],
    done}``."""
    if not isinstance(body, dict):
        raise InvalidSubscriptionRequestError("The body must be a JSON object.")
    wake_id, generation = body.get("wake_id"), body.get("generation")
    if not isinstance(wake_id, str) or not wake_id:
        raise InvalidSubscriptionRequestError("'wake_id' (a string) is required.")
    if not isinstance(generation, int) or isinstance(generation, bool) or generation < 1:
        raise InvalidSubscriptionRequestError("'generation' (a positive integer) is required.")
    acks: list[Ack] = []
    raw_acks = body.get("acks", []) if with_acks else []
    if not isinstance(raw_acks, list) or len(raw_acks) > SNAPSHOT_MAX * 10:
        raise InvalidSubscriptionRequestError("'acks' must be a list of {stream, offset}.")
    for item in raw_acks:
        stream = item.get("stream", item.get("path")) if isinstance(item, dict) else None
        offset = item.get("offset") if isinstance(item, dict) else None
        if not isinstance(stream, str) or not isinstance(offset, str):
            raise InvalidSubscriptionRequestError(
                "Each ack is {\"stream\": \"<path>\", \"offset\": \"<offset>\"}."
            )
        try:
            channel = channel_of_path(stream)
        except InvalidChannelError:
            raise InvalidAckError(f"{stream!r} is not a stream path.", {"stream": stream[:200]}
                                  ) from None
        if offset == BEGINNING:
            raise InvalidAckError("An ack names an offset that was processed, not '-1'.",
                                  {"stream": stream})
        if offset != ZERO_OFFSET:
            try:
                decode(offset)
            except SwitchboardError:
                raise InvalidAckError(f"{offset!r} is not an offset.",
                                      {"stream": stream, "offset": offset[:80]}) from None
        acks.append(Ack(channel, offset))
    done = body.get("done", False)
    if not isinstance(done, bool):
        raise InvalidSubscriptionRequestError("'done' must be true or false.")
    return AckRequest(wake_id, generation, tuple(acks), done)


def check_acks(acks: tuple[Ack, ...], links: Mapping[str, Link]) -> None:
    """Every ack names a linked stream and an offset between its acked offset and its tail
    (all are checked before any is applied)."""
    for ack in acks:
        link = links.get(ack.channel)
        if link is None:
            raise InvalidAckError(
                f"Stream {path_of_channel(ack.channel)!r} is not linked to this subscription.",
                {"stream": path_of_channel(ack.channel)},
            )
        if not link.acked <= ack.offset <= link.tail:
            raise InvalidAckError(
                f"Offset {ack.offset} of {path_of_channel(ack.channel)!r} is outside "
                f"[{link.acked}, {link.tail}]: acks move forward, up to the stream's tail.",
                {"stream": path_of_channel(ack.channel), "acked_offset": link.acked,
                 "tail_offset": link.tail},
            )


# -- tokens ----------------------------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class TokenClaims:
    subscription: str
    incarnation: str
    generation: int
    token_id: str
    expires_s: int


def issue_token(key: bytes, claims: TokenClaims) -> str:
    """A callback or claim token: ``base64url(json).base64url(HMAC-SHA256)``, scoped to one
    subscription incarnation, generation and wake."""
    payload = _b64(json.dumps({
        "sub": claims.subscription, "inc": claims.incarnation, "gen": claims.generation,
        "jti": claims.token_id, "exp": claims.expires_s,
    }, separators=(",", ":")).encode())
    mac = hmac.new(key, payload.encode("ascii"), hashlib.sha256).digest()
    return f"{payload}.{_b64(mac)}"


def read_token(keys: list[bytes], authorization: str | None, subscription: str,
               now_s: int) -> TokenClaims:
    """The claims of a ``Bearer`` token, if one of ``keys`` signed it for ``subscription``."""
    token = (authorization or "").removeprefix("Bearer ").removeprefix("bearer ").strip()
    payload, _, mac = token.partition(".")
    try:
        given = _unb64(mac)
        raw = json.loads(_unb64(payload))
    except (ValueError, UnicodeDecodeError):
        raise TokenInvalidError("Send 'Authorization: Bearer <token>' with the token of the "
                                "wake (callback_token, or the claim's token).") from None
    if not any(
        hmac.compare_digest(hmac.new(k, payload.encode("ascii"), hashlib.sha256).digest(), given)
        for k in keys
    ) or not isinstance(raw, dict) or raw.get("sub") != subscription:
        raise TokenInvalidError("The token is not valid for this subscription.")
    claims = TokenClaims(str(raw["sub"]), str(raw["inc"]), int(raw["gen"]), str(raw["jti"]),
                         int(raw["exp"]))
    if now_s >= claims.expires_s:
        raise TokenExpiredError("The token has expired; the wake it belonged to is over.")
    return claims


# -- webhook requests ------------------------------------------------------------------------


def signed_payload(timestamp_s: int, body: bytes) -> bytes:
    """What the Ed25519 signature covers: ``<t>.`` followed by the raw body."""
    return f"{timestamp_s}.".encode("ascii") + body


def signature_header(timestamp_s: int, kid: str, signature: bytes) -> str:
    return f"t={timestamp_s},kid={kid},ed25519={_b64(signature)}"


def webhook_body(sub: WakeSubscription, wake: Wake, links: Mapping[str, Link],
                 token: str) -> dict[str, Any]:
    streams = [links[c].info(tail) for c, tail in wake.snapshot if c in links]
    return {
        "subscription_id": sub.id,
        "wake_id": wake.wake_id,
        "generation": wake.generation,
        "streams": streams,
        "callback_url": sub.callback_url,
        "callback_token": token,
    }


def wake_events(sub: WakeSubscription, wake: Wake, now_ms: int) -> list[dict[str, Any]]:
    """The pull-wake events for ``wake``: one per stream with pending work."""
    return [
        {"type": "wake", "subscription_id": sub.id, "stream": path_of_channel(channel),
         "generation": wake.generation, "wake_id": wake.wake_id, "ts": now_ms}
        for channel, _ in wake.snapshot
    ]


def done_answer(body: bytes) -> bool:
    """Whether a webhook's 2xx answer is ``{"done": true}``."""
    try:
        parsed = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(parsed, dict) and parsed.get("done") is True


@dataclass(frozen=True)
class Job:
    """A unit of delayed work on the wake queue: deliver a wake (webhook POST or wake
    event), or check its lease. Idempotent: it names the wake it is for."""

    kind: str  # "deliver" | "lease"
    subscription: str
    incarnation: str
    wake_id: str
    generation: int
    attempt: int = 0

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "sub": self.subscription, "inc": self.incarnation,
                           "wake": self.wake_id, "gen": self.generation,
                           "attempt": self.attempt}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Job:
        raw = json.loads(text)
        return cls(raw["kind"], raw["sub"], raw["inc"], raw["wake"], int(raw["gen"]),
                   int(raw.get("attempt", 0)))

