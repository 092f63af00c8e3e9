"""Errors a client can see, with the contract's codes and HTTP statuses.

Every error that reaches a client is a :class:`SwitchboardError`; its ``message`` says what
went wrong and what to do, and its ``detail`` carries machine-readable data (an earliest
offset, a limit). Nothing else is ever shown to a client.

    SwitchboardError
    ├── InvalidFrameError        invalid_frame     400
    ├── InvalidRequestError      invalid_request   400   (HTTP bodies and parameters)
    ├── InvalidChannelError      invalid_channel   400
    ├── InvalidOffsetError       invalid_offset    400
    ├── NotFoundError            not_found         404
    ├── ConflictError            conflict          409
    ├── OffsetExpiredError       offset_expired    410
    ├── GoneError                gone              410   (a deleted stream forks still hold)
    ├── EpochMismatchError       epoch_mismatch    409
    ├── TooLargeError            too_large         413
    ├── UnauthorizedError        unauthorized      401
    ├── ForbiddenError           forbidden         403
    ├── RateLimitedError         rate_limited      429
    ├── UnavailableError         unavailable       503
    └── InternalError            internal          500
"""

from __future__ import annotations

from typing import Any, ClassVar


class SwitchboardError(Exception):
    code: ClassVar[str] = "internal"
    status: ClassVar[int] = 500

    def __init__(self, message: str, detail: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail or {}

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "detail": self.detail}


class InvalidFrameError(SwitchboardError):
    code = "invalid_frame"
    status = 400


class InvalidRequestError(SwitchboardError):
    code = "invalid_request"
    status = 400


class InvalidChannelError(SwitchboardError):
    code = "invalid_channel"
    status = 400


class InvalidOffsetError(SwitchboardError):
    code = "invalid_offset"
    status = 400


class NotFoundError(SwitchboardError):
    code = "not_found"
    status = 404


class ConflictError(SwitchboardError):
    code = "conflict"
    status = 409


class OffsetExpiredError(SwitchboardError):
    code = "offset_expired"
    status = 410


class GoneError(SwitchboardError):
    code = "gone"
    status = 410


class EpochMismatchError(SwitchboardError):
    code = "epoch_mismatch"
    status = 409


class TooLargeError(SwitchboardError):
    code = "too_large"
    status = 413


class UnauthorizedError(SwitchboardError):
    code = "unauthorized"
    status = 401


class ForbiddenError(SwitchboardError):
    code = "forbidden"
    status = 403


class RateLimitedError(SwitchboardError):
    code = "rate_limited"
    status = 429


class UnavailableError(SwitchboardError):
    code = "unavailable"
    status = 503


class InternalError(SwitchboardError):
    code = "internal"
    status = 500
