"""Gauges read from a service's database when Prometheus scrapes, and the first of them: what the
service's outbox holds (`onething_outbox_pending{service}`: events kept with their aggregates and
not yet published; `onething_outbox_oldest_age_seconds{service}`: how long the oldest of them has
waited, 0 when there is none).

An outbox is the `outbox` list of an aggregate's document (services.common.mongo.OutboxStore): its
entries (services.common.bus.outbox_entry) carry `at`, when they were written. One aggregation per
collection counts the entries and finds the oldest `at`; it starts on the `outbox.next_at` index
the stores declare, so it reads the documents that hold pending events and no others (entries of an
early version, without next_at, are not counted: the sweep sends those at a worker's start).

A store that does not answer within `timeout_seconds` (finding the server included) or answers
with something unexpected gives no samples and never an exception: an exception would fail the
whole /metrics of the process. It is logged in one line when the store stops answering and in one
when it answers again, not on every scrape of an outage.

Each service's `metrics.py` says what its roles serve (services/common/ops.py calls its
`register(role)`). A registry has one outbox collector, to which each service served adds its
collections (`serve_outbox`), so a process that registers several services (a test, a tool)
exposes each metric once, with a sample per service."""
import functools
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import pymongo
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

log = logging.getLogger(__name__)
T = TypeVar("T")

#: the roles a service's process plays (the launcher's `<service>-api` and `<service>-worker`)
ROLES = ("api", "worker")

#: how long one reading waits for the store (finding the server included) before it gives up
SCRAPE_TIMEOUT_SECONDS = 2.0

#: the pending entries of every aggregate in one collection: their number and the oldest `at`. The
#: range on `outbox.next_at` (an entry is written with its next try) makes it an index scan of the
#: entries that are pending, whatever the size of the collection.
BACKLOG_PIPELINE: tuple[dict[str, Any], ...] = (
    # bounded on both sides, so the local server seeks in the index instead of walking it from the start
    {"$match": {"outbox.next_at": {"$gte": 0, "$lt": 1e15}}},
    {"$project": {"_id": 0, "outbox.at": 1}},
    {"$unwind": "$outbox"},
    {"$group": {"_id": None, "pending": {"$sum": 1}, "oldest": {"$min": "$outbox.at"}}},
)


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one a process plays; use one of {', '.join(ROLES)}")
    return role


def _check_timeout(timeout_seconds: float) -> float:
    if not timeout_seconds > 0:
        raise ValueError(f"timeout_seconds={timeout_seconds!r}: a scrape needs some time to read the store")
    return timeout_seconds


class StoreReading:
    """Reads something from a store at scrape time: the answer, or None when the store does not
    answer within `timeout_seconds` or the reading fails otherwise. `what` names the samples in the
    log lines: one when the store stops answering, one when it answers again."""

    def __init__(self, what: str, timeout_seconds: float = SCRAPE_TIMEOUT_SECONDS) -> None:
        self.what = what
        self.timeout_seconds = _check_timeout(timeout_seconds)
        self.failing = False

    def __call__(self, read: Callable[[], T]) -> T | None:
        try:
            with pymongo.timeout(self.timeout_seconds):
                answer = read()
        except Exception as exc:  # the store away, or data this code does not understand
            if not self.failing:
                log.warning("%s: no samples while the store does not answer (%s: %s)",
                            self.what, type(exc).__name__, _short(exc))
            else:
                log.debug("%s: still no answer (%s)", self.what, type(exc).__name__)
            self.failing = True
            return None
        if self.failing:
            log.info("%s: the store answers again", self.what)
            self.failing = False
        return answer


