"""Cold start of every Lambda function, side by side with a bare Chalice app (issue 11).

    .venv/bin/python bench/cold_start.py [--runs 11] [--env lambda|venv]
                                         [--bytecode none|cached] [--no-breakdown]
                                         [--importtime-dir DIR] [--json]

Every sample is a fresh interpreter (a cold Lambda container is one; an in-process re-import
would hit the module cache). Two comparisons, interleaved so that machine load hits both sides
alike (each of our runs is paired with a baseline run just before it, in shuffled order):

a. ``import app``: ours against a bare Chalice app with one route (what Lambda's init phase
   runs: every function imports app.py);
b. the first invocation of each function, timed from ``import app`` to the handler's return:
   import, building the services and handling one realistic event against DynamoDB, called
   the way Lambda calls it (``app.app(event, context)`` for REST, the Chalice-wrapped
   functions for WebSocket, stream and authorizer events), with authentication on. The
   baseline is the same bare app whose route creates a boto3 DynamoDB client and does one
   GetItem.

DynamoDB is moto, in a helper process (ThreadedMotoServer on a free 127.0.0.1 port, with a
stub of API Gateway's ``@connections`` API that counts the frames posted to it), so the
measured processes pay for none of moto's imports; they reach it through
``SWITCHBOARD_DYNAMODB_ENDPOINT`` and ``SWITCHBOARD_WEBSOCKET_ENDPOINT``. The data the events
need (channels, a subscribed connection, a token, a stream record) is set up once through the
same handlers before measuring.

Environments (``--env``):

- ``lambda`` (default): what the deployment zip holds, nothing else. The bench builds (once,
  cached under build/cold-start/) a bare virtualenv and installs, with pip, requirements.txt
  plus Chalice's ``app.py`` and ``__init__.py`` (all that ``chalice package`` ships of it) in
  one directory and boto3/botocore (which the Lambda runtime provides) in another; the
  measured processes see only those (``python -I``). The development venv is not like that:
  it has moto and its dependencies, among them ``cryptography``, which PyJWT imports when it
  is present (tens of ms) but which is not in the zip.
- ``venv``: the development venv (.venv), as the previous version of this bench measured.

Bytecode (``--bytecode``): ``chalice package`` unpacks wheels without compiling them and ships
app.py/chalicelib as source, and /var/task is read-only, so on Lambda every cold start
compiles them again (boto3 in the runtime is taken as precompiled). ``none`` (default)
measures exactly that: the zip's files have no .pyc and the processes run with ``-B``.
``cached`` precompiles them, as a zip with .pyc files would (or a developer's machine).

Wall time is the figure; the measured process's CPU time is shown too, because it moves
less with the machine's load and leaves out moto's share of each DynamoDB round trip.

Measured on this machine's CPU (x86_64 wheels); Lambda's arm64 at 256 MB gets a fraction of a
vCPU, so expect absolute numbers several times higher there, in roughly the same proportions.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # chalicelib and app, to set up the data the events need
BUILD = ROOT / "build" / "cold-start"
REGION = "us-east-1"
TABLES = ("bench-channels", "bench-messages", "bench-connections")
API_KEY_ID = "bench"
FUNCTION_PREFIX = "switchboard-prod-"
ORIGIN = "https://app.example"

# What the bare app is: Chalice, one route, and (only when called) one boto3 DynamoDB client
# and one GetItem.
BARE_APP = '''\
import os

from chalice import Chalice

app = Chalice(app_name="bare")
_dynamodb = None


@app.route("/items/{item}")
def get_item(item):
    global _dynamodb
    if _dynamodb is None:
        import boto3

        _dynamodb = boto3.client(
            "dynamodb", endpoint_url=os.environ["SWITCHBOARD_DYNAMODB_ENDPOINT"]
        )
    found = _dynamodb.get_item(
        TableName=os.environ["SWITCHBOARD_CHANNELS_TABLE"], Key={"pk": {"S": item}}
    )
    return {"found": "Item" in found}
'''

# Runs in the measured interpreter. Before the clock starts it imports what Lambda's runtime
# bootstrap has already imported when it imports the handler module, and builds the context.
MEASURED = '''\
import decimal, json, logging, os, socket, sys, time, traceback, uuid
spec = json.loads(sys.argv[1])
sys.path[:0] = spec["path"]


class LambdaContext:
    def __init__(self, name):
        self.function_name = name
        self.function_version = "$LATEST"
        self.invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:" + name
        self.memory_limit_in_mb = 256
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = "/aws/lambda/" + name
        self.log_stream_name = "2026/01/01/[$LATEST]" + uuid.uuid4().hex
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + 30

    def get_remaining_time_in_millis(self):
        return int((self._deadline - time.monotonic()) * 1000)


context = LambdaContext(os.environ["AWS_LAMBDA_FUNCTION_NAME"])
event = spec["event"]
sys.stderr.write("cold-start: clock starts\\n")
sys.stderr.flush()
start, start_cpu = time.perf_counter(), time.process_time()
import app
imported = time.perf_counter()
handler = app.app if spec["handler"] == "app" else getattr(app, spec["handler"])
result = handler(event, context)
done, done_cpu = time.perf_counter(), time.process_time()
print("\\n" + json.dumps({"import_s": imported - start, "first_s": done - start,
                          "first_cpu_s": done_cpu - start_cpu, "result": result}, default=str))
'''


# -- environments ---------------------------------------------------------------------------


@dataclass
class Environment:
    name: str
    description: str
    python: str
    ours: list[str]  # sys.path entries, first first
    bare: list[str]


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet",
                    "--disable-pip-version-check", *args], check=True)


def _copy_app(target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    shutil.copy2(ROOT / "app.py", target / "app.py")
    shutil.copytree(ROOT / "chalicelib", target / "chalicelib",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def _compile(python: str, *dirs: Path) -> None:
    subprocess.run([python, "-m", "compileall", "-q", "-j", "0", *map(str, dirs)],
                   check=True, stdout=subprocess.DEVNULL)


def lambda_packages() -> tuple[Path, dict[str, str]]:
    """Build (once) the venv and the package directories that mirror Lambda; their root."""
    pins = {
        "requirements.txt": (ROOT / "requirements.txt").read_text(),
        "chalice": version("chalice"),
        "boto3": version("boto3"),
        "botocore": version("botocore"),
        "python": sys.version.split()[0],
    }
    digest = hashlib.sha256(json.dumps(pins, sort_keys=True).encode()).hexdigest()[:12]
    root = BUILD / f"lambda-{digest}"
    if (root / "complete").exists():
        return root, pins
    if root.exists():
        shutil.rmtree(root)
    print(f"building the Lambda mirror in {root.relative_to(ROOT)} (once)...", file=sys.stderr)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(root / "venv")], check=True)
    # The zip: requirements.txt and Chalice's two runtime files, never compiled.
    _pip("--target", str(root / "task"), "--no-compile", "-r", str(ROOT / "requirements.txt"))
    _pip("--target", str(root / "chalice-dist"), "--no-compile", "--no-deps",
         f"chalice=={pins['chalice']}")
    # The bare app's zip holds Chalice alone (ours: Chalice and the requirements).
    for target in (root / "task" / "chalice", root / "chalice-only" / "chalice"):
        target.mkdir(parents=True)
        for name in ("app.py", "__init__.py"):
            shutil.copy2(root / "chalice-dist" / "chalice" / name, target / name)
    shutil.rmtree(root / "chalice-dist")
    # The runtime's boto3 (precompiled, as pip installs it).
    _pip("--target", str(root / "runtime"), f"boto3=={pins['boto3']}",
         f"botocore=={pins['botocore']}")
    (root / "complete").write_text(json.dumps(pins, indent=2))
    return root, pins


def environment(name: str, bytecode: str) -> Environment:
    run = BUILD / "run"
    ours, bare = run / "ours", run / "bare"
    _copy_app(ours)
    bare.mkdir(parents=True, exist_ok=True)
    (bare / "app.py").write_text(BARE_APP)
    shutil.rmtree(bare / "__pycache__", ignore_errors=True)
    if name == "venv":
        python = str(ROOT / ".venv" / "bin" / "python")
        if bytecode == "cached":
            _compile(python, ours, bare)
        return Environment(
            "venv", f"development venv ({python}; its packages precompiled), app bytecode: "
            f"{bytecode}", python, [str(ours)], [str(bare)],
        )
    root, pins = lambda_packages()
    python = str(root / "venv" / "bin" / "python")
    task, chalice = root / "task", root / "chalice-only"
    if bytecode == "cached":
        for source in (task, chalice):
            compiled = source.with_name(source.name + "-pyc")
            if not compiled.exists():
                partial = source.with_name(source.name + "-pyc.partial")
                shutil.rmtree(partial, ignore_errors=True)
                shutil.copytree(source, partial)
                _compile(python, partial)
                partial.rename(compiled)
        task, chalice = root / "task-pyc", root / "chalice-only-pyc"
        _compile(python, ours, bare)
    description = (
        f"Lambda mirror ({root.relative_to(ROOT)}): Python {pins['python']}, "
        f"requirements.txt + chalice {pins['chalice']} (app.py only), runtime boto3 "
        f"{pins['boto3']}; zip bytecode: {bytecode}"
    )
    runtime = str(root / "runtime")
    return Environment("lambda", description, python, [str(ours), str(task), runtime],
                       [str(bare), str(chalice), runtime])


# -- the helper process: moto and the @connections stub -------------------------------------


def serve() -> None:
    """``--serve``: moto and a stub Management API on free ports; runs until stdin closes."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from moto.server import ThreadedMotoServer

    from switchboard.dev import moto_patch

    moto_patch.install()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    frames: Counter[str] = Counter()
    lock = threading.Lock()

    class Connections(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                kind = str(json.loads(body).get("type"))
            except ValueError:
                kind = "invalid"
            with lock:
                frames[kind] += 1
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            with lock:
                data = json.dumps(frames).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    gateway = ThreadingHTTPServer(("127.0.0.1", 0), Connections)
    threading.Thread(target=gateway.serve_forever, daemon=True).start()
    print(json.dumps({"moto": f"http://{host}:{port}",
                      "gateway": f"http://127.0.0.1:{gateway.server_address[1]}"}), flush=True)
    sys.stdin.read()  # until the parent closes it (or dies)
    gateway.shutdown()
    moto.stop()


class Helper:
    def __init__(self) -> None:
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
        BUILD.mkdir(parents=True, exist_ok=True)
        with open(BUILD / "helper.log", "w") as log:
            self.process = subprocess.Popen(
                [sys.executable, __file__, "--serve"], cwd=ROOT, env=env, text=True,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
            )
        assert self.process.stdout is not None
        urls = json.loads(self.process.stdout.readline())
        self.moto, self.gateway = urls["moto"], urls["gateway"]

    def frames(self) -> dict[str, int]:
        with urllib.request.urlopen(self.gateway + "/_stats", timeout=10) as response:
            return dict(json.load(response))

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# -- events -----------------------------------------------------------------------------------


def rest_event(method: str, path: str, resource: str, params: dict[str, str],
               headers: dict[str, str], query: dict[str, str] | None = None,
               body: str | None = None) -> dict[str, Any]:
    """An API Gateway REST proxy event (``/api`` stage, as Chalice deploys it)."""
    headers = {"Host": "abc123.execute-api.us-east-1.amazonaws.com",
               "User-Agent": "cold-start-bench", "X-Forwarded-Proto": "https", **headers}
    now_ms = int(time.time() * 1000)
    return {
        "resource": resource, "path": path, "httpMethod": method,
        "headers": headers, "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": params, "stageVariables": None,
        "requestContext": {
            "resourceId": "abc123", "resourcePath": resource, "httpMethod": method,
            "extendedRequestId": uuid.uuid4().hex[:16], "requestTime": "01/Jan/2026:00:00:00 +0000",
            "path": f"/api{path}", "accountId": "123456789012", "protocol": "HTTP/1.1",
            "stage": "api", "domainPrefix": "abc123", "requestTimeEpoch": now_ms,
            "requestId": str(uuid.uuid4()), "identity": {"sourceIp": "203.0.113.7"},
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com", "apiId": "abc123",
        },
        "body": body, "isBase64Encoded": False,
    }


@dataclass
class Scenario:
    name: str  # how the table shows it
    function: str  # the Lambda function (Chalice's name)
    handler: str  # "app" (REST) or the attribute of app.py Lambda calls
    events: list[dict[str, Any]]  # one per run (warm-up first)
    check: Any  # result -> error message or None
    # Per round: ours (import, first invocation) and the baseline run just before it.
    samples: list[Sample] = field(default_factory=list)


@dataclass(frozen=True)
class Sample:
    import_s: float
    first_s: float
    first_cpu_s: float  # CPU time of the measured process (not moto's)
    bare_import_s: float
    bare_first_s: float
    bare_first_cpu_s: float


def _status(expected: int) -> Any:
    def check(result: Any) -> str | None:
        status = result.get("statusCode") if isinstance(result, dict) else None
        body = str(result.get("body", ""))[:200] if isinstance(result, dict) else result
        return None if status == expected else f"expected {expected}, got {status}: {body}"
    return check


def _allowed(result: Any) -> str | None:
    statements = (result or {}).get("policyDocument", {}).get("Statement", [{}])
    return None if statements[0].get("Effect") == "Allow" else f"not allowed: {result}"


def _no_failures(result: Any) -> str | None:
    return None if result == {"batchItemFailures": []} else f"failures: {result}"


class Setup:
    """The data every event needs, created through the handlers themselves (in this process,
    against the helper's moto), and the events."""

    def __init__(self, helper: Helper, count: int) -> None:
        from chalicelib.services.credentials import new_api_key

        key = new_api_key(API_KEY_ID)  # may do anything
        self.env = {
            "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_SESSION_TOKEN": "bench", "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
            "SWITCHBOARD_CHANNELS_TABLE": TABLES[0], "SWITCHBOARD_MESSAGES_TABLE": TABLES[1],
            "SWITCHBOARD_CONNECTIONS_TABLE": TABLES[2],
            "SWITCHBOARD_DYNAMODB_ENDPOINT": helper.moto,
            "SWITCHBOARD_WEBSOCKET_ENDPOINT": helper.gateway,
            "SWITCHBOARD_ALLOWED_ORIGINS": json.dumps([ORIGIN]),
            "SWITCHBOARD_API_KEYS": json.dumps({"keys": [
                {"id": key.id, "secret": key.secret,
                 "capabilities": key.capabilities.to_dict()}]}),
        }
        config = json.loads((ROOT / ".chalice" / "config.json").read_text())
        self.env.update(config.get("environment_variables", {}))  # Powertools' settings
        self.count = count
        self.api_key = f"{key.id}:{key.secret}"

    def run(self) -> list[Scenario]:
        import boto3

        from switchboard.dev import events as ws

        os.environ.update(self.env)
        os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"
        dynamodb = boto3.client("dynamodb", endpoint_url=self.env["SWITCHBOARD_DYNAMODB_ENDPOINT"])
        from chalicelib.adapters.dynamodb import table_definitions

        for definition in table_definitions(*TABLES):
            dynamodb.create_table(**definition)
        dynamodb.put_item(TableName=TABLES[0], Item={"pk": {"S": "bench-item"}})

        import app

        key = {"Authorization": f"Bearer {self.api_key}"}

        def call(event: dict[str, Any]) -> Any:
            result = app.app(event, None)
            assert result["statusCode"] < 300, result
            return json.loads(result["body"]) if result.get("body") else None

        token = call(rest_event(
            "POST", "/v1/tokens", "/v1/tokens", {}, key,
            body=json.dumps({"client_id": "bench-browser", "ttl": 3600,
                             "capabilities": {"*": ["subscribe", "publish", "history"]}}),
        ))["token"]
        bearer = {"Authorization": f"Bearer {token}"}
        for channel in ("runs:bench-rest", "runs:bench-ws", "runs:bench-fanout", "runs:bench-dc"):
            call(rest_event("PUT", f"/v1/channels/{channel}", "/v1/channels/{channel}",
                            {"channel": channel}, key))
        for n in range(3):
            call(rest_event("POST", "/v1/channels/runs:bench-stream/messages",
                            "/v1/channels/{channel}/messages", {"channel": "runs:bench-stream"},
                            key, body=json.dumps({"data": {"type": "token", "n": n}})))

        def peer(connection_id: str) -> Any:
            host = "abc123.execute-api.us-east-1.amazonaws.com"
            return ws.WsPeer(connection_id, host, "203.0.113.7", "bench", int(time.time() * 1000),
                             headers=[("Host", host), ("Origin", ORIGIN)],
                             query=[("token", token)])

        authorized = app.ws_authorizer(ws.authorizer_event(peer("auth")), None)
        context = {**authorized["context"], "principalId": authorized["principalId"]}

        def connected(connection_id: str, subscribe_to: str | None = None) -> Any:
            p = peer(connection_id)
            p.authorizer = context
            assert app.connect(ws.connect_event(p), None)["statusCode"] == 200
            if subscribe_to is not None:
                frame = json.dumps({"action": "subscribe", "channel": subscribe_to})
                app.message(ws.message_event(p, frame), None)
            return p

        subscriber = connected("benchSubscriber=", "runs:bench-fanout")
        publisher = connected("benchPublisher=")
        leaving = [connected(f"benchLeaving{i:04d}=", "runs:bench-dc") for i in range(self.count)]
        record = self._stream_record(app, key, dynamodb)
        assert subscriber is not None

        runs = range(self.count)
        return [
            Scenario(
                "api_handler POST /v1/channels/{c}/messages", "api_handler", "app",
                [rest_event("POST", "/v1/channels/runs:bench-rest/messages",
                            "/v1/channels/{channel}/messages", {"channel": "runs:bench-rest"},
                            {**key, "Content-Type": "application/json"},
                            body=json.dumps({"data": {"type": "status", "state": "thinking"}}))
                 for _ in runs],
                _status(201)),
            Scenario(
                "api_handler GET /v1/stream/{c} (token)", "api_handler", "app",
                [rest_event("GET", "/v1/stream/runs:bench-stream", "/v1/stream/{channel}",
                            {"channel": "runs:bench-stream"}, bearer, {"offset": "-1"})
                 for _ in runs],
                _status(200)),
            Scenario(
                "websocket_connect", "websocket_connect", "connect",
                [ws.connect_event(self._authorized(peer(f"benchConnect{i:04d}="), context))
                 for i in runs],
                _status(200)),
            Scenario(
                "websocket_message (publish)", "websocket_message", "message",
                [ws.message_event(self._authorized(publisher, context), json.dumps(
                    {"action": "publish", "channel": "runs:bench-ws", "ref": f"r{i}",
                     "data": {"type": "status", "state": "thinking"}})) for i in runs],
                _status(200)),
            Scenario(
                "websocket_disconnect", "websocket_disconnect", "disconnect",
                [ws.disconnect_event(p, 1000, "bye") for p in leaving],
                _status(200)),
            Scenario(
                "fanout_records (1 record, 1 subscriber)", "fanout_records", "fanout_records",
                [{"Records": [record]} for _ in runs], _no_failures),
            Scenario(
                "ws_authorizer (token)", "ws_authorizer", "ws_authorizer",
                [ws.authorizer_event(peer(f"benchAuth{i:04d}=")) for i in runs], _allowed),
        ]

    @staticmethod
    def _authorized(peer: Any, context: dict[str, Any]) -> Any:
        peer.authorizer = context
        return peer

    def _stream_record(self, app: Any, key: dict[str, str], dynamodb: Any) -> dict[str, Any]:
        """One message published to the subscribed channel, as the stream delivers it."""
        import boto3

        from switchboard.dev.events import lambda_stream_record

        streams = boto3.client("dynamodbstreams",
                               endpoint_url=self.env["SWITCHBOARD_DYNAMODB_ENDPOINT"])
        arn = dynamodb.describe_table(TableName=TABLES[1])["Table"]["LatestStreamArn"]
        shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]
        iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"],
                                              ShardIteratorType="LATEST")["ShardIterator"]
        result = app.app(rest_event(
            "POST", "/v1/channels/runs:bench-fanout/messages", "/v1/channels/{channel}/messages",
            {"channel": "runs:bench-fanout"}, key,
            body=json.dumps({"data": {"type": "token", "text": "Hello"}})), None)
        assert result["statusCode"] == 201, result
        records = [r for r in streams.get_records(ShardIterator=iterator)["Records"]
                   if r["eventName"] == "INSERT"]
        assert records, "the stream has no record of the published message"
        return lambda_stream_record(records[-1], arn)


