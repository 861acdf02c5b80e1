"""The ops endpoint every process serves (api, worker, desk): one small HTTP server on
ONETHING_OPS_PORT (0: a free port the kernel picks; the chart: 8080), bound to
ONETHING_OPS_BIND_HOST (127.0.0.1; the chart: 0.0.0.0).

    GET /metrics   prometheus_client's default registry in the text format (OpenMetrics when the
                   scraper asks for it): the process's own metrics, the domain's, the process and
                   platform collectors
    GET /healthz   liveness: 200 while the process runs (503 naming a liveness check that fails)
    GET /readyz    readiness: 200 when every server the process depends on answers, else 503 with a
                   JSON body naming what is down (services/common/readiness.py)

It works in the three kinds of process: grpcio apis and desks (plain threads), and nameko workers
under eventlet's monkey patch. There the accept loop and each request run in threads that the patch
makes green, on sockets the patch makes green, so a slow scraper (or a slow scrape-time collector,
whose database calls are green too) waits without holding the hub. The loop accepts with a timeout
of its own rather than through socketserver, whose selector may be bound to the unpatched poll when
socketserver was imported before the patch (logging.config imports it).

On start the process writes its Prometheus file_sd target file
`<var_dir>/observe/targets/<process name>.json` (atomically: a temporary file renamed), which the
local Prometheus reads, and removes it when it stops (stop(), or at exit).

The metrics of the catalogue that the shared library records (gRPC servers, worker handlers) are
declared here, in the default registry. A service's own metrics live in `services.<service>.metrics`;
when that module has `register(role)`, start() calls it once."""
from __future__ import annotations

import atexit
import importlib
import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import REGISTRY, Counter, Histogram, disable_created_metrics
from prometheus_client.exposition import choose_encoder

from services.common import readiness

log = logging.getLogger(__name__)

ROLES = ("api", "worker", "desk")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")

# --- the catalogue's metrics the shared library records ---------------------------------------------
# gRPC (services/common/grpc_server.py): every call but health checks and reflection
GRPC_STARTED = Counter("grpc_server_started_total", "gRPC calls the server started", ["grpc_service", "grpc_method"])
GRPC_HANDLED = Counter("grpc_server_handled_total", "gRPC calls the server finished, by status code",
                       ["grpc_service", "grpc_method", "grpc_code"])
