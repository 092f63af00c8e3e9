"""examples/restate_agent end to end: a Restate server (npm @restatedev/restate-server), a
`switchboard dev`, and the Python service, on free loopback ports.

A run streams into ``runs:<id>`` and suspends on an awakeable; the user's steer, written to
the channel, wakes it through a Switchboard webhook. The service is SIGKILLed while the run
waits and again while it streams its revision; in the second test the Restate server is
SIGKILLed while the run waits. Every time the run finishes, and the channel holds each step's
message exactly once, in order (publish ids derive from the run and the step).

Restate is started once for the module (about 0.3 s to healthy, ~200 MB of memory).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.devserver import ROOT, DevServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

EXAMPLE = ROOT / "examples" / "restate_agent"
RESTATE = EXAMPLE / "node_modules" / "@restatedev" / "restate-server-linux-x64" / "bin" / \
    "restate-server"
STEER = "shorter, please"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Any, timeout: float = 30.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(0.05)


@dataclass
class RestateServer:
    """restate-server on loopback ports, restartable on the same data directory."""

    base_dir: Path
    ingress: int = field(default_factory=free_port)
    admin: int = field(default_factory=free_port)
    node: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def ingress_url(self) -> str:
        return f"http://127.0.0.1:{self.ingress}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin}"

    def start(self) -> None:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "RESTATE_INGRESS__BIND_ADDRESS": f"127.0.0.1:{self.ingress}",
            "RESTATE_ADMIN__BIND_ADDRESS": f"127.0.0.1:{self.admin}",
            "RESTATE_BIND_ADDRESS": f"127.0.0.1:{self.node}",
            "RESTATE_ADVERTISED_ADDRESS": f"http://127.0.0.1:{self.node}/",
            "RESTATE_LISTEN_MODE": "tcp",
            "RESTATE_NODE_NAME": "switchboard-test",
            "RESTATE_DISABLE_TELEMETRY": "true",
            "RESTATE_ROCKSDB_TOTAL_MEMORY_SIZE": "256MiB",
            "RESTATE_DEFAULT_NUM_PARTITIONS": "2",
            "RESTATE_LOG_FILTER": "warn",
        }
        self.log = self.base_dir / "restate.log"
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [*offline_prefix(self.base_dir), str(RESTATE), "--no-logo", "--base-dir",
                 str(self.base_dir / "data")],
                env=env, stdout=out, stderr=subprocess.STDOUT)
        wait_for(lambda: _ok(f"{self.ingress_url}/restate/health")
                 and _ok(f"{self.admin_url}/health"), 60, "restate-server health")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def offline_prefix(base: Path) -> list[str]:
    """restate-server asks api.github.com for its latest release at startup, and no setting
    turns that off (RESTATE_DISABLE_TELEMETRY does not; proxies are ignored). As root, run it
    in its own mount namespace whose /etc/hosts sends that name to 127.0.0.1 (a closed port)
    and whose resolver is 127.0.0.1: no packet leaves loopback (checked with strace). Not
    root: run it as is (the lookup fails on a machine without a network)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return []
    hosts = base / "hosts"
    hosts.write_text(Path("/etc/hosts").read_text()
                     + "\n127.0.0.1 api.github.com github.com\n")
    resolv = base / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\n")
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind {hosts} /etc/hosts"],
                           capture_output=True, check=False)
    if probe.returncode != 0:
        return []
    script = (f"mount --bind {hosts} /etc/hosts && mount --bind {resolv} /etc/resolv.conf "
              '&& exec "$@"')
    return ["unshare", "-m", "sh", "-c", script, "restate-server"]


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class AgentService:
    """``python -m examples.restate_agent`` on a fixed port (Restate knows it by its URI)."""

    switchboard: DevServerProcess
    restate: RestateServer
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
        env.update(SWITCHBOARD_URL=self.switchboard.http,
                   SWITCHBOARD_TOKEN=self.switchboard.api_key or "",
                   RESTATE_INGRESS=self.restate.ingress_url, AGENT_STEP_DELAY_S="0.15",
                   PYTHONUNBUFFERED="1")
        self.log = self.restate.base_dir / "agent.log"
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "examples.restate_agent", "--port", str(self.port)],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        wait_for(lambda: "ready" in self.log.read_text() if self.log else False, 30,
                 "the agent service")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        if self.log is not None:
            self.log.write_text("")  # the next start announces itself afresh

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class World:
    switchboard: DevServerProcess
    restate: RestateServer
    service: AgentService

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.switchboard.http, timeout=10.0, headers={
            "Authorization": f"Bearer {self.switchboard.api_key}"})

    def log_of(self, run_id: str) -> list[dict[str, Any]]:
        with self.api() as api:
            response = api.get(f"/v1/channels/runs:{run_id}/messages",
                               params={"from": "-1", "limit": "1000"})
        return list(response.json()["messages"]) if response.status_code == 200 else []

    def start_run(self, run_id: str, prompt: str) -> None:
        response = httpx.post(f"{self.restate.ingress_url}/AgentRun/{run_id}/run/send",
                              json={"prompt": prompt}, timeout=10.0)
        assert response.status_code in (200, 202), response.text

    def steer(self, run_id: str, text: str) -> None:
        with self.api() as api:
            response = api.post(f"/v1/channels/runs:{run_id}/messages",
                                json={"data": {"type": "user", "text": text}, "id": "user:1"})
        assert response.status_code == 201, response.text

    def wait_for_step(self, run_id: str, step: str, timeout: float = 60.0) -> None:
        wait_for(lambda: any(m["id"] == f"{run_id}:{step}" for m in self.log_of(run_id)),
                 timeout, f"{step} of {run_id}")

    def result(self, run_id: str, timeout: float = 90.0) -> dict[str, Any]:
        response = httpx.get(f"{self.restate.ingress_url}/restate/workflow/AgentRun/"
                             f"{run_id}/attach", timeout=timeout)
        assert response.status_code == 200, response.text
        return dict(response.json())


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    if not RESTATE.exists():
        pytest.fail("The Restate server is not installed: run `npm install --prefix "
                    "examples/restate_agent` (.ci/run does), then run the tests again.")
    base = Path(tempfile.mkdtemp(prefix="sb-restate-"))
    restate = RestateServer(base)
    switchboard = DevServerProcess.start("--port", "0", "--no-agent")
    service = AgentService(switchboard, restate)
    try:
        restate.start()
        service.start()
        registered = httpx.post(f"{restate.admin_url}/deployments", json={"uri": service.url},
                                timeout=30.0)
        assert registered.status_code in (200, 201), registered.text
        yield World(switchboard, restate, service)
    finally:
        service.stop()
        restate.stop()
        switchboard.stop()
        shutil.rmtree(base, ignore_errors=True)


