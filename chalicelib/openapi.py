"""The OpenAPI 3.1 document of the HTTP API, served at ``GET /v1/openapi.json``.

tests/functional/test_openapi.py keeps it true: every Chalice route is documented and nothing
else is, and real responses validate against the schemas; tests/e2e/test_schemathesis.py
fuzzes the dev server with it.
"""

from __future__ import annotations

from typing import Any

from . import __version__

_CHANNEL = {
    "name": "channel", "in": "path", "required": True,
    "description": "Channel name: ':'-separated segments of [A-Za-z0-9._~@-], 1-256 bytes.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 256},
    "example": "runs:7f3a",
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _json(ref: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
    }


_AUTH_ERRORS = {
    "401": _error("Missing, invalid or expired credentials."),
    "403": {
        "description": "The credentials do not allow this operation on this channel; or "
                       "API Gateway's own answer for a path no route takes (a channel name "
                       "with '/' or control characters), with a `message` instead.",
        "content": {"application/json": {"schema": {"oneOf": [
            {"$ref": "#/components/schemas/Error"},
            {"$ref": "#/components/schemas/GatewayError"}]}}},
    },
}
_COMMON = {"400": _error("Invalid input."), **_AUTH_ERRORS,
           "500": _error("Server failure (no details are given).")}

_STREAM_RESPONSES = {
    "200": {"description": "Stream data or metadata (Durable Streams).",
            "content": {"*/*": {"schema": {}}}},
    "201": {"description": "Stream created."},
    "204": {"description": "Appended, deleted, or no new data before the long-poll timeout."},
    "304": {"description": "Not modified (If-None-Match)."},
    "404": _error("The stream does not exist."),
    "409": _error("Configuration, content type, Stream-Seq or producer conflict."),
    "410": _error("The offset is before the retained log."),
    "413": _error("The body is over the size limit, or the fork's source has the most "
                  "forks a stream may have."),
    "429": _error("Too many long-poll or SSE reads of this principal at once, or the stream "
                  "is written faster than it can store."),
    **_COMMON,
}


_SUBSCRIPTION = {
    "name": "subscription", "in": "path", "required": True,
    "description": "Subscription id: 1-128 of [A-Za-z0-9._~@-].",
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._~@-]{1,128}$"},
    "example": "agent-runs",
}
_SUBSCRIPTION_ERRORS = {
    "400": _error("Invalid input (code INVALID_REQUEST or WEBHOOK_URL_REJECTED)."),
    "401": _error("Missing or invalid credentials or wake token (UNAUTHORIZED, "
                  "TOKEN_INVALID, TOKEN_EXPIRED)."),
    "403": _error("The credentials do not cover the subscription's streams."),
    "404": _error("No such subscription (SUBSCRIPTION_NOT_FOUND)."),
    "500": _error("Server failure (no details are given)."),
}
_ACK_BODY = {"required": True, "content": {"application/json": {"schema": {
    "$ref": "#/components/schemas/WakeAck"}}}}


def _subscription_post(operation: str, description: str, ok: dict[str, Any],
                       security: bool = True) -> dict[str, Any]:
    item: dict[str, Any] = {
        "parameters": [_SUBSCRIPTION],
        "post": {"operationId": operation, "description": description,
                 "requestBody": _ACK_BODY if operation != "addSubscriptionStreams" else {
                     "required": True, "content": {"application/json": {"schema": {
                         "type": "object", "required": ["streams"],
                         "properties": {"streams": {"type": "array", "items": {
                             "type": "string"}}}}}}},
                 "responses": {**ok, "409": _error(
                     "FENCED (a stale wake), ALREADY_CLAIMED, NO_PENDING_WORK or "
                     "INVALID_OFFSET."), **_SUBSCRIPTION_ERRORS}},
    }
    if operation == "claimWake":
        item["post"]["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"type": "object", "required": ["worker"],
                       "properties": {"worker": {"type": "string"}}}}}}
    if not security:
        item["post"]["security"] = [{"wakeToken": []}]
    return item


def _header(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": False, "description": description,
            "schema": {"type": "string"}}


