"""Every environment variable the SDK and the CLI read, and how credentials are told apart.

A client built with no URL and no credentials reads them from here, so a script written
against ``make dev`` runs unchanged with the key it printed:

    export SWITCHBOARD_URL=http://127.0.0.1:8765 SWITCHBOARD_API_KEY=dev:...
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

#: HTTP base URL of the server.
URL = "SWITCHBOARD_URL"
#: WebSocket URL, when it is not ``<url>/ws`` (on AWS the WebSocket API has its own URL).
WS_URL = "SWITCHBOARD_WS_URL"
#: A backend's API key, ``<key id>:<secret>``; the client mints its own tokens with it.
API_KEY = "SWITCHBOARD_API_KEY"
#: A token issued by a backend (or, for convenience, an API key).
TOKEN = "SWITCHBOARD_TOKEN"

DEFAULT_URL = "http://127.0.0.1:8765"

#: Appended to an ``unauthorized`` error when the client was given no credentials at all.
NO_CREDENTIALS_HINT = (
    "No credentials were given: set SWITCHBOARD_API_KEY to a backend's API key (the one "
    "`switchboard dev` prints when it starts) or SWITCHBOARD_TOKEN to a token, or pass "
    "them explicitly."
)


def is_api_key(credential: str) -> bool:
    """An API key is ``<key id>:<secret>``; a token is a JWT (three dot-separated parts)."""
    return ":" in credential and credential.count(".") != 2


@dataclass(frozen=True)
class Credentials:
    """What to authenticate with: at most one of a token and an API key."""

    token: str | None = None
    api_key: str | None = None


def split_credential(credential: str | None) -> Credentials:
    """A value that may be a token or an API key, sorted into the right field."""
    if not credential:
        return Credentials()
    if is_api_key(credential):
        return Credentials(api_key=credential)
    return Credentials(token=credential)


def credentials_from(environ: Mapping[str, str] | None = None) -> Credentials:
    """``SWITCHBOARD_API_KEY``, else ``SWITCHBOARD_TOKEN`` (a token or an API key)."""
    env = os.environ if environ is None else environ
    key = env.get(API_KEY, "").strip()
    if key:
        return Credentials(api_key=key)
    return split_credential(env.get(TOKEN, "").strip() or None)


def url_from(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return env.get(URL, "").strip() or DEFAULT_URL


def ws_url_from(environ: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if environ is None else environ
    return env.get(WS_URL, "").strip() or None