def expected_steps(run_id: str, prompt: str) -> list[str]:
    from examples.restate_agent.agent import draft, revise

    return ([f"{run_id}:status:thinking"]
            + [f"{run_id}:draft:{i}" for i in range(len(draft(prompt)))]
            + [f"{run_id}:waiting:1", "user:1", f"{run_id}:status:revising"]
            + [f"{run_id}:revision:{i}" for i in range(len(revise(prompt, STEER)))]
            + [f"{run_id}:status:done"])


def assert_exactly_once(world: World, run_id: str, prompt: str) -> list[dict[str, Any]]:
    log = world.log_of(run_id)
    ids = [m["id"] for m in log]
    assert len(ids) == len(set(ids)), f"a message was stored twice: {ids}"
    assert ids == expected_steps(run_id, prompt), ids
    seqs = [m["seq"] for m in log]
    assert seqs == list(range(1, len(log) + 1))
    return log


def test_a_steer_wakes_the_run_across_service_crashes(world: World) -> None:
    run_id, prompt = f"r{uuid.uuid4().hex[:8]}", "why is the sky blue?"
    world.start_run(run_id, prompt)
    world.wait_for_step(run_id, "waiting:1")
    world.service.kill()  # crash while the run is suspended
    world.steer(run_id, STEER)  # the webhook fails (the service is down): retried
    time.sleep(1.0)
    world.service.start()
    world.wait_for_step(run_id, "revision:1")
    world.service.kill()  # crash mid-stream: the step in flight runs again
    world.service.start()
    result = world.result(run_id)
    assert result["steer"] == STEER and STEER in result["answer"]
    log = assert_exactly_once(world, run_id, prompt)
    revising = next(m for m in log if m["id"] == f"{run_id}:status:revising")
    assert revising["data"]["steer"] == STEER


def test_a_restate_server_crash_loses_nothing(world: World) -> None:
    run_id, prompt = f"r{uuid.uuid4().hex[:8]}", "and the sunset red?"
    world.start_run(run_id, prompt)
    world.wait_for_step(run_id, "waiting:1")
    world.restate.kill()  # crash the engine while the run waits
    world.steer(run_id, STEER)  # the webhook cannot resolve the awakeable: 503, retried
    time.sleep(1.0)
    world.restate.start()
    result = world.result(run_id)
    assert result["steer"] == STEER
    assert_exactly_once(world, run_id, prompt)
    # The channel is the run's record: its last message says it is done.
    assert world.log_of(run_id)[-1]["data"] == {"type": "status", "state": "done"}


def test_the_webhook_refuses_unsigned_wakes(world: World) -> None:
    forged = json.dumps({"streams": [{"path": "runs/x", "has_pending": True}]})
    response = httpx.post(f"{world.service.url}/wake", content=forged, timeout=10.0,
                          headers={"content-type": "application/json",
                                   "webhook-signature": "t=1,kid=ds_x,ed25519=AAAA"})
    assert response.status_code == 401