GRPC_SECONDS = Histogram("grpc_server_handling_seconds", "From a call's start to its status (a stream: its end)",
                         ["grpc_service", "grpc_method"],
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
# worker handlers (services/common/worker.py FailureRules, _InboxView)
HANDLER_MESSAGES = Counter("onething_handler_messages_total", "Messages a worker's handler finished, by outcome: "
                           "ok, outage (retried, not counted against the message), failed (retried and "
                           "counted), dead_lettered", ["service", "handler", "outcome"])
HANDLER_SECONDS = Histogram("onething_handler_seconds", "From a message's arrival at a handler to its result",
                            ["service", "handler"],
                            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
INBOX_DUPLICATES = Counter("onething_inbox_duplicates_total", "Messages a handler skipped: its inbox had their "
                           "event id (a redelivery or a duplicate from another site)", ["service", "handler"])
DEAD_LETTERED = Counter("onething_dead_lettered_total", "Messages sent to the dead-letter queue after their last "
                        "attempt, by the queue they failed in", ["service", "queue"])


@dataclass(frozen=True)
class Identity:
    """Who this process is: its name among the suite's (the target file's name and `process` label),
    its service ("desk" for a department's desk), its role and its site (the region code)."""
    process: str
    service: str
    role: str
    site: str

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.process):
            raise ValueError(f"process name {self.process[:80]!r}: use up to 63 letters, digits, '-', '_' or '.'")
        if self.role not in ROLES:
            raise ValueError(f"role {self.role!r}: use {', '.join(ROLES)}")
        if not self.service:
            raise ValueError("a process needs its service's name (\"desk\" for a desk)")

    def target(self, port: int) -> list[dict[str, Any]]:
        """The Prometheus file_sd entry of this process."""
        return [{"targets": [f"127.0.0.1:{port}"],
                 "labels": {"process": self.process, "service": self.service, "role": self.role, "site": self.site}}]


def parse_process(telemetry_name: str) -> tuple[str, str] | None:
    """(service, role) from the name a process gives its telemetry: "intake-api" -> ("intake", "api"),
    "joint_review-worker" -> ("joint_review", "worker"), "desk-wsjk-440100" -> ("desk", "desk"); a bare
    service name is its api (and "desk_wsjk_440100" a desk), as the processes named themselves before.
    None for anything else: a tool, a test client, a probe service (they serve no ops endpoint)."""
    from services.common.registry import NAMES
    name = telemetry_name.strip()
    if re.fullmatch(r"desk[-_][a-z]{1,16}[-_]\d{6}", name):
        return "desk", "desk"
    for role in ("api", "worker"):
        service = name.removesuffix(f"-{role}")
        if service != name and service in NAMES:
            return service, role
    if name in NAMES:
        return name, "api"
    return None


# --- the HTTP server ---------------------------------------------------------------------------------

class _Handler(BaseHTTPRequestHandler):
    server: Any  # the OpsServer (not a socketserver: the loop below is ours)
    timeout = 10  # a client that sends nothing for this long is let go
    protocol_version = "HTTP/1.0"
    server_version = "onething-ops"

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        ops: OpsServer = self.server
        if path == "/metrics":
            self._metrics()
        elif path == "/healthz":
            status, body = ops.liveness()
            self._json(status, body)
        elif path == "/readyz":
            status, body = ops.readiness_answer()
            self._json(status, body)
        else:
            self._json(404, {"error": f"no such path {path[:100]}; try /metrics, /healthz or /readyz"})

    def _metrics(self) -> None:
        encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
        try:
            body = encoder(REGISTRY)
        except Exception as exc:  # a collector failed: say so, rather than an empty page
            log.exception("a metrics collector failed")
            self._send(500, "text/plain; charset=utf-8", f"collecting metrics failed: {type(exc).__name__}: {exc}\n"
                       .encode())
            return
        self._send(200, content_type, body)

    def _json(self, status: int, body: dict[str, Any]) -> None:
        self._send(status, "application/json", (json.dumps(body, ensure_ascii=False) + "\n").encode())

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class OpsServer:
    """The HTTP server of one process (see the module's description); `checker`: its readiness (None:
    always ready)."""

    def __init__(self, identity: Identity, checker: readiness.Readiness | None, host: str, port: int,
                 targets_dir: str):
        self.identity, self.checker, self.targets_dir = identity, checker, targets_dir
        self._liveness: dict[str, Callable[[], bool]] = {}
        self._stopping = threading.Event()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._socket.bind((host, port))
        except OSError as exc:
            self._socket.close()
            raise OSError(f"the ops endpoint cannot bind {host}:{port} (ONETHING_OPS_BIND_HOST, ONETHING_OPS_PORT): "
                          f"{exc}") from exc
        self._socket.listen(64)
        self._socket.settimeout(0.5)  # the loop looks at _stopping between two accepts
        self.host, self.port = host, self._socket.getsockname()[1]
        self._thread: threading.Thread | None = None

    # answers ---------------------------------------------------------------------------------------
    def add_liveness_check(self, name: str, check: Callable[[], bool]) -> None:
        """`check()` is asked on every /healthz: False (or an exception) makes it 503 naming `name`."""
        self._liveness[name] = check

    def liveness(self) -> tuple[int, dict[str, Any]]:
        failing = []
        for name, check in list(self._liveness.items()):
            try:
                if not check():
                    failing.append(name)
            except Exception as exc:
                failing.append(f"{name} ({type(exc).__name__}: {exc})")
        body = {"alive": not failing, "process": self.identity.process, "pid": os.getpid()}
        if failing:
            body["failing"] = failing
        return (503 if failing else 200), body

    def readiness_answer(self) -> tuple[int, dict[str, Any]]:
        if self.checker is None:
            return 200, {"ready": True, "down": [], "dependencies": {}, "process": self.identity.process}
        summary = self.checker.summary()
        return (200 if summary.ready else 503), {**summary.as_dict(), "process": self.identity.process}

    # running -----------------------------------------------------------------------------------------
    def start(self) -> OpsServer:
        self._thread = threading.Thread(target=self._serve, daemon=True, name="ops-http")
        self._thread.start()
        self._write_target()
        log.info("ops endpoint of %s on http://%s:%d (/metrics, /healthz, /readyz)", self.identity.process,
                 self.host, self.port)
        return self

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, address = self._socket.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                log.warning("ops endpoint: accept failed", exc_info=True)
                time.sleep(0.1)
                continue
            threading.Thread(target=self._answer, args=(conn, address), daemon=True, name="ops-request").start()

    def _answer(self, conn: socket.socket, address: Any) -> None:
        try:
            conn.settimeout(_Handler.timeout)
            _Handler(conn, address, self)  # type: ignore[arg-type]  # the handler needs no socketserver
        except Exception:  # a client that went away mid-answer
            log.debug("ops request from %s failed", address, exc_info=True)
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def stop(self) -> None:
        self._stopping.set()
        self._remove_target()
        try:
            self._socket.close()
        except OSError:
            pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)

    # the file_sd target file ------------------------------------------------------------------------
    @property
    def target_path(self) -> str:
        return os.path.join(self.targets_dir, f"{self.identity.process}.json")

    def _write_target(self) -> None:
        os.makedirs(self.targets_dir, exist_ok=True)
        tmp = f"{self.target_path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(self.identity.target(self.port), fh)
            fh.write("\n")
        os.replace(tmp, self.target_path)

    def _remove_target(self) -> None:
        """Only this process's own file: a process of the same name started since (a restart) keeps its."""
        try:
            with open(self.target_path, encoding="utf-8") as fh:
                mine = json.load(fh) == self.identity.target(self.port)
        except (OSError, ValueError):
            return
        if mine:
            try:
                os.remove(self.target_path)
            except OSError:
                pass