# -- measuring --------------------------------------------------------------------------------


def _process_env(setup: Setup, function: str, root: str) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "TZ": ":UTC",
        **setup.env,
        "AWS_LAMBDA_FUNCTION_NAME": FUNCTION_PREFIX + function,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12", "LAMBDA_TASK_ROOT": root,
        "_HANDLER": "app.app",
    }


def measure_one(env: Environment, setup: Setup, paths: list[str], function: str,
                handler: str, event: dict[str, Any], importtime: bool = False
                ) -> tuple[dict[str, Any], str, str]:
    flags = ["-X", "importtime"] if importtime else []
    spec = json.dumps({"path": paths, "handler": handler, "event": event})
    done = subprocess.run([env.python, "-I", "-B", *flags, "-c", MEASURED, spec], cwd=paths[0],
                          env=_process_env(setup, function, paths[0]),
                          capture_output=True, text=True, timeout=120)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{function} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1]), "\n".join(lines[:-1]), done.stderr


def _logged_errors(logs: str) -> list[str]:
    errors = []
    for line in logs.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("level") in ("ERROR", "CRITICAL"):
            errors.append(line[:300])
    return errors


def measure(env: Environment, setup: Setup, scenarios: list[Scenario], runs: int) -> None:
    """Run every scenario ``runs`` times, each right after a baseline run."""
    bare_event = rest_event("GET", "/items/bench-item", "/items/{item}", {"item": "bench-item"},
                            {})
    for index in range(runs + 1):  # the first round warms the page cache, and is dropped
        order = list(scenarios)
        random.shuffle(order)
        for scenario in order:
            base, _, _ = measure_one(env, setup, env.bare, "bare", "app", bare_event)
            problem = _status(200)(base["result"])
            if problem:
                raise RuntimeError(f"baseline: {problem}")
            ours, logs, _ = measure_one(env, setup, env.ours, scenario.function,
                                        scenario.handler, scenario.events[index])
            problem = scenario.check(ours["result"]) or "; ".join(_logged_errors(logs))
            if problem:
                raise RuntimeError(f"{scenario.name}: {problem}")
            if index:
                scenario.samples.append(Sample(
                    ours["import_s"], ours["first_s"], ours["first_cpu_s"],
                    base["import_s"], base["first_s"], base["first_cpu_s"]))
        print(f"  round {index}/{runs} done", file=sys.stderr)


