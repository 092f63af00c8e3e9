"""The AWS limits ``switchboard dev`` enforces, in one place.

By default the emulator fails where AWS fails (docs/architecture.md, "Limits", gives the AWS
documentation page for each number). ``switchboard dev --lenient`` relaxes them for hacking
and says so at startup. Tests can shorten the two WebSocket durations and the REST integration
timeout through environment variables (the values are AWS's; only the clock is sped up):

- ``SWITCHBOARD_DEV_WS_IDLE_S``: idle WebSocket timeout (AWS: 600 s)
- ``SWITCHBOARD_DEV_WS_MAX_S``: WebSocket connection duration (AWS: 7,200 s)
- ``SWITCHBOARD_DEV_REST_TIMEOUT_S``: REST integration timeout (AWS: 29 s)
- ``SWITCHBOARD_DEV_LAMBDA_TIMEOUT_S``: every function's timeout, instead of the ones in
  ``.chalice/config.json``

Lambda timeouts and memory come from ``.chalice/config.json`` through Chalice's own config
resolution (stage, then per-function, then top level), the way ``chalice package`` reads them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

KB = 1024
MB = 1024 * 1024

STAGE = "dev"  # the Chalice stage the dev server runs (.chalice/config.json "stages")
# Lambda's synchronous response limit, as its error message states it ("Response payload
# size exceeded maximum allowed payload size (6291556 bytes)").
LAMBDA_RESPONSE_BYTES = 6_291_556

# The Lambda functions of the app, by their Chalice config name (.chalice/config.json
# "lambda_functions" keys).
API_HANDLER = "api_handler"
WS_CONNECT = "websocket_connect"
WS_MESSAGE = "websocket_message"
WS_DISCONNECT = "websocket_disconnect"
WS_AUTHORIZER = "ws_authorizer"
FANOUT = "fanout_records"
WAKE_RECORDS = "wake_records"
WAKE_JOBS = "wake_jobs"
FUNCTIONS = (API_HANDLER, WS_CONNECT, WS_MESSAGE, WS_DISCONNECT, WS_AUTHORIZER, FANOUT,
             WAKE_RECORDS, WAKE_JOBS)

ENV_WS_IDLE = "SWITCHBOARD_DEV_WS_IDLE_S"
ENV_WS_MAX = "SWITCHBOARD_DEV_WS_MAX_S"
ENV_REST_TIMEOUT = "SWITCHBOARD_DEV_REST_TIMEOUT_S"
ENV_LAMBDA_TIMEOUT = "SWITCHBOARD_DEV_LAMBDA_TIMEOUT_S"


class LimitsError(ValueError):
    """A limit override that cannot be used (the message says which and why)."""


@dataclass(frozen=True)
class FunctionConfig:
    """What the Lambda runtime gives one function: its timeout and memory."""

    name: str
    timeout_s: float
    memory_mb: int


@dataclass(frozen=True)
class Limits:
    """Every limit the emulator enforces; ``None`` means not enforced."""

    lenient: bool
    # API Gateway WebSocket
    ws_frame_bytes: int | None = 32 * KB
    ws_message_bytes: int | None = 128 * KB
    ws_url_chars: int | None = 4096
    authorizer_context_bytes: int | None = 8 * KB
    ws_idle_s: float | None = 600.0
    ws_max_s: float | None = 7200.0
    # API Gateway REST + Lambda
    rest_timeout_s: float | None = 29.0
    lambda_response_bytes: int | None = LAMBDA_RESPONSE_BYTES
    # A binary body reaches the client as bytes only when the request's first Accept value
    # matches binaryMediaTypes; otherwise as the base64 text the Lambda returned.
    binary_needs_accept: bool = True
    # Lambda: per-function timeouts (None: do not enforce) and memory
    functions: dict[str, FunctionConfig] = field(default_factory=dict)

    def function(self, name: str) -> FunctionConfig:
        return self.functions.get(name) or FunctionConfig(name, 900.0, 128)

    def timeout_s(self, name: str) -> float | None:
        """The function's timeout, or None where the limits are relaxed."""
        return None if self.lenient else self.function(name).timeout_s

    def describe(self) -> list[str]:
        """One line per limit, for the startup log."""
        if self.lenient:
            return [
                "LENIENT MODE (--lenient): AWS limits are NOT enforced: WebSocket frames over "
                "32 KB and messages over 128 KB, URLs over 4,096 characters, authorizer "
                "contexts over 8 KB, the 10-minute idle and 2-hour connection limits, REST's "
                "29 s timeout and 6 MB responses, Lambda timeouts, and the Accept rule for "
                "binary responses. What works here may fail on AWS.",
            ]
        timeouts = ", ".join(f"{f.name} {f.timeout_s:g} s" for f in self.functions.values())
        return [
            "AWS limits enforced (switchboard dev --lenient relaxes them): WebSocket frames "
            f"<= {self.ws_frame_bytes} B and messages <= {self.ws_message_bytes} B (else close "
            f"1009), URL <= {self.ws_url_chars} chars, authorizer context <= "
            f"{self.authorizer_context_bytes} B, idle {self.ws_idle_s:g} s, connection "
            f"{self.ws_max_s:g} s; REST timeout {self.rest_timeout_s:g} s (504), responses <= "
            f"{self.lambda_response_bytes} B (502); binary responses need a matching Accept",
            f"Lambda timeouts (.chalice/config.json): {timeouts}",
        ]


def _positive(name: str, raw: str | None) -> float | None:
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise LimitsError(f"{name} must be a number of seconds, not {raw!r}") from None
    if value <= 0:
        raise LimitsError(f"{name} must be positive, not {raw!r}")
    return value


def function_configs(
    config_path: Path, stage: str = STAGE, timeout_override_s: float | None = None
) -> dict[str, FunctionConfig]:
    """Each function's timeout and memory as ``chalice package`` resolves them."""
    from chalice.config import Config

    on_disk: dict[str, Any] = json.loads(config_path.read_text()) if config_path.is_file() else {}
    configs = {}
    for name in FUNCTIONS:
        config = Config(chalice_stage=stage, function_name=name, config_from_disk=on_disk)
        timeout = float(config.lambda_timeout)
        configs[name] = FunctionConfig(
            name,
            timeout_override_s if timeout_override_s is not None else timeout,
            int(config.lambda_memory_size),
        )
    return configs


def load(
    project_dir: Path, lenient: bool = False, environ: dict[str, str] | None = None
) -> Limits:
    """The limits for a dev server of the project at ``project_dir``."""
    env = dict(os.environ if environ is None else environ)
    lambda_override = _positive(ENV_LAMBDA_TIMEOUT, env.get(ENV_LAMBDA_TIMEOUT))
    functions = function_configs(project_dir / ".chalice" / "config.json", STAGE,
                                 lambda_override)
    if lenient:
        return Limits(
            lenient=True, ws_frame_bytes=None, ws_message_bytes=None, ws_url_chars=None,
            authorizer_context_bytes=None, ws_idle_s=None, ws_max_s=None, rest_timeout_s=None,
            lambda_response_bytes=None, binary_needs_accept=False, functions=functions,
        )
    limits = Limits(lenient=False, functions=functions)
    overrides: dict[str, Any] = {}
    for attr, var in (("ws_idle_s", ENV_WS_IDLE), ("ws_max_s", ENV_WS_MAX),
                      ("rest_timeout_s", ENV_REST_TIMEOUT)):
        value = _positive(var, env.get(var))
        if value is not None:
            overrides[attr] = value
    return replace(limits, **overrides)