# --- the process's server -------------------------------------------------------------------------------

_server: OpsServer | None = None
_lock = threading.Lock()
_registered: set[str] = set()


def current() -> OpsServer | None:
    return _server


def start(process_name: str, service: str, role: str, dependencies: Iterable[str] | None = None) -> OpsServer:
    """Start this process's ops endpoint once (later calls return the running one): its readiness
    checker (`dependencies`, default: what `service` in `role` uses, services/common/readiness.py),
    the HTTP server, the target file; then `services.<service>.metrics.register(role)` when there is
    one. Stopped by stop() or at exit."""
    global _server
    from services.common.config import settings
    s = settings()
    with _lock:
        if _server is not None:
            if _server.identity.process != process_name:
                log.warning("ops endpoint already serves %s; not started again as %s", _server.identity.process,
                            process_name)
            return _server
        identity = Identity(process_name, service, role, s.region)
        disable_created_metrics()  # no `<counter>_created` series beside every counter and histogram
        checker = readiness.start_for(service, role, dependencies)
        try:
            _server = OpsServer(identity, checker, s.ops_bind_host, s.ops_port,
                                os.path.join(s.var_dir, "observe", "targets")).start()
        except BaseException:
            readiness.stop()
            raise
        atexit.register(stop)
        server = _server
    _register_domain_metrics(service, role)
    return server


def start_for(telemetry_name: str) -> OpsServer | None:
    """start() for a process that names itself `telemetry_name` (what it passes to
    services.common.telemetry.setup): its service and role come from that name, its process name from
    ONETHING_PROCESS_NAME (default: the telemetry name). None, and nothing started, for a name that is
    no api, worker or desk (a tool or a test client)."""
    from services.common.config import settings
    found = parse_process(telemetry_name)
    if found is None:
        return None
    service, role = found
    return start(settings().process_name or telemetry_name, service, role)


def stop() -> None:
    """Stop the HTTP server (its target file removed) and the readiness checker."""
    global _server
    with _lock:
        server, _server = _server, None
    if server is not None:
        server.stop()
    readiness.stop()


def _register_domain_metrics(service: str, role: str) -> None:
    """`services.<service>.metrics.register(role)`, once per process, when the module exists."""
    module_name = f"services.{service}.metrics"
    with _lock:
        if module_name in _registered:
            return
        _registered.add(module_name)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name in (module_name, f"services.{service}"):
            return  # the service declares no metrics of its own
        raise
    register = getattr(module, "register", None)
    if callable(register):
        register(role)