# -- where the time goes ----------------------------------------------------------------------

GROUPS = {
    "chalice": "chalice", "app": "ours", "chalicelib": "ours",
    "boto3": "boto3", "botocore": "boto3", "s3transfer": "boto3", "urllib3": "boto3",
    "dateutil": "boto3", "six": "boto3", "jmespath": "jmespath",
    "pydantic": "pydantic", "pydantic_core": "pydantic", "pydantic_settings": "pydantic",
    "annotated_types": "pydantic", "typing_inspection": "pydantic", "dotenv": "pydantic",
    "typing_extensions": "typing_extensions",
    "aws_lambda_powertools": "powertools", "jwt": "jwt", "cryptography": "jwt",
}


def breakdown(stderr: str, total_s: float) -> dict[str, float]:
    """Seconds of import time per group (self times summed), and the rest of the invocation."""
    groups: dict[str, float] = defaultdict(float)
    for line in stderr.partition("cold-start: clock starts")[2].splitlines():
        if not line.startswith("import time:"):
            continue
        own, _cumulative, name = line.removeprefix("import time:").split("|")
        if not own.strip().isdigit():
            continue
        top = name.strip().split(".")[0]
        group = GROUPS.get(top) or ("stdlib" if top in sys.stdlib_module_names
                                    or top.startswith("_") else "other")
        groups[group] += int(own) / 1e6
    groups["not importing"] = total_s - sum(groups.values())
    return {k: round(v, 4) for k, v in sorted(groups.items(), key=lambda kv: -kv[1])}


