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
            "/v1/stream/{channel}": {
                "parameters": [_CHANNEL],
                "description": "The Durable Streams protocol: docs/durable-streams.md.",
                **{method: {"operationId": f"stream{method.title()}",
                            "parameters": _STREAM_PARAMETERS.get(method, []),
                            "responses": _STREAM_RESPONSES}
                   for method in ("get", "head", "put", "post", "delete")},
            },
        },
        "components": {
            "securitySchemes": {"bearer": {
                "type": "http", "scheme": "bearer",
                "description": "A token from POST /v1/tokens, or (backends) an API key as "
                               "<key id>:<secret>."}},
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
                "TokenRequest": {
                    "type": "object", "required": ["client_id", "capabilities"],
                    "additionalProperties": False,
                    "properties": {
                        "client_id": {"type": "string", "minLength": 1, "maxLength": 128},
                        "capabilities": {"type": "object", "additionalProperties": {
                            "type": "array", "items": {"enum": [
                                "subscribe", "publish", "history", "admin", "*"]}}},
                        "ttl": {"type": "integer", "minimum": 1, "maximum": 86400}}},
                "Token": {"type": "object",
                          "required": ["token", "client_id", "expires", "capabilities"],
                          "properties": {"token": {"type": "string"},
                                         "client_id": {"type": "string"},
                                         "expires": {"type": "integer"},
                                         "capabilities": {"type": "object"}}},
            },
        },
    }
