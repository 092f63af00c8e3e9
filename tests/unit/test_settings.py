"""Settings from the environment: pydantic-settings' rules, kept without pydantic."""

from __future__ import annotations

import pytest

from chalicelib.settings import Settings


def test_defaults() -> None:
    s = Settings.from_env({})
    assert s == Settings()
    assert (s.region, s.auth_enabled, s.max_batch, s.allowed_origins) == (
        "us-east-1", True, 500, [])
    assert s.dynamodb_endpoint is None and s.namespace_retention == {}


def test_reads_prefixed_variables_case_insensitively_and_aws_region() -> None:
    s = Settings.from_env({
        "SWITCHBOARD_MAX_BATCH": " 7 ", "switchboard_channels_table": "c",
        "AWS_REGION": "eu-west-1", "SWITCHBOARD_REGION": "ignored", "SWITCHBOARD_NOPE": "x",
        "SWITCHBOARD_LONG_POLL_TIMEOUT_S": "2.5", "SWITCHBOARD_DYNAMODB_ENDPOINT": "",
        "SWITCHBOARD_MAX_FRAME_BYTES": "1_000_000",
    })
    assert (s.max_batch, s.channels_table, s.region) == (7, "c", "eu-west-1")
    assert s.long_poll_timeout_s == 2.5 and s.dynamodb_endpoint == ""
    assert s.max_frame_bytes == 1_000_000


@pytest.mark.parametrize(("raw", "expected"), [
    ("true", True), ("False", False), ("1", True), ("0", False), ("yes", True), ("off", False),
])
def test_booleans(raw: str, expected: bool) -> None:
    assert Settings.from_env({"SWITCHBOARD_AUTH_ENABLED": raw}).auth_enabled is expected


def test_json_lists_and_maps() -> None:
    s = Settings.from_env({
        "SWITCHBOARD_ALLOWED_ORIGINS": '["https://a.example", "*"]',
        "SWITCHBOARD_NAMESPACE_RETENTION": '{"runs": 3600, "chat": "60"}',
    })
    assert s.allowed_origins == ["https://a.example", "*"]
    assert s.namespace_retention == {"runs": 3600, "chat": 60}
    assert s.retention_for("runs") == 3600 and s.retention_for("other") == 24 * 3600


@pytest.mark.parametrize(("name", "raw"), [
    ("SWITCHBOARD_MAX_BATCH", "20000"),
    ("SWITCHBOARD_MAX_BATCH", "4.5"),
    ("SWITCHBOARD_MAX_BATCH", ""),
    ("SWITCHBOARD_MAX_MESSAGE_BYTES", str(120 * 1024 + 1)),
    ("SWITCHBOARD_LONG_POLL_TIMEOUT_S", "0"),
    ("SWITCHBOARD_LONG_POLL_TIMEOUT_S", "nan"),
    ("SWITCHBOARD_TOKEN_LEEWAY_S", "-1"),
    ("SWITCHBOARD_AUTH_ENABLED", "maybe"),
    ("SWITCHBOARD_ALLOWED_ORIGINS", "*"),
    ("SWITCHBOARD_ALLOWED_ORIGINS", "[1]"),
    ("SWITCHBOARD_NAMESPACE_RETENTION", '{"runs": 0}'),
    ("SWITCHBOARD_NAMESPACE_RETENTION", "[]"),
])
def test_invalid_values_are_refused_by_name(name: str, raw: str) -> None:
    with pytest.raises(ValueError, match=name):
        Settings.from_env({name: raw})


def test_values_override_the_environment_and_constructor_checks_too() -> None:
    env = {"SWITCHBOARD_MAX_BATCH": "7", "SWITCHBOARD_AUTH_ENABLED": "false"}
    assert Settings.from_env(env, max_batch=3).max_batch == 3
    assert Settings.from_env(env, max_batch=3).auth_enabled is False
    assert Settings(max_batch=3).auth_enabled is True  # the constructor reads nothing
    with pytest.raises(ValueError, match="SWITCHBOARD_MAX_BATCH"):
        Settings(max_batch=0)
