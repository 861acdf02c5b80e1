"""Readiness of a process: do the servers it depends on answer?

Each process depends on some of three: its database (`mongo`: a ping as its own database user), its
broker (`amqp`: a channel opened and closed on a connection kept for the purpose, as its own broker
user) and its object storage (`s3`: one of its own buckets looked up with its own keys). Which ones:
a desk talks to its broker only; a service's api and worker use its database and the broker, and S3
when the registry gives the service buckets (`Service.buckets`).

A background checker asks each dependency every ONETHING_READINESS_INTERVAL_SECONDS, each in a
thread of its own (green under eventlet's monkey patch, like every socket the clients open), and
keeps the latest answers: `/readyz` (services/common/ops.py) and the api's gRPC health
(services/common/grpc_server.py) read them instantly and never wait for a server. A check that has
not answered within twice its timeout counts as down, so a server that hangs is seen as well as one
that refuses. Every answer sets the gauge `onething_dependency_up{dependency}` (1 up, 0 down)."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import Gauge

log = logging.getLogger(__name__)

MONGO, AMQP, S3 = "mongo", "amqp", "s3"
DEPENDENCIES = (MONGO, AMQP, S3)

DEPENDENCY_UP = Gauge("onething_dependency_up", "1 while the dependency answers this process's readiness check, "
                      "0 while it does not", ["dependency"])


class Probe(Protocol):
    """One dependency's check: returns when the dependency answers, raises (any exception, whose text
    says what is wrong) when it does not."""
    name: str

    def check(self) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class State:
    """The latest answer about one dependency. `up` is None before its first check has answered."""
    name: str
    up: bool | None
    detail: str = ""
    checked_at: float = 0.0  # time.monotonic() of the answer


@dataclass(frozen=True)
class Summary:
    """The process's readiness: ready when every dependency answered its latest check."""
    ready: bool
    states: tuple[State, ...]

    @property
    def down(self) -> list[str]:
        """The dependencies that are down or not checked yet."""
        return [s.name for s in self.states if not s.up]

    def as_dict(self) -> dict[str, Any]:
        """What /readyz answers (as JSON)."""
        return {"ready": self.ready, "down": self.down,
                "dependencies": {s.name: {"up": bool(s.up), "detail": s.detail or ("answers" if s.up else "")}
                                 for s in self.states}}


Listener = Callable[[Summary], None]


# --- the three checks ---------------------------------------------------------------------------

class MongoProbe:
    """`ping` on the admin database as the process's own user (any authenticated user may): the
    server answers and the credentials are good. The client is kept and reconnects by itself."""
    name = MONGO

    def __init__(self, uri: str, timeout_s: float):
        self.uri, self.timeout_ms = uri, max(1, int(timeout_s * 1000))
        self._client: Any = None

    def check(self) -> None:
        if self._client is None:
            import pymongo
            host = self.uri.split("@")[-1]
            options: dict[str, Any] = {"serverSelectionTimeoutMS": self.timeout_ms, "connectTimeoutMS": self.timeout_ms,
                                       "socketTimeoutMS": self.timeout_ms, "appname": "onething-readiness"}
            if not ("replicaSet=" in self.uri or "directConnection=" in self.uri or "," in host):
                options["directConnection"] = True  # one server: as services/common/mongo.py connects
            self._client = pymongo.MongoClient(self.uri, **options)
        self._client.admin.command("ping")

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


class AmqpProbe:
    """A channel opened and closed on one kept connection (cheap for the broker: no login per check);
    a connection that failed is dropped and made again on the next check."""
    name = AMQP

    def __init__(self, uri: str, timeout_s: float):
        self.uri, self.timeout_s = uri, timeout_s
        self._conn: Any = None

    def check(self) -> None:
        from kombu import Connection
        try:
            if self._conn is None:
                self._conn = Connection(self.uri, connect_timeout=self.timeout_s, heartbeat=0,
                                        transport_options={"read_timeout": self.timeout_s,
                                                           "write_timeout": self.timeout_s})
                self._conn.connect()
            channel = self._conn.channel()
            channel.close()
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.release()
            except Exception:  # already broken: nothing to give back
                pass


