"""``switchboard dev``: the real handlers on one port, over moto, in one process.

Startup order matters: bind the port first (so a busy port fails before anything starts and
``--port 0`` knows its number), start moto and create the tables, then set the environment
the handlers read (settings are read lazily, Powertools at import), then import the Chalice
app, start the stream pump, and serve. The ready line is printed once all of that is up.

Use :func:`run` from the CLI; :class:`DevServer` runs the same stack in-process (benchmarks,
debugging). Only one stack per process: the handlers read process-wide environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import importlib
import json
import logging
import os
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import uvicorn

from . import limits as aws_limits
from . import logs, moto_patch, rest
from .agent import AgentProcess
from .gateway import Gateway, WsHandlers
from .protocol import protocol_class
from .pump import StreamPump, TriggerSettings
from .queue import QueuePump
from .schedule import Sweeper

T = TypeVar("T")

READY = "Switchboard dev server ready: {http} (WebSocket: {ws})"
HANDLER_THREADS = 64  # concurrent Lambda invocations (long-polls hold one each)
log = logging.getLogger("sbdev")  # no "switchboard" in it: Powertools filters those


class DevServerError(Exception):
    """Startup failed for a reason the user can fix; the message says how."""


class _InvocationPool(ThreadPoolExecutor):
    """The handler threads. Each task is one Lambda invocation, and like a fresh invocation
    it starts without the log keys an earlier one appended on the same thread."""

    def __init__(self, workers: int, before_each: Callable[[], None]) -> None:
        super().__init__(workers, thread_name_prefix="lambda")
        self._before_each = before_each

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        before_each = self._before_each

        def invocation() -> T:
            before_each()
            return fn(*args, **kwargs)

        return super().submit(invocation)


def _fake_aws_environment() -> None:
    # Nothing may reach AWS: fake credentials, and every client gets an explicit endpoint.
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            # moto 5.2 + current botocore: stream calls fail without it (shared notes, 2).
            "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
        }
    )
    os.environ.pop("AWS_PROFILE", None)
    # CloudWatch EMF would print a JSON blob per invocation; logs stay on.
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "switchboard")
    # Any page may connect to the local stack (the console at / sends its own Origin).
    os.environ.setdefault("SWITCHBOARD_ALLOWED_ORIGINS", '["*"]')
    # The gateway keeps an SSE response open across invocations (switchboard/dev/sse.py), so
    # the minimum duration that keeps clients from falling back on AWS would only add latency.
    os.environ.setdefault("SWITCHBOARD_SSE_MIN_S", "0")


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it: without it, every response on a kept-alive connection
    # (boto3's posts to /@connections, SDK and browser requests) waited ~40 ms for the
    # client's delayed ACK (Nagle), since uvicorn writes headers and body separately.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise DevServerError(
                f"port {port} on {host} is already in use (another `switchboard dev`?); "
                "stop it or pass --port 0 to pick a free port"
            ) from None
        raise DevServerError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _quiet_libraries() -> None:
    for name in ("werkzeug", "uvicorn", "uvicorn.error", "uvicorn.access", "botocore",
                 "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)


class _Uvicorn(uvicorn.Server):
    """uvicorn, announcing readiness, and leaving signals to us when told to handle them.

    uvicorn re-raises a captured SIGTERM after shutdown, which would end the process with
    status -15 instead of 0 after a clean stop.
    """

    def __init__(self, config: uvicorn.Config, on_ready: Any, handle_signals: bool) -> None:
        super().__init__(config)
        self._on_ready = on_ready
        self._handle_signals = handle_signals
        self.on_exit: Any = None  # called when a stop is asked for (open SSE responses end)

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self.on_exit is not None:
            self.on_exit()
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if not self._handle_signals or threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.signal(s, self.handle_exit) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_ready()


class DevServer:
    """The whole local stack: moto, tables, gateway, stream pump."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 8765, stream_poll_ms: int = 50,
        auth: bool = True, lenient: bool = False,
    ):
        if not 1 <= stream_poll_ms <= 60_000:
            raise DevServerError(
                f"--stream-poll-ms must be between 1 and 60000, not {stream_poll_ms}"
            )
        self.host = host
        self.requested_port = port
        self.stream_poll_ms = stream_poll_ms
        self.auth = auth
        self.lenient = lenient  # AWS limits relaxed (limits.py)
        self.limits: aws_limits.Limits | None = None
        # The API key of this run: generated at start, printed once, kept only in memory.
        self.api_key: str | None = None
        self.port = 0
        self.moto_url = ""
        self._socket: socket.socket | None = None
        self._moto: Any = None
        self._executor: ThreadPoolExecutor | None = None
        self._pump: StreamPump | None = None
        self._sweeper: Sweeper | None = None
        self._wake_pump: StreamPump | None = None
        self._queue_pump: QueuePump | None = None
        self._uvicorn: _Uvicorn | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self.gateway: Gateway | None = None

    @property
    def base_url(self) -> str:
        return f"http://{_url_host(self.host)}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{_url_host(self.host)}:{self.port}/ws"

    def open(self) -> None:
        """Bind, start moto, create the tables, load the app, start the pump."""
        _service_on_path()
        _quiet_libraries()
        self._socket = _bind(self.host, self.requested_port)
        self.port = self._socket.getsockname()[1]
        try:
            self._open_backend()
        except BaseException:
            self.close()
            raise

    def _open_backend(self) -> None:
        from moto.server import ThreadedMotoServer

        _fake_aws_environment()
        moto_patch.install()
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._moto.start()
        moto_host, moto_port = self._moto.get_host_and_port()
        self.moto_url = f"http://{moto_host}:{moto_port}"
        os.environ["SWITCHBOARD_DYNAMODB_ENDPOINT"] = self.moto_url
        # The Management API is ours, on this same port (boto3 appends /@connections/{id}).
        os.environ["SWITCHBOARD_WEBSOCKET_ENDPOINT"] = f"http://127.0.0.1:{self.port}"
        self._configure_auth()

        from chalicelib.settings import get_settings

        get_settings.cache_clear()
        stream_arn = self._create_tables()
        queue_url, queue_arn = self._create_wake_resources()
        get_settings.cache_clear()
        chalice_module = _load_app()
        limits = self._load_limits(chalice_module)
        self._executor = _InvocationPool(HANDLER_THREADS, logs.invocation_reset())
        self.gateway = Gateway(
            rest.DevRestGateway(chalice_module.app, f"{_url_host(self.host)}:{self.port}",
                                limits.function(aws_limits.API_HANDLER)),
            WsHandlers(chalice_module.connect, chalice_module.message, chalice_module.disconnect,
                       getattr(chalice_module, "ws_authorizer", None)),
            self._executor,
            token_issuer=self._console_token if self.auth else None,
            limits=limits,
        )
        self._pump = StreamPump(
            _client("dynamodbstreams", self.moto_url), stream_arn,
            chalice_module.fanout_records, self.stream_poll_ms / 1000,
            TriggerSettings.deployed(chalice_module), limits.function(aws_limits.FANOUT),
            enforce_timeout=not limits.lenient,
        )
        self.gateway.trigger_status = self._pump.status
        self._pump.start()
        self._sweeper = Sweeper(
            chalice_module.presence_sweeper,
            float(os.environ.get("SWITCHBOARD_DEV_PRESENCE_SWEEP_S", "5")),
        )
        self._sweeper.start()
        # Durable Streams subscriptions: a second mapping on the same stream, and the queue.
        self._wake_pump = StreamPump(
            _client("dynamodbstreams", self.moto_url), stream_arn,
            chalice_module.wake_records, self.stream_poll_ms / 1000,
            TriggerSettings.deployed(chalice_module, aws_limits.WAKE_RECORDS),
            limits.function(aws_limits.WAKE_RECORDS), enforce_timeout=not limits.lenient,
        )
        self._wake_pump.start()
        self._queue_pump = QueuePump(
            _client("sqs", self.moto_url), queue_url, queue_arn, chalice_module.wake_jobs,
            limits.function(aws_limits.WAKE_JOBS), enforce_timeout=not limits.lenient,
            region=os.environ["AWS_REGION"],
        )
        self._queue_pump.start()
        log.info("moto (DynamoDB + Streams) on %s; stream poll every %d ms when idle",
                 self.moto_url, self.stream_poll_ms)

    def _load_limits(self, chalice_module: ModuleType) -> aws_limits.Limits:
        """AWS's limits (or --lenient), timeouts from the app's .chalice/config.json."""
        project_dir = Path(str(chalice_module.__file__)).resolve().parent
        try:
            self.limits = aws_limits.load(project_dir, lenient=self.lenient)
        except aws_limits.LimitsError as error:
            raise DevServerError(str(error)) from None
        for line in self.limits.describe():
            log.info("%s", line)
        return self.limits

    def _configure_auth(self) -> None:
        """A fresh API key for this run (or authentication off, with --no-auth)."""
        if not self.auth:
            os.environ["SWITCHBOARD_AUTH_ENABLED"] = "false"
            return
        from chalicelib.services.credentials import new_api_key

        key = new_api_key("dev")
        self.api_key = f"{key.id}:{key.secret}"
        os.environ["SWITCHBOARD_AUTH_ENABLED"] = "true"
        os.environ["SWITCHBOARD_API_KEYS"] = json.dumps(
            {"keys": [{"id": key.id, "secret": key.secret,
                       "capabilities": key.capabilities.to_dict()}]}
        )
        # The example agent (a child process) authenticates as a backend with this key.
        os.environ["SWITCHBOARD_API_KEY"] = self.api_key
        # Pages served from anywhere may connect locally; on AWS the list is explicit.

    def _console_token(self) -> dict[str, Any]:
        """A browser token for the console: read and write every channel, no admin."""
        from chalicelib.bootstrap import services
        from chalicelib.core.capabilities import Capabilities, Principal

        auth = services().auth
        assert auth is not None
        issuer = Principal("key", None, Capabilities.everything(), key_id="dev")
        return auth.issue(
            issuer, f"console-{uuid.uuid4().hex[:8]}",
            {"*": ["subscribe", "publish", "history"]}, 3600,
        )

    def _create_wake_resources(self) -> tuple[str, str]:
        """The wake job queue (with its dead-letter queue) and the webhook signing secret, in
        moto, as infra/ declares them on AWS; loopback webhooks allowed (dev only)."""
        import secrets

        from chalicelib.settings import get_settings

        sqs = _client("sqs", self.moto_url)
        dlq_url = sqs.create_queue(QueueName="switchboard-dev-wake-jobs-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(
            QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        queue_url = sqs.create_queue(QueueName="switchboard-dev-wake-jobs", Attributes={
            "VisibilityTimeout": "60",  # infra/: at least the function's timeout
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn,
                                         "maxReceiveCount": "5"}),
        })["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        seed = os.environ.get("SWITCHBOARD_DEV_WEBHOOK_SIGNING_SEED") or secrets.token_urlsafe(32)
        secret = _client("secretsmanager", self.moto_url).create_secret(
            Name="switchboard-dev/webhook-signing", SecretString=json.dumps({"seed": seed}))
        os.environ.update({
            "SWITCHBOARD_WAKES_TABLE": get_settings().wakes_table,
            "SWITCHBOARD_WAKE_QUEUE_URL": queue_url,
            "SWITCHBOARD_AWS_ENDPOINT": self.moto_url,
            "SWITCHBOARD_WEBHOOK_SIGNING_SECRET_ID": secret["ARN"],
            "SWITCHBOARD_WEBHOOK_ALLOW_LOOPBACK": "true",
        })
        return queue_url, queue_arn

    def _create_tables(self) -> str:
        from chalicelib.adapters.dynamodb import TTL_ATTRIBUTE, table_definitions
        from chalicelib.settings import get_settings

        settings = get_settings()
        dynamodb = _client("dynamodb", self.moto_url)
        stream_arn = ""
        for definition in table_definitions(
            settings.channels_table, settings.messages_table, settings.connections_table,
            settings.wakes_table,
        ):
            table = dynamodb.create_table(**definition)["TableDescription"]
            dynamodb.update_time_to_live(
                TableName=definition["TableName"],
                TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
            )
            if definition["TableName"] == settings.messages_table:
                stream_arn = table["LatestStreamArn"]
        return stream_arn

    async def serve(self, handle_signals: bool = False) -> None:
        """Serve until SIGINT/SIGTERM (``handle_signals``) or :meth:`request_stop`."""
        assert self.gateway is not None and self._socket is not None, "call open() first"
        limits = self.limits or aws_limits.Limits(lenient=True)
        config = uvicorn.Config(
            self.gateway.app,
            log_config=None,
            access_log=False,
            lifespan="off",
            # API Gateway closes with 1009 over 32 KB a frame or 128 KB a message (protocol.py
            # checks both; uvicorn refuses anything over this before reading it).
            ws=protocol_class(limits.ws_frame_bytes, limits.ws_message_bytes),
            ws_max_size=max(16 * (limits.ws_message_bytes or 0), 16 * 1024 * 1024),
            ws_per_message_deflate=False,  # API Gateway does not negotiate compression
            timeout_graceful_shutdown=10,
            server_header=False,
        )
        self._uvicorn = _Uvicorn(config, self._announce, handle_signals)
        self._uvicorn.on_exit = self._stopping
        await self._uvicorn.serve(sockets=[self._socket])

    def _stopping(self) -> None:
        if self.gateway is not None:
            self.gateway.stopping = True

    def _announce(self) -> None:
        # Both lines first: whatever waits for readiness (the example agent) logs after them.
        print(READY.format(http=self.base_url, ws=self.ws_url), flush=True)
        if self.api_key is not None:
            print(f"API key for this run (shown once, lives in memory only): {self.api_key}",
                  flush=True)
            print("The SDK, the CLI and docs/examples read it from the environment: export "
                  f"SWITCHBOARD_URL={self.base_url} SWITCHBOARD_API_KEY=<the key above>. "
                  f"Console: {self.base_url}/", flush=True)
        else:
            print("WARNING: authentication is OFF (--no-auth): anyone who can reach "
                  f"{self.base_url} can read, write and delete every channel.", flush=True)
        self._announce_limits()
        self._ready.set()

    def _announce_limits(self) -> None:
        if self.lenient:
            print("WARNING: --lenient: AWS's limits are OFF (WebSocket frame/message sizes, "
                  "URL and authorizer sizes, idle and connection timeouts, REST timeout and "
                  "response size, Lambda timeouts, binary Accept rule): what works here may "
                  "fail on AWS.", flush=True)

    def request_stop(self) -> None:
        self._stopping()
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True

    def close(self) -> None:
        """Stop the pump, the handler threads and moto (after serving has ended)."""
        for pump in (self._pump, self._wake_pump, self._queue_pump):
            if pump is not None:
                pump.stop()
        self._pump = self._wake_pump = self._queue_pump = None
        if self._sweeper is not None:
            self._sweeper.stop()
            self._sweeper = None
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    # -- in-process use ------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> DevServer:
        """Open and serve on a background thread; returns once ready."""
        self.open()
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self.serve()), name="switchboard-dev", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise DevServerError("the dev server did not become ready")
        return self

    def stop(self) -> None:
        self.request_stop()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None
        self.close()

    def __enter__(self) -> DevServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _client(service: str, endpoint: str) -> Any:
    import boto3

    session: Any = boto3.session.Session()
    return session.client(service, endpoint_url=endpoint, region_name=os.environ["AWS_REGION"])


