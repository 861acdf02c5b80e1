"""MongoDB plumbing: one database per service (a mongoengine alias of the same name), command
spans for tracing, and the outbox that keeps events with the aggregate that caused them."""
import logging
import threading
import time
from typing import Any

import mongoengine
from pymongo import monitoring
from pymongo.errors import OperationFailure

from services.common import counters, telemetry, write_behind
from services.common.config import settings

log = logging.getLogger(__name__)


class _CommandSpans(monitoring.CommandListener):
    """Turns every MongoDB command into a client span, child of whatever span is current, and counts
it by command and collection (counters.MONGO_COMMANDS)."""

    _skip = {"hello", "ismaster", "isMaster", "ping", "saslStart", "saslContinue", "endSessions", "buildInfo"}

    def __init__(self):
        self._spans = {}
        self._lock = threading.Lock()
        self._timers = {}  # (command, collection) -> its MONGO_COMMANDS child, found once

    def started(self, event):
        if event.command_name in self._skip:
            return
        collection = event.command.get(event.command_name)
        collection = collection if isinstance(collection, str) else ""
        span = None
        if telemetry.trace.get_current_span().is_recording():
            name = f"mongo {event.command_name} {event.database_name}.{collection}" if collection else \
                f"mongo {event.command_name} {event.database_name}"
            span = telemetry.tracer().start_span(name, kind=telemetry.trace.SpanKind.CLIENT)
            span.set_attribute("db.system", "mongodb")
        with self._lock:
            self._spans[(event.request_id, event.connection_id)] = (span, collection)

    def _end(self, event, ok):
        with self._lock:
            span, collection = self._spans.pop((event.request_id, event.connection_id), (None, ""))
        if event.command_name not in self._skip:
            timer = self._timers.get((event.command_name, collection))
            if timer is None:
                timer = self._timers[(event.command_name, collection)] = \
                    counters.MONGO_COMMANDS.labels(event.command_name, collection)
            timer.observe(event.duration_micros / 1e6)
        if span is not None:
            if not ok:
                span.set_status(telemetry.trace.Status(telemetry.trace.StatusCode.ERROR))
            span.end()

    def succeeded(self, event):
        self._end(event, True)

    def failed(self, event):
        self._end(event, False)


_listener_installed = False


def connect(service, uri=None, db_name=None):
    """Connect the mongoengine alias `service` to the service's own database."""
    global _listener_installed
    if not _listener_installed:
        monitoring.register(_CommandSpans())
        _listener_installed = True
    s = settings()
    host = uri or s.mongo_uri
    options = {}
    if "replicaSet=" not in host and "directConnection=" not in host and "," not in host.split("@")[-1]:
        # one server and no replica set named: talk to it directly, so a restart that changes what
        # it advertises (standalone / single-node replica set) does not strand the client
        options["directConnection"] = True
    mongoengine.connect(db=db_name or s.db_name(service), host=host, alias=service,
                        tz_aware=True, serverSelectionTimeoutMS=s.mongo_timeout_ms,
                        connectTimeoutMS=s.mongo_timeout_ms, socketTimeoutMS=s.mongo_socket_timeout_ms, **options)


def disconnect(service):
    mongoengine.disconnect(alias=service)


def backoff(attempts):
    """Seconds until the next try of an entry whose publish failed `attempts` times."""
    return min(2 ** attempts, 300)


def _note_failure(coll, doc_id, entry, error):
    """Count a failed publish on the entry and push its next try back, so an entry that keeps
    failing (unroutable, say) waits longer each time and cannot starve the others."""
    attempts = int(entry.get("attempts", 0)) + 1
    try:
        coll.update_one({"_id": doc_id, "outbox.id": entry["id"]},
                        {"$set": {"outbox.$.attempts": attempts,
                                  "outbox.$.next_at": time.time() + backoff(attempts),
                                  "outbox.$.last_error": str(error)[:200]}})
    except Exception:  # the store is away too: the entry keeps its old schedule
        log.warning("could not record the failed publish of %s", entry.get("id"), exc_info=True)