def breakdowns(env: Environment, setup: Setup, scenarios: list[Scenario],
               keep: Path | None) -> dict[str, dict[str, float]]:
    """One ``-X importtime`` run of the baseline and of each function (kept in ``keep``)."""
    bare_event = rest_event("GET", "/items/bench-item", "/items/{item}", {"item": "bench-item"},
                            {})
    runs = [("baseline", env.bare, "bare", "app", bare_event)] + [
        (s.name, env.ours, s.function, s.handler, s.events[-1]) for s in scenarios
    ]
    rows = {}
    for name, paths, function, handler, event in runs:
        result, _, err = measure_one(env, setup, paths, function, handler, event, True)
        rows[name] = {"first_s": round(result["first_s"], 4),
                      **breakdown(err, result["first_s"])}
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            slug = "".join(c if c.isalnum() else "_" for c in name).strip("_")
            (keep / f"{slug}.txt").write_text(err)
    return rows


# -- report -----------------------------------------------------------------------------------


def _ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 1)


def _ratio(pairs: list[tuple[float, float]]) -> float:
    """The median of ours/baseline over pairs run back to back (load drifts cancel out)."""
    return round(statistics.median(ours / base for ours, base in pairs), 2)


def report(env: Environment, scenarios: list[Scenario], runs: int,
           load: tuple[float, float], frames: dict[str, int],
           rows: dict[str, dict[str, float]] | None) -> dict[str, Any]:
    every = [sample for s in scenarios for sample in s.samples]
    result: dict[str, Any] = {
        "environment": env.description,
        "python": sys.version.split()[0],
        "runs": runs,
        "load_average_before_after": load,
        "import_app": {
            "ours_ms": _ms([x.import_s for x in every]),
            "bare_chalice_ms": _ms([x.bare_import_s for x in every]),
            "ratio": _ratio([(x.import_s, x.bare_import_s) for x in every]),
            "goal": 1.5,
        },
        "first_invocation": {
            "baseline_ms": _ms([x.bare_first_s for x in every]),
            "goal": 1.3,
            "functions": [
                {"name": s.name, "function": s.function,
                 "median_ms": _ms([x.first_s for x in s.samples]),
                 "baseline_ms": _ms([x.bare_first_s for x in s.samples]),
                 "ratio": _ratio([(x.first_s, x.bare_first_s) for x in s.samples]),
                 "cpu_ms": _ms([x.first_cpu_s for x in s.samples]),
                 "baseline_cpu_ms": _ms([x.bare_first_cpu_s for x in s.samples]),
                 "cpu_ratio": _ratio([(x.first_cpu_s, x.bare_first_cpu_s)
                                      for x in s.samples])}
                for s in scenarios
            ],
        },
        "frames_posted_to_connections": frames,
    }
    if rows is not None:
        result["breakdown_s"] = rows
    return result


