"""The public surface is pinned: adding or removing a name is a deliberate change."""

from __future__ import annotations

import switchboard.client as client
import switchboard.client.sync as sync

EXPECTED = {
    "BEGINNING", "NOW", "Ack", "AgentRun", "Channel", "ChannelInfo", "ClosedError",
    "ConflictError", "ConnectionStats", "EpochMismatchError", "ForbiddenError", "Gap",
    "HistoryPage", "InternalError", "InvalidChannelError", "InvalidFrameError",
    "InvalidOffsetError", "InvalidRequestError", "Message", "NotFoundError",
    "OffsetExpiredError", "Options", "RateLimitedError", "Recovery", "RecoveryStats",
    "StreamResult", "Subscription", "Switchboard", "SwitchboardError", "TextAssembler",
    "TooLargeError", "UnauthorizedError", "UnavailableError", "read_text", "stream_text",
    # Durable Streams subscriptions (webhook and pull-wake)
    "Subscriptions", "Wake",
    # Presence
    "Presence", "PresenceEvent", "PresenceMember", "PresenceSubscription",
}


def test_public_names_are_pinned_and_importable() -> None:
    assert set(client.__all__) == EXPECTED
    for name in client.__all__:
        assert hasattr(client, name), name
    assert set(sync.__all__) == {
        "Channel", "Presence", "PresenceSubscription", "Subscription", "Switchboard"}


def test_every_contract_error_code_has_a_typed_error() -> None:
    from switchboard.client._errors import error_from_payload

    codes = [
        "invalid_frame", "invalid_request", "invalid_channel", "invalid_offset", "not_found",
        "conflict", "offset_expired", "epoch_mismatch", "too_large", "forbidden",
        "unauthorized", "rate_limited", "unavailable", "internal",
    ]
    for code in codes:
        error = error_from_payload({"code": code, "message": "m", "detail": {}})
        assert error.code == code and type(error).__name__.endswith("Error")
        assert type(error) is not client.SwitchboardError
    unknown = error_from_payload({"code": "brand_new", "message": "m"})
    assert type(unknown) is client.SwitchboardError and unknown.detail["code"] == "brand_new"
