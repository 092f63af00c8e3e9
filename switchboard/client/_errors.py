"""Typed errors for SDK users.

Every error the server can send maps to one class, so an application catches what it can
act on (``OffsetExpiredError`` carries the offset to resume from) and lets the rest
propagate. Errors the client raises on its own side reuse the same classes where the meaning
is the same (a closed client is ``ClosedError``; a server that stays unreachable past the
retry budget is ``UnavailableError``).

    SwitchboardError                 .code, .message, .detail, .status
    ├── InvalidFrameError            invalid_frame
    ├── InvalidRequestError          invalid_request
    ├── InvalidChannelError          invalid_channel
    ├── InvalidOffsetError           invalid_offset
    ├── NotFoundError                not_found
    ├── ConflictError                conflict
    ├── OffsetExpiredError           offset_expired   .earliest: where to resume
    ├── EpochMismatchError           epoch_mismatch   .epoch, .earliest
    ├── TooLargeError                too_large
    ├── UnauthorizedError            unauthorized
    ├── ForbiddenError               forbidden
    ├── RateLimitedError             rate_limited     .retry_after (retried by the SDK first)
    ├── UnavailableError             unavailable      (retried by the SDK first)
    ├── InternalError                internal         (retried by the SDK first)
    └── ClosedError                  client_closed    the client was closed
"""

from __future__ import annotations

from typing import Any, ClassVar


class SwitchboardError(Exception):
    """Base class: ``code`` is the contract's error code, ``detail`` its machine data."""

    code: ClassVar[str] = "internal"
    #: Whether retrying the same request later can succeed.
    retryable: ClassVar[bool] = False

    def __init__(
        self, message: str, detail: dict[str, Any] | None = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.detail: dict[str, Any] = detail or {}
        self.status = status

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class InvalidFrameError(SwitchboardError):
    code = "invalid_frame"


class InvalidRequestError(SwitchboardError):
    code = "invalid_request"


class InvalidChannelError(SwitchboardError):
    code = "invalid_channel"


class InvalidOffsetError(SwitchboardError):
    code = "invalid_offset"


class NotFoundError(SwitchboardError):
    code = "not_found"


class ConflictError(SwitchboardError):
    code = "conflict"


class OffsetExpiredError(SwitchboardError):
    """The position is older than the channel's retention: messages were lost to expiry.

    ``earliest`` is the offset to subscribe from to continue with what is still retained.
    """

    code = "offset_expired"

    @property
    def earliest(self) -> str | None:
        value = self.detail.get("earliest")
        return value if isinstance(value, str) else None


class EpochMismatchError(SwitchboardError):
    """The channel was deleted and created again: the held position belongs to an old log."""

    code = "epoch_mismatch"

    @property
    def epoch(self) -> str | None:
        value = self.detail.get("epoch")
        return value if isinstance(value, str) else None

    @property
    def earliest(self) -> str | None:
        value = self.detail.get("earliest")
        return value if isinstance(value, str) else None


class TooLargeError(SwitchboardError):
    code = "too_large"


class UnauthorizedError(SwitchboardError):
    code = "unauthorized"


class ForbiddenError(SwitchboardError):
    code = "forbidden"


class RateLimitedError(SwitchboardError):
    """The channel is taking publishes faster than it can store them. The SDK waits
    :attr:`retry_after` and retries (same id or token) until the publish's deadline."""

    code = "rate_limited"
    retryable = True

    @property
    def retry_after(self) -> float | None:
        """Seconds the server asked to wait before retrying (``detail.retry_after_ms``)."""
        value = self.detail.get("retry_after_ms")
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            return None
        return value / 1000


class UnavailableError(SwitchboardError):
    code = "unavailable"
    retryable = True


class InternalError(SwitchboardError):
    code = "internal"
    retryable = True


class ClosedError(SwitchboardError):
    code = "client_closed"


_BY_CODE: dict[str, type[SwitchboardError]] = {
    cls.code: cls
    for cls in (
        InvalidFrameError,
        InvalidRequestError,
        InvalidChannelError,
        InvalidOffsetError,
        NotFoundError,
        ConflictError,
        OffsetExpiredError,
        EpochMismatchError,
        TooLargeError,
        UnauthorizedError,
        ForbiddenError,
        RateLimitedError,
        UnavailableError,
        InternalError,
    )
}


def error_from_payload(payload: object, status: int | None = None) -> SwitchboardError:
    """Build the typed error for a contract error object ``{"code","message","detail"}``.

    Unknown codes (a newer server) become a plain :class:`SwitchboardError` that keeps the
    code in ``detail["code"]``, so nothing is lost.
    """
    if not isinstance(payload, dict):
        return InternalError(f"The server answered with an unreadable error: {payload!r:.200}")
    code = payload.get("code")
    message = payload.get("message")
    detail = payload.get("detail")
    text = message if isinstance(message, str) and message else f"Server error {code!r}."
    info = detail if isinstance(detail, dict) else {}
    cls = _BY_CODE.get(code) if isinstance(code, str) else None
    if cls is None:
        return SwitchboardError(text, {**info, "code": code}, status)
    return cls(text, info, status)


def clone(error: SwitchboardError, message: str | None = None) -> SwitchboardError:
    """A fresh instance of the same error (optionally with another message), so one failure
    can be raised to several waiters without sharing a traceback."""
    return type(error)(error.message if message is None else message, dict(error.detail),
                       error.status)


def with_hint(error: SwitchboardError, hint: str) -> SwitchboardError:
    """The same error with ``hint`` appended to its message (the server's words first)."""
    message = error.message.rstrip()
    if hint in message:
        return error
    separator = " " if message.endswith((".", "!", "?")) else ". "
    return clone(error, f"{message}{separator}{hint}")
