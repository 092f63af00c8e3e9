"""Shared fixtures. AWS credentials are fake everywhere: nothing here may reach AWS."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# Set before boto3/moto are imported by any test module.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        # moto 5.2 + current botocore: stream calls fail without this (see shared notes).
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "POWERTOOLS_METRICS_NAMESPACE": "SwitchboardTest",
        "POWERTOOLS_DEV": "false",
    }
)
# The SDK and the CLI read these: credentials a developer exported for their own
# `make dev` must not leak into the test servers (tests pass what they mean explicitly).
for _var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "SWITCHBOARD_URL", "SWITCHBOARD_WS_URL",
             "SWITCHBOARD_TOKEN", "SWITCHBOARD_API_KEY"):
    os.environ.pop(_var, None)


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    from chalicelib.settings import get_settings

    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