SERVICE_ROOT = Path(__file__).resolve().parents[2]


def _service_on_path() -> None:
    """Make the service (``app.py`` and ``chalicelib/`` of the checkout this package lives in)
    importable. They are not part of the installed distribution, so a user's own ``app``
    module never collides with ours; ``switchboard dev`` needs a checkout."""
    if not (SERVICE_ROOT / "app.py").is_file() or not (SERVICE_ROOT / "chalicelib").is_dir():
        raise DevServerError(
            "`switchboard dev` runs the service from a Switchboard checkout: clone the "
            "repository and run `make dev` there (this installation has only the client)"
        )
    if str(SERVICE_ROOT) not in sys.path:
        sys.path.insert(0, str(SERVICE_ROOT))


def _load_app() -> ModuleType:
    """The Chalice module at the root of the checkout (see :func:`_service_on_path`)."""
    module = importlib.import_module("app")
    missing = [n for n in ("app", "connect", "message", "disconnect", "fanout_records",
                           "wake_records", "wake_jobs")
               if not hasattr(module, n)]
    if missing:
        raise DevServerError(
            f"the module 'app' at {getattr(module, '__file__', '?')} is not Switchboard's "
            f"Chalice app (missing {', '.join(missing)}); run from a Switchboard checkout "
            "installed with `pip install -e .[local]`"
        )
    return module


