"""The REST API's binary media types as deployed: what infra/ writes and `switchboard dev` plays.

API Gateway decodes a Lambda's base64 body for a request whose *first* Accept value matches
one of these. Chalice declares its own list (app.api.binary_types: which responses Chalice
base64-encodes); the deployed API adds ``*/*`` so that every Accept matches, since Durable
Streams clients, fetch and curl send ``Accept: */*`` and would otherwise get a byte stream as
base64 text. Text responses are unaffected: the Lambda returns them unencoded.

Plain data, no imports beyond the standard library: the dev server loads this file by path.
"""

from __future__ import annotations

EXTRA_BINARY_MEDIA_TYPES = ("*/*",)


def deployed_binary_media_types(app_binary_types: list[str]) -> list[str]:
    """The API's binaryMediaTypes: the app's, then ours (order kept, no repeats)."""
    return list(dict.fromkeys([*app_binary_types, *EXTRA_BINARY_MEDIA_TYPES]))
