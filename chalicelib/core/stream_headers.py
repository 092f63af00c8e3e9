"""Durable Streams header names: one list for CORS (app.py), the handler and OpenAPI.

Constants only, so app.py can build its CORS configuration at import time for free.
"""

STREAM_SEQ = "Stream-Seq"
STREAM_TTL = "Stream-TTL"
STREAM_EXPIRES_AT = "Stream-Expires-At"
STREAM_CLOSED = "Stream-Closed"
STREAM_FORKED_FROM = "Stream-Forked-From"
STREAM_FORK_OFFSET = "Stream-Fork-Offset"
STREAM_FORK_SUB_OFFSET = "Stream-Fork-Sub-Offset"
STREAM_NEXT_OFFSET = "Stream-Next-Offset"
STREAM_CURSOR = "Stream-Cursor"
STREAM_UP_TO_DATE = "Stream-Up-To-Date"
STREAM_SSE_DATA_ENCODING = "Stream-SSE-Data-Encoding"
PRODUCER_ID = "Producer-Id"
PRODUCER_EPOCH = "Producer-Epoch"
PRODUCER_SEQ = "Producer-Seq"
PRODUCER_EXPECTED_SEQ = "Producer-Expected-Seq"
PRODUCER_RECEIVED_SEQ = "Producer-Received-Seq"

# What a browser may send cross-origin, and what it may read from responses.
REQUEST_HEADERS = (
    "Content-Type", "Authorization", "If-None-Match", STREAM_SEQ, STREAM_TTL,
    STREAM_EXPIRES_AT, STREAM_CLOSED, PRODUCER_ID, PRODUCER_EPOCH, PRODUCER_SEQ,
    STREAM_FORKED_FROM, STREAM_FORK_OFFSET, STREAM_FORK_SUB_OFFSET,
)
RESPONSE_HEADERS = (
    STREAM_NEXT_OFFSET, STREAM_CURSOR, STREAM_UP_TO_DATE, STREAM_CLOSED, STREAM_TTL,
    STREAM_EXPIRES_AT, STREAM_SSE_DATA_ENCODING, "ETag", "Location", PRODUCER_EPOCH,
    PRODUCER_SEQ, PRODUCER_EXPECTED_SEQ, PRODUCER_RECEIVED_SEQ,
)