def flush_outbox(doc_cls, doc_id, bus, entries=None, older_than=None):
    """Publish events pending on one aggregate, removing those the broker confirmed.

    A writer passes the entries it added itself, so concurrent writers never publish each other's.
    The sweep passes none and takes the entries that are due. Publishes are mandatory: an event no
    queue is bound for stays pending with its attempt counted and is reported, never dropped. A
    publish that fails is left pending for the sweep: the change it belongs to is already
    committed, so the caller must not fail because of it. The published entries are removed by the
    process's write-behind (services/common/write_behind.py) within ONETHING_WRITE_BEHIND_MS, in
    one batch with other aggregates'; a removal that is lost (the process dies first, the store is
    away) makes the sweep send the event again and the consumers' inboxes absorb the duplicate."""
    from services.common import faults
    from services.common.bus import Unroutable
    coll = doc_cls._get_collection()
    if entries is not None:  # the writer, right after its commit
        for entry in entries:
            faults.point(f"before_publish:{entry['event_type']}")
    else:
        doc = coll.find_one({"_id": doc_id}, {"outbox": 1})
        entries = list((doc or {}).get("outbox") or [])
        now = time.time()
        entries = [e for e in entries if is_due(e, now, older_than)]
    sent = []
    publish = getattr(bus, "publish_entry", None) or (
        lambda e: bus.publish_raw(e["event_type"], e["payload"], {"case_no": e.get("case_no", "")}))
    for entry in entries:
        try:
            publish(entry)
        except Unroutable as exc:
            log.error("event %s (%s) of %s is unroutable: no queue is bound for it; kept pending (attempt %d)",
                      entry["event_type"], entry["id"], doc_id, int(entry.get("attempts", 0)) + 1)
            _note_failure(coll, doc_id, entry, exc)
            continue
        except Exception as exc:  # broker away: the sweep publishes it later
            log.warning("event %s of %s left for the outbox sweep: %s", entry["event_type"], doc_id, exc)
            _note_failure(coll, doc_id, entry, exc)
            break
        sent.append(entry["id"])
    if sent:  # removed in the next batch of write-behind (a clean-up lost costs a duplicate, no more)
        write_behind.default().pull_outbox(coll, doc_id, sent)
    return len(sent)


def is_due(entry, now, older_than):
    """Whether an outbox entry's next try has come: its `next_at`, or for an entry written before
    next_at existed, `older_than` seconds after it was written."""
    if "next_at" in entry:
        return entry["next_at"] <= now
    return entry.get("at", 0) < now - (older_than if older_than is not None else 0)


def sweep_outbox(doc_cls, bus, older_than=None, limit=100):
    """Publish what a process that died (or a broker outage) left pending: entries whose next try
    is due (a new entry is due `sweep_grace_seconds` after it was written, so a live writer's own
    flush is not raced). Delivery is at-least-once; consumers keep an inbox of event ids."""
    grace = settings().sweep_grace_seconds if older_than is None else older_than
    write_behind.flush()  # entries published but still waiting to be removed are not due
    now = time.time()
    coll = doc_cls._get_collection()
    if coll.full_name not in _started:
        try:
            retire_indexes(coll, RETIRED_INDEXES + tuple(getattr(doc_cls, "retired_indexes", ())))
        except OperationFailure:  # not allowed to drop them, say: they cost speed, the sweep must go on
            log.warning("could not drop the retired indexes of %s", coll.full_name, exc_info=True)
    # bounded on both sides: the local server walks an index from its start for a one-sided range
    # (every aggregate with an empty outbox first) and reads the whole collection for an $or
    sent = 0
    for doc in coll.find({"outbox.next_at": {"$gte": 0, "$lte": now}}, {"_id": 1}).limit(limit):
        sent += flush_outbox(doc_cls, doc["_id"], bus, older_than=grace)
    if coll.full_name not in _started:
        sent += _sweep_entries_without_next_at(doc_cls, coll, bus, grace, limit)
        _started.add(coll.full_name)
    return sent


#: indexes every outbox store kept once and no longer does, dropped by a worker's first sweep: each
#: index costs the local server about 1.3 ms on every write of the document, wanted or not
RETIRED_INDEXES: tuple[tuple[tuple[str, int], ...], ...] = ((("outbox.at", 1),),)

_started: set[str] = set()  # collections this process has swept once (retired indexes, old entries)

#: where a database notes what its stores have found done once and need not look for again: per
#: collection, that no outbox entry without next_at is left; that every session has its task keys
#: (fill_missing), every 差评 its place in the list of them
CHECKS = "outbox_checks"


def fill_missing(coll, check, missing, fields_of, projection=None, guard=None):
    """Documents an earlier version stored without some fields get them: `missing` is the query that
    finds those (it must stop matching once they have them), `fields_of(doc)` the $set for one; each
    is written only while it still matches `missing` and `guard(doc)` (say, the version it was read
    at), so a save that came meanwhile wins. True once a look finds none left, which the database
    notes under `check` in `outbox_checks`, so that later processes do not look again."""
    checks = coll.database[CHECKS]
    if checks.find_one({"_id": check}) is not None:
        return True
    found = given = 0
    for doc in coll.find(missing, projection).batch_size(200):
        found += 1
        still = {"_id": doc["_id"], **missing, **(guard(doc) if guard else {})}
        given += coll.update_one(still, {"$set": fields_of(doc)}).modified_count
    if found:
        log.info("%s: gave %d of %d stored documents of %s what they lacked", check, given, found, coll.full_name)
        return False  # looked at once more: none may be left
    checks.update_one({"_id": check}, {"$set": {"none_without_since": time.time()}}, upsert=True)
    return True