def print_report(result: dict[str, Any]) -> None:
    before, after = result["load_average_before_after"]
    print(f"{result['environment']}")
    print(f"{result['runs']} runs each, fresh processes, medians; ratio = median of ours/baseline "
          f"over back-to-back pairs; CPU time = the measured process's own (moto's excluded); "
          f"load average {before:.2f} before, {after:.2f} after\n")
    imp = result["import_app"]
    print(f"{'':<44} {'ours':>9} {'baseline':>9} {'ratio':>6}   {'CPU time':>8} {'ratio':>6}")
    print(f"{'import app (vs bare Chalice, goal <= 1.5)':<44} {imp['ours_ms']:>7.1f}ms "
          f"{imp['bare_chalice_ms']:>7.1f}ms {imp['ratio']:>5.2f}x")
    first = result["first_invocation"]
    print("first invocation: import + event (vs boto3 DynamoDB client + GetItem, goal <= 1.3)")
    for row in first["functions"]:
        print(f"  {row['name']:<42} {row['median_ms']:>7.1f}ms {row['baseline_ms']:>7.1f}ms "
              f"{row['ratio']:>5.2f}x   {row['cpu_ms']:>6.1f}ms {row['cpu_ratio']:>5.2f}x")
    print(f"\nframes posted to @connections: {result['frames_posted_to_connections']}")
    rows = result.get("breakdown_s")
    if rows:
        print("\nwhere the time goes (one run each, -X importtime; import self-times in ms):")
        for name, row in rows.items():
            parts = ", ".join(f"{k} {v * 1000:.0f}" for k, v in row.items() if k != "first_s"
                              and abs(v) >= 0.0005)
            print(f"  {name} ({row['first_s'] * 1000:.0f} ms): {parts}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--env", choices=("lambda", "venv"), default="lambda")
    parser.add_argument("--bytecode", choices=("none", "cached"), default="none")
    parser.add_argument("--no-breakdown", action="store_true",
                        help="skip the -X importtime run of each function")
    parser.add_argument("--importtime-dir", type=Path,
                        help="keep the raw -X importtime output of each function there")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.serve:
        serve()
        return 0
    env = environment(args.env, args.bytecode)
    print(f"measuring in: {env.description}", file=sys.stderr)
    load_before = os.getloadavg()[0]
    helper = Helper()
    try:
        setup = Setup(helper, args.runs + 1)
        with contextlib.redirect_stdout(io.StringIO()):  # the handlers' logs and metrics
            scenarios = setup.run()
        measure(env, setup, scenarios, args.runs)
        rows = (None if args.no_breakdown
                else breakdowns(env, setup, scenarios, args.importtime_dir))
        frames = helper.frames()
    finally:
        helper.close()
    result = report(env, scenarios, args.runs, (load_before, os.getloadavg()[0]), frames, rows)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_report(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
