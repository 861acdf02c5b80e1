"""The outbox of services.common.mongo.OutboxStore in memory, for the services' fake stores
(services/<svc>/fakes.py): one copy of its rules, so every fake runs the same outbox as the real
store and passes the same contract tests."""
import copy
import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

from services.common.config import settings
from services.common.mongo import backoff, is_due

log = logging.getLogger(__name__)


class MemoryOutbox:
    """Base of a fake store whose aggregates keep the events their change causes (`outbox`), with
    the rules of services.common.mongo (flush_outbox, sweep_outbox):

    - `publish(aggregate_id, entries)`, after a committed write, publishes the entries that write
      added (never another writer's) and removes those the bus took;
    - a failed publish leaves its entry pending: `attempts` counted, `next_at` pushed back by
      mongo.backoff, `last_error` kept. An Unroutable entry (no queue bound for it) does not hold
      the next ones back; any other failure (the broker away) stops the round;
    - `sweep()` publishes the entries whose next try is due (`next_at`; an entry without one,
      `sweep_grace_seconds` after it was written) of at most `limit` aggregates;
    - `pending(aggregate_id)` lists what waits; `make_due(aggregate_id)` is a test aid that brings
      every next try of one aggregate forward to now.

    The fake keeps each aggregate's pending entries in a list of its own: by default in `docs`,
    {aggregate id: {"outbox": [...], ...}} (`_aggregates` names another such dict; `_outbox_of` and
    `_every_outbox` another layout). It calls `super().__init__(bus)` and guards its own state with
    `self._lock` (re-entrant), the lock the outbox takes too. `outbox_now()` is now in seconds
    (time.time), for when entries are due; a fake whose tests move time overrides it."""

    def __init__(self, bus=None):
        self.bus = bus
        self._lock = threading.RLock()

    # -- what the fake provides ----------------------------------------------------------------------

    #: by default the fake's aggregates: {aggregate id: {"outbox": [pending entries], ...}}
    docs: dict[Any, dict]

    def _aggregates(self) -> dict[Any, dict]:
        """{aggregate id: {"outbox": [pending entries], ...}}: the fake's `docs` unless it says otherwise."""
        return self.docs

    def _outbox_of(self, aggregate_id) -> list[dict] | None:
        """The entries pending on one aggregate, the fake's own list (changed in place); None when
        there is no such aggregate."""
        doc = self._aggregates().get(aggregate_id)
        return doc["outbox"] if doc is not None else None

    def _every_outbox(self) -> Iterable[tuple[Any, list[dict]]]:
        """(aggregate id, its pending entries) of every aggregate."""
        return [(aggregate_id, doc["outbox"]) for aggregate_id, doc in list(self._aggregates().items())]

    def outbox_now(self) -> float:
        return time.time()

    # -- the outbox ----------------------------------------------------------------------------------

    def publish(self, aggregate_id, entries):
        """After a committed write: publish the entries it added; the number the bus took. Never
        raises for the bus: what it refused stays pending for the sweep."""
        entries = list(entries or ())
        if not entries or self.bus is None:
            return 0
        return self._flush(aggregate_id, entries)

    def sweep(self, limit=100, older_than=None):
        """Publish the due entries of any aggregate; the number published."""
        if self.bus is None:
            return 0
        grace = settings().sweep_grace_seconds if older_than is None else older_than
        now = self.outbox_now()
        with self._lock:
            due = [(aggregate_id, [copy.deepcopy(e) for e in box if is_due(e, now, grace)])
                   for aggregate_id, box in list(self._every_outbox())]
        return sum(self._flush(aggregate_id, entries) for aggregate_id, entries in [d for d in due if d[1]][:limit])

    def pending(self, aggregate_id=None):
        """The entries still waiting on one aggregate (on every aggregate when None), as copies."""
        with self._lock:
            if aggregate_id is None:
                return [copy.deepcopy(e) for _, box in list(self._every_outbox()) for e in box]
            return copy.deepcopy(list(self._outbox_of(aggregate_id) or []))

    def make_due(self, aggregate_id):
        """Test aid: every pending entry of the aggregate due now (as if its retry time had come)."""
        with self._lock:
            for entry in self._outbox_of(aggregate_id) or []:
                entry["next_at"] = 0

    def _flush(self, aggregate_id, entries):
        from services.common.bus import Unroutable
        bus = self.bus
        publish = getattr(bus, "publish_entry", None) or (
            lambda e: bus.publish_raw(e["event_type"], e["payload"], {"case_no": e.get("case_no", "")}))
        sent = []
        for entry in entries:
            try:
                publish(entry)
            except Unroutable as exc:
                log.error("event %s (%s) of %s is unroutable: no queue is bound for it; kept pending",
                          entry["event_type"], entry["id"], aggregate_id)
                self._note_failure(aggregate_id, entry, exc)
                continue
            except Exception as exc:  # the broker away: the sweep publishes it later
                log.warning("event %s of %s left for the outbox sweep: %s", entry["event_type"], aggregate_id, exc)
                self._note_failure(aggregate_id, entry, exc)
                break
            sent.append(entry["id"])
        if sent:
            with self._lock:
                box = self._outbox_of(aggregate_id)
                if box is not None:
                    box[:] = [e for e in box if e["id"] not in sent]
        return len(sent)

    def _note_failure(self, aggregate_id, entry, error):
        with self._lock:
            for kept in self._outbox_of(aggregate_id) or []:
                if kept["id"] == entry["id"]:
                    kept["attempts"] = int(kept.get("attempts", 0)) + 1
                    kept["next_at"] = self.outbox_now() + backoff(kept["attempts"])
                    kept["last_error"] = str(error)[:200]
