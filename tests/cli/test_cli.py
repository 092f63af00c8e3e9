"""`switchboard publish/tail/history/info/create/delete` through the real entry point."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import uuid
from typing import Any

import httpx
import pytest

from tests.sdk.devserver import ENTRY_POINT, DevServer

pytestmark = pytest.mark.e2e


def sb(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Any:
    return subprocess.run(
        [str(ENTRY_POINT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def name() -> str:
    return f"cli:{uuid.uuid4().hex[:10]}"


def test_publish_json_and_plain_strings_with_idempotency(dev_server: DevServer) -> None:
    ch = name()
    env = {"SWITCHBOARD_URL": dev_server.url}  # the environment supplies the URL
    first = sb("publish", ch, '{"type":"status","ok":true}', "--id", "k1", env=env)
    assert first.returncode == 0, first.stderr
    ack = json.loads(first.stdout)
    assert ack["seq"] == 1 and ack["duplicate"] is False
    again = sb("publish", ch, '{"type":"status","ok":true}', "--id", "k1", env=env)
    assert json.loads(again.stdout)["duplicate"] is True
    assert json.loads(sb("publish", ch, "hello world", env=env).stdout)["seq"] == 2
    out = sb("history", ch, "--url", dev_server.url)
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [m["data"] for m in lines] == [{"type": "status", "ok": True}, "hello world"]
    assert out.stderr == ""  # no progress display when stderr is not a terminal


def test_create_info_delete_and_errors_are_one_line(dev_server: DevServer) -> None:
    ch = name()
    created = sb("create", ch, "--retention", "3600", "--url", dev_server.url)
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["retention"] == 3600
    info = json.loads(sb("info", ch, "--url", dev_server.url).stdout)
    assert info["name"] == ch and info["head"] == "-1"
    assert sb("delete", ch, "--url", dev_server.url).returncode == 0
    missing = sb("info", ch, "--url", dev_server.url)
    assert missing.returncode == 1
    assert missing.stderr.startswith("switchboard: error: not_found: ")
    assert len(missing.stderr.strip().splitlines()) == 1 and "Traceback" not in missing.stderr
    bad = sb("publish", "not a channel!", "x", "--url", dev_server.url)
    assert bad.returncode == 1 and "invalid_channel" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_unreachable_server_is_one_readable_line(dev_server: DevServer) -> None:
    down = sb("info", "cli:x", "--url", "http://127.0.0.1:9")  # nothing listens on port 9
    assert down.returncode == 1
    assert down.stderr.startswith("switchboard: error: unavailable: Could not reach")
    assert len(down.stderr.strip().splitlines()) == 1


def test_history_limit_from_and_progress(dev_server: DevServer) -> None:
    ch = name()
    for i in range(5):
        sb("publish", ch, str(i), "--url", dev_server.url)
    page = sb("history", ch, "--limit", "2", "--url", dev_server.url, "--progress")
    rows = [json.loads(line) for line in page.stdout.splitlines()]
    assert [r["data"] for r in rows] == [0, 1]
    assert "exported 2 / ~2 messages" in page.stderr
    rest = sb("history", ch, "--from", rows[-1]["offset"], "--url", dev_server.url)
    assert [json.loads(line)["data"] for line in rest.stdout.splitlines()] == [2, 3, 4]


def test_tail_follows_live_and_resumes_after_the_gateway_drops_it(
    dev_server: DevServer,
) -> None:
    ch = name()
    sb("publish", ch, '"before"', "--url", dev_server.url)
    tail = subprocess.Popen(
        [str(ENTRY_POINT), "tail", ch, "--from", "-1", "--json", "--count", "4",
         "--url", dev_server.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert tail.stdout is not None
        first = json.loads(tail.stdout.readline())
        assert first["data"] == "before"
        sb("publish", ch, '"live 1"', "--url", dev_server.url)
        assert json.loads(tail.stdout.readline())["data"] == "live 1"
        assert dev_server.drop_all_connections() >= 1
        time.sleep(0.2)
        sb("publish", ch, '"while reconnecting"', "--url", dev_server.url)
        sb("publish", ch, '"after"', "--url", dev_server.url)
        rest = [json.loads(line)["data"] for line in tail.stdout]
        assert rest == ["while reconnecting", "after"]
        assert tail.wait(30) == 0
    finally:
        tail.kill()
        tail.wait()


def test_tail_pretty_view(dev_server: DevServer) -> None:
    ch = name()
    sb("publish", ch, '{"type":"token","stream":"s","start":0,"text":"Hi"}', "--url",
       dev_server.url)
    out = sb("tail", ch, "--from", "-1", "--pretty", "--count", "1", "--url", dev_server.url)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("#1 ") and "token s: 'Hi'" in out.stdout


def test_tail_prints_a_byte_stream_entry_whole(dev_server: DevServer) -> None:
    """A 64 KB entry crosses the socket in slices; `tail` prints it as one message, its
    bytes base64-encoded (`--json`) or summarised (`--pretty`)."""
    ch = name()
    payload = os.urandom(64 * 1024)
    octets = {"Content-Type": "application/octet-stream"}
    stream = f"{dev_server.url}/v1/stream/{ch}"
    assert httpx.put(stream, headers=octets).status_code == 201
    assert httpx.post(stream, content=b"hello bytes", headers=octets).status_code == 204
    assert httpx.post(stream, content=payload, headers=octets).status_code == 204
    out = sb("tail", ch, "--from", "-1", "--json", "--count", "2", "--url", dev_server.url)
    assert out.returncode == 0, out.stderr
    first, second = (json.loads(line) for line in out.stdout.splitlines())
    assert first["encoding"] == second["encoding"] == "base64"
    assert base64.b64decode(first["data"]) == b"hello bytes"
    assert base64.b64decode(second["data"]) == payload and "slice" not in second
    pretty = sb("tail", ch, "--from", "-1", "--pretty", "--count", "2", "--url", dev_server.url)
    lines = pretty.stdout.splitlines()
    assert "bytes[11]: 'hello bytes'" in lines[0] and "bytes[65536]: " in lines[1]


def test_publish_of_a_message_over_32_kb(dev_server: DevServer) -> None:
    ch = name()
    data = json.dumps({"pad": "x" * 40_000})
    out = sb("publish", ch, data, "--url", dev_server.url)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["seq"] == 1
    history = sb("history", ch, "--url", dev_server.url)
    assert json.loads(history.stdout)["data"] == {"pad": "x" * 40_000}
