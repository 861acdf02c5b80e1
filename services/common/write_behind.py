"""Writes whose loss costs at most a duplicate, sent in batches instead of one command each: the
record that a handler processed an event (its inbox entry) and the removal of published events from
an aggregate's outbox. They wait up to ONETHING_WRITE_BEHIND_MS (50 ms) and then go to MongoDB as
one bulk command per collection, which on the suite's path of a case replaces some sixty commands.

Why losing them is safe: an outbox entry left behind is published again by the sweep and the
consumers' inboxes (or the domain's own idempotency) absorb the copy; an inbox record that never
arrives lets a later duplicate run its handler again, which is what happened before when a process
died between handling and recording. So a batch that fails (the store is away) is kept and tried
again, and one that grows past its bound drops its oldest writes with a warning rather than the
process's memory. What is waiting is flushed when the process stops (atexit, and the worker's
Inbox and Component on stop), and `holds()` lets the inbox see an event it has recorded but not yet
written.

One WriteBehind per process (`default()`), shared by every store and inbox in it; it works in
plain threads (the apis) and in eventlet's green ones (nameko monkey-patches threading)."""
import atexit
import logging
import threading
import time

from pymongo import InsertOne, UpdateOne
from pymongo.errors import BulkWriteError

log = logging.getLogger(__name__)

DUPLICATE_KEY = 11000


def _name(coll):
    return f"{coll.database.name}.{coll.name}" if hasattr(coll, "database") else f"{id(coll)}"


class WriteBehind:
    def __init__(self, delay_seconds=0.05, limit=20000):
        self.delay = delay_seconds
        self.limit = limit
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        # collection name → (collection, {_id: document}) and (collection, {aggregate _id: {event ids}})
        self._inserts: dict[str, tuple[object, dict]] = {}
        self._pulls: dict[str, tuple[object, dict]] = {}
        self._in_flight: set[tuple[str, object]] = set()
        self._count = 0
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False
        self.dropped = 0

    # what callers hand over -------------------------------------------------------------------
    def insert(self, coll, document):
        """Insert `document` soon; a document whose _id is there already is no error."""
        if self.delay <= 0:
            self._write(coll, [document], {})
            return
        with self._lock:
            _, docs = self._inserts.setdefault(_name(coll), (coll, {}))
            if document["_id"] not in docs:
                docs[document["_id"]] = document
                self._count += 1
        self._queued()

    def pull_outbox(self, coll, aggregate_id, event_ids):
        """Remove the entries `event_ids` from the `outbox` list of document `aggregate_id` soon."""
        if not event_ids:
            return
        if self.delay <= 0:
            self._write(coll, [], {aggregate_id: set(event_ids)})
            return
        with self._lock:
            _, pulls = self._pulls.setdefault(_name(coll), (coll, {}))
            pulls.setdefault(aggregate_id, set()).update(event_ids)
            self._count += 1
        self._queued()

    def holds(self, coll, key):
        """Whether an insert of _id `key` into `coll` is waiting or being written."""
        name = _name(coll)
        with self._lock:
            entry = self._inserts.get(name)
            return (entry is not None and key in entry[1]) or (name, key) in self._in_flight

    def pending(self):
        with self._lock:
            return self._count

    # writing -----------------------------------------------------------------------------------
    def flush(self):
        """Write everything waiting now; True when nothing is left (a failed batch stays queued)."""
        with self._flushing:
            with self._lock:
                inserts, pulls, self._inserts, self._pulls, self._count = self._inserts, self._pulls, {}, {}, 0
                self._in_flight = {(n, k) for n, (_, docs) in inserts.items() for k in docs}
            failed = False
            for name in set(inserts) | set(pulls):
                coll = (inserts.get(name) or pulls.get(name))[0]  # type: ignore[index]
                docs = inserts.get(name, (coll, {}))[1]
                removals = pulls.get(name, (coll, {}))[1]
                try:
                    self._write(coll, list(docs.values()), removals)
                except Exception as exc:
                    failed = True
                    self._requeue(name, coll, docs, removals, exc)
            with self._lock:
                self._in_flight = set()
            if not failed and self._failing:
                self._failing = False
                log.warning("write-behind works again: the writes kept meanwhile are written")
            return not failed

    @staticmethod
    def _write(coll, documents, removals):
        if documents:
            try:
                coll.bulk_write([InsertOne(d) for d in documents], ordered=False)
            except BulkWriteError as exc:
                others = [e for e in exc.details.get("writeErrors", []) if e.get("code") != DUPLICATE_KEY]
                if others:
                    raise
        if removals:
            coll.bulk_write([UpdateOne({"_id": aggregate_id}, {"$pull": {"outbox": {"id": {"$in": sorted(ids)}}}})
                             for aggregate_id, ids in removals.items()], ordered=False)

    def _requeue(self, name, coll, docs, removals, exc):
        if not self._failing:
            self._failing = True
            log.warning("write-behind to %s failed (%s: %s); its writes are kept and tried again",
                        name, type(exc).__name__, exc)
        with self._lock:
            _, now_docs = self._inserts.setdefault(name, (coll, {}))
            for key, doc in docs.items():
                now_docs.setdefault(key, doc)
            _, now_pulls = self._pulls.setdefault(name, (coll, {}))
            for aggregate_id, ids in removals.items():
                now_pulls.setdefault(aggregate_id, set()).update(ids)
            self._count += len(docs) + len(removals)
            self._drop_over_limit()

    def _drop_over_limit(self):
        """Called with the lock held: forget the oldest writes beyond the bound."""
        over = self._count - self.limit
        if over <= 0:
            return
        for table in (self._pulls, self._inserts):
            for _, entries in table.values():
                while over > 0 and entries:
                    entries.pop(next(iter(entries)))
                    over -= 1
                    self._count -= 1
                    self.dropped += 1
        log.warning("write-behind holds more than %d writes: dropped the oldest (%d so far); the sweep "
                    "and the inboxes absorb what that repeats", self.limit, self.dropped)

    # the background flusher -------------------------------------------------------------------
    def _queued(self):
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="write-behind", daemon=True)
                    self._thread.start()
        self._wake.set()

    def _run(self):
        while True:
            self._wake.wait()
            self._wake.clear()
            time.sleep(self.delay)  # let the writes of this moment gather
            try:
                ok = self.flush()
            except Exception:  # never let the flusher die
                log.exception("write-behind flush failed")
                ok = False
            if not ok:
                time.sleep(1.0)
                self._wake.set()


_default: WriteBehind | None = None
_default_lock = threading.Lock()


def default():
    """The process's WriteBehind, with the configured delay."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                from services.common.config import settings
                _default = WriteBehind(settings().write_behind_ms / 1000.0)
                atexit.register(flush)
    return _default


def flush():
    """Write what waits in the process's WriteBehind (if it has one) now."""
    if _default is not None:
        _default.flush()