def _query(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": {"type": "string"}}


_WRITE_HEADERS = [
    _header("Stream-Closed", "'true' closes the stream (after this request's data)."),
    _header("Stream-Seq", "Writer sequence: byte-wise increasing per stream, else 409."),
]
_STREAM_PARAMETERS: dict[str, list[dict[str, Any]]] = {
    "get": [
        _query("offset", "-1 (default), now, or an offset from Stream-Next-Offset."),
        _query("live", "long-poll or sse."),
        _query("cursor", "Echo of Stream-Cursor (long-poll)."),
        _header("If-None-Match", "An ETag from an earlier read: 304 when unchanged."),
    ],
    "put": [
        _header("Stream-TTL", "Lifetime in seconds (a non-negative integer)."),
        _header("Stream-Expires-At", "Absolute expiry, RFC 3339 (not with Stream-TTL)."),
        _header("Stream-Forked-From", "Create this stream as a fork of that stream's URL."),
        _header("Stream-Fork-Offset", "Where the fork branches (an offset of the source)."),
        _header("Stream-Fork-Sub-Offset", "Messages (JSON) or bytes past Stream-Fork-Offset."),
        *_WRITE_HEADERS[:1],
    ],
    "post": [
        *_WRITE_HEADERS,
        _header("Producer-Id", "Idempotent producer id (with Producer-Epoch and -Seq)."),
        _header("Producer-Epoch", "Producer epoch, a non-negative integer."),
        _header("Producer-Seq", "Per-request sequence within the epoch."),
    ],
}


def document() -> dict[str, Any]:
    message = {
        "type": "object",
        "required": ["channel", "seq", "offset", "epoch", "id", "data", "ts", "publisher"],
        "properties": {
            "channel": {"type": "string"},
            "seq": {"type": "integer", "minimum": 1},
            "offset": {"type": "string"},
            "epoch": {"type": "string"},
            "id": {"type": ["string", "null"]},
            "data": {"description": "Any JSON value."},
            "ts": {"type": "integer", "description": "Acceptance time, epoch ms."},
            "publisher": {"type": ["string", "null"]},
        },
    }
    ack = {
        "type": "object",
        "required": ["channel", "seq", "offset", "duplicate"],
        "properties": {
            "channel": {"type": "string"}, "seq": {"type": "integer", "minimum": 1},
            "offset": {"type": "string"}, "duplicate": {"type": "boolean"},
        },
    }
    new_message = {
        "type": "object", "required": ["data"], "additionalProperties": False,
        "properties": {"data": {"description": "Any JSON value (64 KiB encoded at most)."},
                       "id": {"type": "string", "minLength": 1, "maxLength": 128,
                              "description": "Idempotency key."}},
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Switchboard",
            "version": __version__,
            "description": "Durable, addressable pub/sub channels. WebSocket protocol and "
                           "semantics: docs/protocol.md.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": {
            "/v1/health": {"get": {
                "operationId": "health", "security": [],
                "responses": {"200": _json("Health", "The service is up.")}}},
            "/v1/openapi.json": {"get": {
                "operationId": "openapi", "security": [],
                "responses": {"200": {"description": "This document.",
                                      "content": {"application/json": {"schema": {}}}}}}},
            "/v1/tokens": {"post": {
                "operationId": "issueToken",
                "description": "Issue a short-lived token for a client. Requires an API key "
                               "(Bearer <key id>:<secret>).",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/TokenRequest"}}}},
                "responses": {"201": _json("Token", "The token."),
                              "413": _error("The body is too large."), **_COMMON}}},
            "/v1/channels/{channel}": {
                "parameters": [_CHANNEL],
                "get": {"operationId": "getChannel",
                        "responses": {"200": _json("ChannelInfo", "Channel metadata."),
                                      "404": _error("No such channel."), **_COMMON}},
                "put": {"operationId": "createChannel",
                        "requestBody": {"required": False, "content": {"application/json": {
                            "schema": {"type": "object", "additionalProperties": False,
                                       "properties": {"retention": {
                                           "type": "integer", "minimum": 1}}}}}},
                        "responses": {"200": _json("ChannelInfo", "It already existed."),
                                      "201": _json("ChannelInfo", "Created."),
                                      "409": _error("It exists with another retention."),
                                      "413": _error("The body is too large."), **_COMMON}},
                "delete": {"operationId": "deleteChannel",
                           "responses": {"204": {"description": "Deleted."},
                                         "404": _error("No such channel."), **_COMMON}},
            },
            "/v1/channels/{channel}/messages": {
                "parameters": [_CHANNEL],
                "get": {
                    "operationId": "history",
                    "parameters": [
                        {"name": "from", "in": "query", "required": False,
                         "schema": {"type": "string"},
                         "description": "-1 (default), now, or an offset."},
                        {"name": "limit", "in": "query", "required": False,
                         "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                    ],
                    "responses": {"200": _json("History", "A page of messages."),
                                  "404": _error("No such channel."),
                                  "409": _error("The offset is from an older epoch."),
                                  "410": _error("The offset is before the retained log."),
                                  **_COMMON}},
                "post": {
                    "operationId": "publish",
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": {"oneOf": [
                            {"$ref": "#/components/schemas/NewMessage"},
                            {"type": "array", "minItems": 1, "maxItems": 500,
                             "items": {"$ref": "#/components/schemas/NewMessage"}}]}}}},
                    "responses": {
                        "200": {"description": "Every message was a duplicate.",
                                "content": {"application/json": {"schema": {"oneOf": [
                                    {"$ref": "#/components/schemas/Ack"},
                                    {"type": "array",
                                     "items": {"$ref": "#/components/schemas/Ack"}}]}}}},
                        "201": {"description": "Stored: one ack, or a list in order.",
                                "content": {"application/json": {"schema": {"oneOf": [
                                    {"$ref": "#/components/schemas/Ack"},
                                    {"type": "array",
                                     "items": {"$ref": "#/components/schemas/Ack"}}]}}}},
                        "413": _error("A message or the batch is too large."),
                        "503": _error("The channel is too busy; retry (ids make it safe)."),
                        **_COMMON}},
            },
            "/v1/channels/{channel}/presence": {
                "parameters": [_CHANNEL],
                "get": {"operationId": "presenceMembers",
                        "description": "The channel's members now (needs subscribe or "
                                       "history). Changes are logged in the channel "
                                       "<channel>@presence.",
                        "responses": {"200": _json("Members", "The members, oldest first."),
                                      **_COMMON}},
            },
            "/v1/channels/{channel}/presence/{instance}": {
                "parameters": [_CHANNEL, {
                    "name": "instance", "in": "path", "required": True,
                    "description": "The backend's name for this member (no '/', '#' or "
                                   "spaces), e.g. worker-3.",
                    "schema": {"type": "string", "minLength": 1, "maxLength": 128}}],
                "put": {"operationId": "enterPresence",
                        "description": "Enter or update presence ({\"data\": {...}}), or "
                                       "with no body heartbeat; needs presence. A member "
                                       "not heard from for expires_in seconds is gone.",
                        "requestBody": {"required": False, "content": {"application/json": {
                            "schema": {"type": "object", "additionalProperties": False,
                                       "properties": {"data": {"type": "object"}}}}}},
                        "responses": {"200": _json("PresenceEntered", "Entered or kept."),
                                      "404": _error("A heartbeat for a member that left or "
                                                    "expired: enter again."),
                                      "413": _error("The data is over 1 KB, or the channel "
                                                    "has the most members it may have."),
                                      "429": _error("Updates too fast; retry_after_ms."),
                                      "503": _error("The presence log is too busy; retry."),
                                      **_COMMON}},
                "delete": {"operationId": "leavePresence",
                           "responses": {"204": {"description": "Left."},
                                         "404": _error("Not a member."), **_COMMON}},
            },
            "/v1/stream/{channel}": {
                "parameters": [_CHANNEL],
                "description": "The Durable Streams protocol: docs/durable-streams.md.",
                **{method: {"operationId": f"stream{method.title()}",
                            "parameters": _STREAM_PARAMETERS.get(method, []),
                            "responses": _STREAM_RESPONSES}
                   for method in ("get", "head", "put", "post", "delete")},
            },
            "/v1/stream/{channel}/{path+}": {
                "parameters": [_CHANNEL, {
                    "name": "path+", "in": "path", "required": True,
                    "description": "More segments of a multi-segment stream path: "
                                   "/v1/stream/events/a is the channel events:a.",
                    "schema": {"type": "string", "minLength": 1}}],
                "description": "The same stream as /v1/stream/{channel} with its segments "
                               "joined by ':' (docs/durable-streams.md, 'Stream paths').",
                **{method: {"operationId": f"streamPath{method.title()}",
                            "parameters": _STREAM_PARAMETERS.get(method, []),
                            "responses": _STREAM_RESPONSES}
                   for method in ("get", "head", "put", "post", "delete")},
            },
            "/v1/stream/__ds/jwks.json": {"get": {
                "operationId": "webhookJwks", "security": [],
                "description": "The public keys (Ed25519, JWK set) that verify webhook "
                               "signatures.",
                "responses": {"200": {"description": "The JWK set.", "content": {
                    "application/jwk-set+json": {"schema": {"type": "object"}}}}}}},
            "/v1/stream/__ds/subscriptions": {"get": {
                "operationId": "listSubscriptions",
                "description": "The subscriptions the caller may administer (a Switchboard "
                               "addition), 100 per page.",
                "parameters": [_query("after", "Continue after this subscription id."),
                               {"name": "limit", "in": "query", "required": False,
                                "schema": {"type": "integer", "minimum": 1, "maximum": 100}}],
                "responses": {"200": {"description": "A page.", "content": {
                    "application/json": {"schema": {"type": "object",
                                                    "required": ["subscriptions", "next"]}}}},
                    **_SUBSCRIPTION_ERRORS}}},
            "/v1/stream/__ds/subscriptions/{subscription}": {
                "parameters": [_SUBSCRIPTION],
                "description": "Durable Streams subscriptions (webhook, pull-wake): "
                               "docs/durable-streams.md, 'Subscriptions'.",
                "put": {"operationId": "putSubscription",
                        "requestBody": {"required": True, "content": {"application/json": {
                            "schema": {"$ref": "#/components/schemas/SubscriptionRequest"}}}},
                        "responses": {
                            "200": _json("Subscription", "It exists with this configuration."),
                            "201": _json("Subscription", "Created."),
                            "409": _error("It exists with another configuration "
                                          "(SUBSCRIPTION_ALREADY_EXISTS)."),
                            **_SUBSCRIPTION_ERRORS}},
                "get": {"operationId": "getSubscription",
                        "responses": {"200": _json("Subscription", "The subscription."),
                                      **_SUBSCRIPTION_ERRORS}},
                "delete": {"operationId": "deleteSubscription",
                           "responses": {"204": {"description": "Deleted (or never existed)."},
                                         **_SUBSCRIPTION_ERRORS}},
            },
            "/v1/stream/__ds/subscriptions/{subscription}/streams": _subscription_post(
                "addSubscriptionStreams", "Link more streams explicitly (at their tail).",
                {"204": {"description": "Linked."}}),
            "/v1/stream/__ds/subscriptions/{subscription}/streams/{stream+}": {
                "parameters": [_SUBSCRIPTION, {
                    "name": "stream+", "in": "path", "required": True,
                    "description": "The stream path, URL-encoded or not.",
                    "schema": {"type": "string", "minLength": 1}}],
                "delete": {"operationId": "removeSubscriptionStream",
                           "responses": {"204": {"description": "Unlinked."},
                                         **_SUBSCRIPTION_ERRORS}},
            },
            "/v1/stream/__ds/subscriptions/{subscription}/callback": _subscription_post(
                "wakeCallback", "A webhook consumer's acks; done ends the wake, else the "
                "lease is extended. Authorization: Bearer <callback_token>.",
                {"200": _json("WakeAckResult", "Applied.")}, security=False),
            "/v1/stream/__ds/subscriptions/{subscription}/claim": _subscription_post(
                "claimWake", "A pull-wake worker takes the pending work.",
                {"200": _json("WakeClaim", "Claimed.")}),
            "/v1/stream/__ds/subscriptions/{subscription}/ack": _subscription_post(
                "ackWake", "A pull-wake worker's acks (heartbeat without done). "
                "Authorization: Bearer <claim token>.",
                {"200": _json("WakeAckResult", "Applied.")}, security=False),
            "/v1/stream/__ds/subscriptions/{subscription}/release": _subscription_post(
                "releaseWake", "Give the claimed wake back; a new wake follows if work is "
                "left. Authorization: Bearer <claim token>.",
                {"204": {"description": "Released."}}, security=False),
        },
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http", "scheme": "bearer",
                    "description": "A token from POST /v1/tokens, or (backends) an API key as "
                                   "<key id>:<secret>."},
                "wakeToken": {
                    "type": "http", "scheme": "bearer",
                    "description": "The wake's callback_token (webhook) or claim token "
                                   "(pull-wake)."}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                    "type": "object", "required": ["code", "message", "detail"],
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                                   "detail": {"type": "object"}}}}},
                "GatewayError": {"type": "object", "required": ["message"],
                                 "properties": {"message": {"type": "string"}}},
                "Health": {"type": "object", "required": ["status"],
                           "properties": {"status": {"const": "ok"},
                                          "service": {"type": "string"},
                                          "version": {"type": "string"}}},
                "Message": message,
                "NewMessage": new_message,
                "Ack": ack,
                "History": {"type": "object", "required": ["messages", "next", "up_to_date"],
                            "properties": {"messages": {"type": "array", "items": {
                                "$ref": "#/components/schemas/Message"}},
                                "next": {"type": "string"},
                                "up_to_date": {"type": "boolean"}}},
                "ChannelInfo": {
                    "type": "object",
                    "required": ["name", "epoch", "head", "head_seq", "retention", "created"],
                    "properties": {"name": {"type": "string"}, "epoch": {"type": "string"},
                                   "head": {"type": "string"},
                                   "head_seq": {"type": "integer", "minimum": 0},
                                   "retention": {"type": "integer"},
                                   "created": {"type": "integer"},
                                   "content_type": {"type": "string"},
                                   "message_count": {"type": "integer", "minimum": 0}}},
                "Member": {
                    "type": "object",
                    "required": ["key", "client_id", "data", "entered", "updated", "via"],
                    "properties": {"key": {"type": "string"},
                                   "client_id": {"type": ["string", "null"]},
                                   "data": {"type": "object"},
                                   "entered": {"type": "integer"},
                                   "updated": {"type": "integer"},
                                   "via": {"enum": ["websocket", "http"]}}},
                "Members": {"type": "object", "required": ["channel", "members"],
                            "properties": {"channel": {"type": "string"},
                                           "members": {"type": "array", "items": {
                                               "$ref": "#/components/schemas/Member"}}}},
                "PresenceEntered": {
                    "type": "object",
                    "required": ["channel", "member", "heartbeat_s", "expires_in"],
                    "properties": {"channel": {"type": "string"},
                                   "member": {"type": "string"},
                                   "heartbeat_s": {"type": "integer"},
                                   "expires_in": {"type": "integer"}}},
                "TokenRequest": {
                    "type": "object", "required": ["client_id", "capabilities"],
                    "additionalProperties": False,
                    "properties": {
                        "client_id": {"type": "string", "minLength": 1, "maxLength": 128},
                        "capabilities": {"type": "object", "additionalProperties": {
                            "type": "array", "items": {"enum": [
                                "subscribe", "publish", "history", "admin", "presence",
                                "*"]}}},
                        "ttl": {"type": "integer", "minimum": 1, "maximum": 86400}}},
                "SubscriptionRequest": {
                    "type": "object", "required": ["type"], "additionalProperties": False,
                    "properties": {
                        "type": {"enum": ["webhook", "pull-wake"]},
                        "pattern": {"type": "string", "description": "A glob: * one segment, "
                                    "** zero or more; the first segment literal."},
                        "streams": {"type": "array", "items": {"type": "string"}},
                        "webhook": {"type": "object", "required": ["url"],
                                    "properties": {"url": {"type": "string"}}},
                        "wake_stream": {"type": "string"},
                        "lease_ttl_ms": {"type": "integer", "minimum": 1000,
                                         "maximum": 600000},
                        "description": {"type": "string"}}},
                "Subscription": {
                    "type": "object", "required": ["id", "type", "streams", "status"],
                    "properties": {
                        "id": {"type": "string"}, "subscription_id": {"type": "string"},
                        "type": {"type": "string"}, "pattern": {"type": ["string", "null"]},
                        "streams": {"type": "array", "items": {"type": "object"}},
                        "webhook": {"type": "object"}, "wake_stream": {"type": "string"},
                        "lease_ttl_ms": {"type": "integer"}, "created_at": {"type": "string"},
                        "status": {"enum": ["active", "failed"]},
                        "description": {"type": ["string", "null"]},
                        "generation": {"type": "integer"}}},
                "WakeAck": {
                    "type": "object", "required": ["wake_id", "generation"],
                    "properties": {
                        "wake_id": {"type": "string"}, "generation": {"type": "integer"},
                        "acks": {"type": "array", "items": {
                            "type": "object", "required": ["stream", "offset"],
                            "properties": {"stream": {"type": "string"},
                                           "offset": {"type": "string"}}}},
                        "done": {"type": "boolean"}}},
                "WakeAckResult": {
                    "type": "object", "required": ["ok", "next_wake"],
                    "properties": {"ok": {"type": "boolean"},
                                   "next_wake": {"type": "boolean"}}},
                "WakeClaim": {
                    "type": "object",
                    "required": ["wake_id", "generation", "token", "streams", "lease_ttl_ms"],
                    "properties": {"wake_id": {"type": "string"},
                                   "generation": {"type": "integer"},
                                   "token": {"type": "string"},
                                   "streams": {"type": "array", "items": {"type": "object"}},
                                   "lease_ttl_ms": {"type": "integer"}}},
                "Token": {"type": "object",
                          "required": ["token", "client_id", "expires", "capabilities"],
                          "properties": {"token": {"type": "string"},
                                         "client_id": {"type": "string"},
                                         "expires": {"type": "integer"},
                                         "capabilities": {"type": "object"}}},
            },
        },
    }