class S3Probe:
    """`bucket_exists` on one of the service's buckets, with its own keys; a bucket that is not there
    is as bad as a server that does not answer (every upload would fail)."""
    name = S3

    def __init__(self, endpoint: str, access_key: str, secret_key: str, secure: bool, bucket: str,
                 timeout_s: float):
        import urllib3
        from minio import Minio
        self.bucket = bucket
        self._client = Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=secure,
                             http_client=urllib3.PoolManager(
                                 timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s), maxsize=1,
                                 retries=urllib3.Retry(total=0, redirect=0)))

    def check(self) -> None:
        if not self._client.bucket_exists(self.bucket):
            raise LookupError(f"bucket {self.bucket} does not exist")

    def close(self) -> None:
        pass


def dependencies_of(service: str, role: str) -> tuple[str, ...]:
    """What a process of `service` in `role` (api, worker, desk) depends on."""
    from services.common.registry import NAMES
    from services.common.registry import service as registered
    if role == "desk":
        return (AMQP,)
    if role not in ("api", "worker"):
        raise ValueError(f"role {role!r}: use api, worker or desk")
    if service not in NAMES:
        raise ValueError(f"there is no service called {service!r}; the services are {', '.join(NAMES)}")
    return (MONGO, AMQP, S3) if registered(service).buckets else (MONGO, AMQP)


def probes_for(service: str, dependencies: Iterable[str], settings: Any = None) -> list[Probe]:
    """The checks of `dependencies` with this process's own credentials (the settings)."""
    from services.common.config import settings as current
    from services.common.registry import service as registered
    s = settings or current()
    timeout = s.readiness_timeout_seconds
    found: list[Probe] = []
    for name in dependencies:
        if name == MONGO:
            found.append(MongoProbe(s.mongo_uri, timeout))
        elif name == AMQP:
            found.append(AmqpProbe(s.amqp_uri, timeout))
        elif name == S3:
            buckets = registered(service).buckets
            if not buckets:
                raise ValueError(f"{service} keeps no objects (the registry gives it no bucket): nothing to check in S3")
            found.append(S3Probe(s.s3_endpoint, s.s3_access_key, s.s3_secret_key, s.s3_secure,
                                 f"{s.bucket_prefix}{buckets[0][0]}", timeout))
        else:
            raise ValueError(f"dependency {name!r}: use {', '.join(DEPENDENCIES)}")
    return found


# --- the checker ---------------------------------------------------------------------------------

