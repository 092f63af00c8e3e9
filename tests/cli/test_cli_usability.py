"""What a newcomer meets first on the command line: --version, help that explains every
option, data that is not JSON, a bad offset, a missing channel."""

from __future__ import annotations

import json
import re
import uuid

import pytest

from switchboard import __version__
from tests.sdk.devserver import DevServer

from .test_cli import sb


def name() -> str:
    return f"cli:{uuid.uuid4().hex[:10]}"


def one_line_error(result: object, code: str) -> str:
    stderr = str(getattr(result, "stderr", ""))
    assert getattr(result, "returncode", None) == 1, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith(f"switchboard: error: {code}: "), stderr
    assert "Traceback" not in stderr and "ValueError" not in stderr
    return stderr


def test_version() -> None:
    out = sb("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"switchboard {__version__}"


def test_dev_help_describes_the_command_and_every_option_with_its_default() -> None:
    text = sb("dev", "--help").stdout
    assert "emulated" in text and "API key" in text  # a description, not just usage
    options = " ".join(text.split())  # argparse wraps lines
    assert "--host HOST interface to listen on (default: 127.0.0.1" in options
    assert "--port PORT port for REST, WebSocket (/ws) and the console (default: 8765" in options
    assert "--stream-poll-ms MS how often the stream pump polls" in options
    assert "(default: 50;" in options


def test_client_help_names_the_arguments_users_type() -> None:
    text = sb("tail", "--help").stdout
    assert "--from OFFSET" in text and "FROM_" not in text
    assert "SWITCHBOARD_API_KEY" in text and "CHANNEL" in text


@pytest.mark.e2e
def test_data_that_is_not_json(dev_server: DevServer) -> None:
    ch = name()
    broken = sb("publish", ch, "{'a': 1}", "--url", dev_server.url)
    message = one_line_error(broken, "invalid_request")
    assert "not valid JSON" in message and "--text" in message
    assert sb("info", ch, "--url", dev_server.url).returncode == 1, "nothing was stored"

    plain = sb("publish", ch, "hello world", "--url", dev_server.url)
    assert plain.returncode == 0, plain.stderr
    assert re.match(r'switchboard: note: DATA is not JSON.*"hello world"', plain.stderr)
    quiet = sb("publish", ch, '{"a": 1}', "--text", "--url", dev_server.url)
    assert quiet.returncode == 0 and quiet.stderr == ""
    history = sb("history", ch, "--url", dev_server.url).stdout.splitlines()
    assert [json.loads(line)["data"] for line in history] == ["hello world", '{"a": 1}']


@pytest.mark.e2e
def test_an_offset_that_is_not_one_is_a_clear_error(dev_server: DevServer) -> None:
    tail = sb("tail", name(), "--from", "bogus", "--url", dev_server.url, timeout=15)
    message = one_line_error(tail, "invalid_offset")
    assert "'bogus'" in message and "'-1'" in message
    history = sb("history", name(), "--from", "bogus", "--url", dev_server.url, timeout=15)
    one_line_error(history, "invalid_offset")


@pytest.mark.e2e
def test_a_missing_channel_points_at_switchboard_create(dev_server: DevServer) -> None:
    ch = name()
    message = one_line_error(sb("info", ch, "--url", dev_server.url), "not_found")
    assert f"`switchboard create {ch}`" in message and "PUT" not in message