def retire_indexes(coll, keys):
    """Drop the indexes of `coll` whose key patterns are in `keys` (each a tuple of (field,
    direction)); those already gone are fine. The names: what was dropped."""
    wanted = {tuple(k) for k in keys}
    dropped = []
    for info in coll.list_indexes():
        if tuple((field, int(direction)) for field, direction in info["key"].items()) in wanted:
            try:
                coll.drop_index(info["name"])
            except OperationFailure as exc:
                if exc.code != 27:  # IndexNotFound: another process dropped it first
                    raise
            dropped.append(info["name"])
    if dropped:
        log.info("retired the indexes %s of %s", ", ".join(dropped), coll.full_name)
    return dropped


def _sweep_entries_without_next_at(doc_cls, coll, bus, grace, limit):
    """Entries an early version wrote with only their `at` are found by no index: once per process,
    until a sweep has found none in this database (noted in `outbox_checks`, since new entries
    always carry next_at), the aggregates holding one are looked for by reading the collection, and
    those entries older than the grace sent."""
    checks = coll.database[CHECKS]
    if checks.find_one({"_id": coll.name}) is not None:
        return 0
    found = list(coll.find({"outbox": {"$elemMatch": {"next_at": {"$exists": False}}}}, {"_id": 1}).limit(limit))
    if not found:
        checks.update_one({"_id": coll.name}, {"$set": {"none_without_next_at_since": time.time()}}, upsert=True)
        return 0
    return sum(flush_outbox(doc_cls, doc["_id"], bus, older_than=grace) for doc in found)


class OutboxStore:
    """Base of a service's store (its persistence port): an aggregate keeps the events its change
    causes in its own document (`outbox`), written in the same atomic update as the change. After
    the commit the store publishes them on `bus` and removes those the broker confirmed, so a
    handler only says "save this with these events". `sweep()` publishes what a process that died,
    or a broker outage, left pending (run by services.common.worker.OutboxSweeper)."""

    #: the mongoengine Document whose `outbox` list holds the pending events
    document: Any = None

    def __init__(self, bus=None):
        self.bus = bus

    def publish(self, aggregate_id, entries):
        """After a committed save: publish the entries the save added (never other writers')."""
        entries = list(entries or ())
        if entries and self.bus is not None:
            flush_outbox(self.document, aggregate_id, self.bus, entries)

    #: what documents stored by earlier versions lack, given by the sweeps (fill_missing) until each
    #: is done: (the store's method, True once none is left; what it gives, for the log)
    backfills: tuple[tuple[str, str], ...] = ()

    def sweep(self, limit=100):
        """Publish due entries of any aggregate; the number published. First, until each is done,
        the backfills."""
        self.backfill()
        if self.bus is None:
            return 0
        return sweep_outbox(self.document, self.bus, limit=limit)

    def backfill(self):
        """Run the backfills not yet done in this process; one that fails is logged and tried again
        on the next sweep, which goes on meanwhile."""
        done = self.__dict__.setdefault("backfilled", set())
        for method, what in self.backfills:
            if method in done:
                continue
            try:
                if getattr(self, method)():
                    done.add(method)
            except OperationFailure:
                log.warning("could not give %s; tried again on the next sweep", what, exc_info=True)

    def pending(self, aggregate_id):
        """The entries still waiting on one aggregate (for tests and tools)."""
        write_behind.flush()
        doc = self.document._get_collection().find_one({"_id": aggregate_id}, {"outbox": 1})
        return list((doc or {}).get("outbox") or [])


def next_counter(coll, key, tries=5):
    """The next number of counter `key` in `coll`, atomically. Two first upserts racing may collide
    on _id (or, on the local server, answer with nothing): the loser tries again and increments the
    winner's document."""
    from pymongo import ReturnDocument
    from pymongo.errors import DuplicateKeyError
    for _ in range(tries):
        try:
            doc = coll.find_one_and_update({"_id": key}, {"$inc": {"value": 1}}, upsert=True,
                                           return_document=ReturnDocument.AFTER)
        except DuplicateKeyError:
            doc = None
        if doc is not None:
            return doc["value"]
    raise RuntimeError(f"no number for counter {key} after {tries} tries")


def plain(value):
    """mongoengine's tracked dicts and lists as plain ones, for the domain to change freely."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


class Stored:
    """A document read with pymongo alone (find_stored), with a mongoengine document's attribute
    names: its primary key field reads `_id`, and a field not stored reads None (the readers already
    take None for a missing field). Without mongoengine's building of the document and its
    dereferencing walk of every list and dict, which cost a worker more than the read itself."""
    __slots__ = ("_fields", "_pk")

    def __init__(self, fields, pk):
        self._fields, self._pk = fields, pk

    def __getattr__(self, name):
        return self._fields.get("_id" if name == self._pk else name)


def find_stored(document, query):
    """One document of `document`'s collection matching the pymongo `query`, as Stored (None when
    there is none). Whole: the local server answers a projection in nearly twice the time of the
    whole document (1.4 against 2.4 ms), and an outbox is small."""
    found = document._get_collection().find_one(query)
    return None if found is None else Stored(found, document._meta["id_field"])


def find_all_stored(document, query):
    """Every document of `document`'s collection matching the pymongo `query`, as Stored."""
    pk = document._meta["id_field"]
    return [Stored(found, pk) for found in document._get_collection().find(query)]