def run(
    host: str = "127.0.0.1", port: int = 8765, stream_poll_ms: int = 50, agent: bool = False,
    auth: bool = True, lenient: bool = False,
) -> int:
    """The ``switchboard dev`` command: serve until Ctrl-C or SIGTERM; the exit status.

    ``agent`` also runs the example agent (examples/agent) once the server is ready.
    """
    logs.configure()
    logs.adopt_powertools()  # before the app: its logger then prints plain lines too
    print("Starting Switchboard dev server: emulated DynamoDB (moto), tables, gateway, "
          "stream pump...", file=sys.stderr, flush=True)
    server = None
    try:
        server = DevServer(host, port, stream_poll_ms, auth=auth, lenient=lenient)
        server.open()
    except DevServerError as error:
        print(f"switchboard dev: {error}", file=sys.stderr, flush=True)
        return 1
    logs.adopt_powertools()  # again, now that the app is loaded (see logs.adopt_powertools)
    worker = AgentProcess() if agent else None
    if worker is not None:
        def start_agent_when_ready(worker: AgentProcess = worker) -> None:
            server._ready.wait()
            worker.start(server.base_url)

        threading.Thread(target=start_agent_when_ready, daemon=True).start()
    try:
        asyncio.run(server.serve(handle_signals=True))
    finally:
        if worker is not None:
            worker.stop()
        server.close()
    log.info("stopped")
    return 0