class Readiness:
    """Checks `probes` in the background (start/stop) and keeps their latest answers. `interval`:
    seconds between two checks of one dependency; `timeout`: a check still running after twice this
    counts as down. Listeners hear the summary whenever it changes (from the checker's threads)."""

    def __init__(self, probes: Sequence[Probe], interval: float, timeout: float,
                 clock: Callable[[], float] = time.monotonic):
        names = [p.name for p in probes]
        if len(set(names)) != len(names):
            raise ValueError(f"each dependency once: {names}")
        self.probes = list(probes)
        self.interval, self.timeout, self.clock = interval, timeout, clock
        self._lock = threading.Lock()
        self._states = {p.name: State(p.name, None, "not checked yet") for p in self.probes}
        self._running_since: dict[str, float] = {}
        self._listeners: list[Listener] = []
        self._published: Summary | None = None
        self._telling = threading.RLock()  # listeners hear one summary at a time, in order
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    # answers ---------------------------------------------------------------------------------
    def summary(self) -> Summary:
        now = self.clock()
        with self._lock:
            states = []
            for probe in self.probes:
                state = self._states[probe.name]
                since = self._running_since.get(probe.name)
                if since is not None and now - since > 2 * self.timeout and state.up is not False:
                    state = State(probe.name, False, f"no answer within {2 * self.timeout:g} s", now)
                states.append(state)
        return Summary(all(s.up for s in states), tuple(states))

    @property
    def ready(self) -> bool:
        return self.summary().ready

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """`listener(summary)` now (when every dependency has answered once) and on every change
        after; returns what unsubscribes it."""
        with self._telling:
            with self._lock:
                self._listeners.append(listener)
            summary = self.summary()
            if all(s.up is not None for s in summary.states):
                listener(summary)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)
        return unsubscribe

    # checking --------------------------------------------------------------------------------
    def check_now(self) -> Summary:
        """Every dependency checked once, here and now (tests, start-up)."""
        for probe in self.probes:
            self._check(probe)
        return self.summary()

    def _check(self, probe: Probe) -> None:
        with self._lock:
            self._running_since[probe.name] = self.clock()
        try:
            probe.check()
            state = State(probe.name, True, "", self.clock())
        except Exception as exc:
            state = State(probe.name, False, f"{type(exc).__name__}: {exc}"[:300], self.clock())
        with self._lock:
            self._running_since.pop(probe.name, None)
            before = self._states[probe.name]
            self._states[probe.name] = state
        if before.up is not state.up:
            if state.up:
                log.info("readiness: %s answers again", probe.name)
            else:
                log.warning("readiness: %s is down: %s", probe.name, state.detail)
        self._publish()

    def _publish(self) -> None:
        with self._telling:
            summary = self.summary()
            for state in summary.states:
                if state.up is not None:
                    DEPENDENCY_UP.labels(state.name).set(1 if state.up else 0)
            if any(s.up is None for s in summary.states):
                return  # not every dependency has answered once: nothing to tell yet
            with self._lock:
                previous = self._published
                changed = previous is None or previous.ready != summary.ready or previous.down != summary.down
                if changed:
                    self._published = summary
                listeners = list(self._listeners) if changed else []
            for listener in listeners:
                try:
                    listener(summary)
                except Exception:
                    log.exception("a readiness listener failed")

    def _loop(self, probe: Probe) -> None:
        while not self._stopping.is_set():
            self._check(probe)
            self._stopping.wait(self.interval)

    def _watch(self) -> None:
        """Publishes what only time shows: a check that hangs."""
        while not self._stopping.wait(self.timeout / 2):
            self._publish()

    def start(self) -> Readiness:
        if self._threads:
            return self
        self._stopping.clear()
        for probe in self.probes:
            self._threads.append(threading.Thread(target=self._loop, args=(probe,), daemon=True,
                                                  name=f"readiness-{probe.name}"))
        self._threads.append(threading.Thread(target=self._watch, daemon=True, name="readiness-watch"))
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=2 * self.timeout + 1)
        self._threads = []
        for probe in self.probes:
            try:
                probe.close()
            except Exception:
                log.debug("closing the %s check failed", probe.name, exc_info=True)


# --- the process's checker -------------------------------------------------------------------------

_current: Readiness | None = None
_current_lock = threading.Lock()


def current() -> Readiness | None:
    """The checker of this process, once services/common/ops.py started it (None before: a process
    without one, such as a unit test's server, is taken to be ready)."""
    return _current


def start_for(service: str, role: str, dependencies: Iterable[str] | None = None) -> Readiness:
    """The process's checker for `service` in `role`, started once."""
    global _current
    from services.common.config import settings
    with _current_lock:
        if _current is None:
            s = settings()
            wanted = tuple(dependencies) if dependencies is not None else dependencies_of(service, role)
            _current = Readiness(probes_for(service, wanted, s), s.readiness_interval_seconds,
                                 s.readiness_timeout_seconds).start()
        return _current


def stop() -> None:
    global _current
    with _current_lock:
        checker, _current = _current, None
    if checker is not None:
        checker.stop()