def _short(exc: BaseException, most: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= most else text[:most] + "…"


class StoreGauges(Collector):
    """Base of a collector whose samples are read from a store at scrape time. A subclass gives its
    metric families without samples (`families`, also what the registry reads to know their names)
    and with them (`measure`, which may raise: StoreReading absorbs the failure)."""

    #: what the log lines call the samples (the metric names, say)
    what = "store gauges"

    def __init__(self, timeout_seconds: float = SCRAPE_TIMEOUT_SECONDS) -> None:
        self.reading = StoreReading(self.what, timeout_seconds)

    @property
    def failing(self) -> bool:
        return self.reading.failing

    def families(self) -> Sequence[Metric]:
        raise NotImplementedError

    def measure(self) -> list[Metric]:
        raise NotImplementedError

    def describe(self) -> Iterable[Metric]:
        # without it the registry would call collect() to learn the names: a query at registration
        return self.families()

    def collect(self) -> Iterable[Metric]:
        return self.reading(self.measure) or []


def backlog(collection: Any) -> tuple[int, float | None]:
    """The pending outbox entries of one collection: (how many, `at` of the oldest or None)."""
    rows = list(collection.aggregate(list(BACKLOG_PIPELINE)))
    if not rows:
        return 0, None
    row = rows[0]
    oldest = row.get("oldest")
    return int(row.get("pending") or 0), (float(oldest) if oldest is not None else None)


def backlog_of(collections: Iterable[Callable[[], Any]]) -> tuple[int, float | None]:
    """The pending entries of several collections together: (how many, the oldest `at` or None)."""
    pending, oldest = 0, None
    for collection_of in collections:
        count, at = backlog(collection_of())
        pending += count
        if at is not None and (oldest is None or at < oldest):
            oldest = at
    return pending, oldest


class OutboxGauges(Collector):
    """`onething_outbox_pending{service}` and `onething_outbox_oldest_age_seconds{service}` of the
    services `add`ed: each with the collections of its aggregates, callables that give the pymongo
    collections at scrape time (a mongoengine Document's `_get_collection`: the connection may well
    be made after the collector is registered). Each service is read on its own, so a store that
    does not answer costs its own samples only. `clock` gives the time now (epoch seconds), what an
    entry's `at` is."""

    def __init__(self, clock: Callable[[], float] = time.time,
                 timeout_seconds: float = SCRAPE_TIMEOUT_SECONDS) -> None:
        self.clock = clock
        self.timeout_seconds = _check_timeout(timeout_seconds)
        self._outboxes: dict[str, tuple[tuple[Callable[[], Any], ...], StoreReading]] = {}
        self._lock = threading.Lock()

    def add(self, service: str, collections: Sequence[Callable[[], Any]]) -> "OutboxGauges":
        if not service:
            raise ValueError("name the service whose outbox this is")
        if not collections:
            raise ValueError(f"name the collections of {service}'s aggregates that keep an outbox")
        with self._lock:
            self._outboxes[service] = (tuple(collections),
                                       StoreReading(f"onething_outbox_* of {service}", self.timeout_seconds))
        return self

    def collections(self, service: str) -> tuple[Callable[[], Any], ...]:
        """The collections read for `service` (none when it was not added)."""
        with self._lock:
            entry = self._outboxes.get(service)
        return entry[0] if entry is not None else ()

    def families(self) -> list[GaugeMetricFamily]:
        return [GaugeMetricFamily("onething_outbox_pending",
                                  "Events kept in the outboxes of a service's aggregates, not published yet",
                                  labels=["service"]),
                GaugeMetricFamily("onething_outbox_oldest_age_seconds",
                                  "Seconds the oldest event in a service's outboxes has waited (0: none waits)",
                                  labels=["service"])]

    def describe(self) -> Iterable[Metric]:
        return self.families()

    def collect(self) -> Iterable[Metric]:
        pending_family, age_family = self.families()
        with self._lock:
            outboxes = sorted(self._outboxes.items())
        for service, (collections, reading) in outboxes:
            found = reading(functools.partial(backlog_of, collections))
            if found is None:
                continue
            pending, oldest = found
            pending_family.add_metric([service], pending)
            age_family.add_metric([service], max(0.0, self.clock() - oldest) if oldest is not None else 0.0)
        return [pending_family, age_family]


_registered: "weakref.WeakKeyDictionary[CollectorRegistry, dict[str, list[Collector]]]" = weakref.WeakKeyDictionary()
_registering = threading.RLock()


def register_once(name: str, registry: CollectorRegistry, build: Callable[[], Iterable[Collector]]) -> list[Collector]:
    """Register the collectors `build()` makes under `name` in `registry`, once: a second call (a
    process that registers twice, a test) gives back those registered the first time instead of
    failing on the duplicated metric names. All or nothing: when one cannot be registered, none is."""
    with _registering:
        done = _registered.setdefault(registry, {})
        if name not in done:
            collectors = list(build())
            registered: list[Collector] = []
            try:
                for collector in collectors:
                    registry.register(collector)
                    registered.append(collector)
            except Exception:  # a name another collector serves already, say
                for collector in registered:
                    registry.unregister(collector)
                raise
            done[name] = collectors
        return done[name]


def outbox_gauges(registry: CollectorRegistry) -> OutboxGauges:
    """The one outbox collector of `registry`, registered the first time it is asked for."""
    [gauges] = register_once("outbox", registry, lambda: [OutboxGauges()])
    assert isinstance(gauges, OutboxGauges)
    return gauges


def serve_outbox(registry: CollectorRegistry, service: str, *documents: Any) -> OutboxGauges:
    """`registry` serves the outbox of `service`, whose aggregates are the mongoengine `documents`."""
    return outbox_gauges(registry).add(service, [d._get_collection for d in documents])


def worker_outbox(service: str, *documents: str):
    """The `register(role, registry=REGISTRY)` of a service whose worker serves only its outbox
    gauges; `documents` name its aggregates as "module:Class" (imported when it registers, so the
    metrics module stays light)."""
    def register(role: str, registry: CollectorRegistry = REGISTRY) -> list[Collector]:
        if check_role(role) != "worker":
            return []
        import importlib
        docs = [getattr(importlib.import_module(module), name)
                for module, name in (d.split(":", 1) for d in documents)]
        return [serve_outbox(registry, service, *docs)]
    return register
