"""The in-memory stand-in for the catalog's store (services.catalog.store.CatalogStore), for unit
tests and for tools that need a catalog without MongoDB: the same methods and the same outbox rules
(events published after a committed write, kept pending when the bus fails, published later by
`sweep`), run against the same contract tests (tests/test_catalog_store_contract.py)."""
import copy
import dataclasses
import datetime
import threading
import time

from services.catalog.definitions import PackageVersion, VersionStatus


def _utc_now():
    return datetime.datetime.now(datetime.UTC)


def _backoff(attempts):
    return min(2 ** attempts, 300)


def version_id(code, version):
    return f"{code}:{version}"


class MemoryCatalogStore:
    """`docs`: {(code, version): {"version": PackageVersion, "outbox": [pending entries]}}; tests may
    read it."""

    def __init__(self, bus=None, clock=None):
        self.bus = bus
        self.clock = clock or _utc_now
        self.docs = {}
        self._lock = threading.Lock()

    # -- versions --------------------------------------------------------------------------------

    def add_version(self, code, version, status, definition, digest, events=()):
        status, events = VersionStatus(status), copy.deepcopy(list(events))
        with self._lock:
            if (code, version) in self.docs:
                return False
            now = self.clock()
            self.docs[(code, version)] = {"version": PackageVersion(
                code=code, version=version, status=status, digest=digest, definition=copy.deepcopy(definition),
                created_at=now, published_at=now if status is VersionStatus.PUBLISHED else None), "outbox": events}
        self.publish(version_id(code, version), events)
        return True

    def replace_draft(self, code, version, definition, digest):
        with self._lock:
            doc = self.docs.get((code, version))
            if doc is None or doc["version"].status is not VersionStatus.DRAFT:
                return False
            doc["version"] = dataclasses.replace(doc["version"], definition=copy.deepcopy(definition), digest=digest)
            return True

    def set_status(self, code, version, expected, status, events=()):
        expected, status, events = VersionStatus(expected), VersionStatus(status), copy.deepcopy(list(events))
        with self._lock:
            doc = self.docs.get((code, version))
            if doc is None or doc["version"].status is not expected:
                return False
            stamp = {VersionStatus.PUBLISHED: "published_at", VersionStatus.RETIRED: "retired_at"}.get(status)
            doc["version"] = dataclasses.replace(doc["version"], status=status, **({stamp: self.clock()} if stamp else {}))
            doc["outbox"].extend(events)
        self.publish(version_id(code, version), events)
        return True

    def version(self, code, version):
        doc = self.docs.get((code, version))
        return copy.deepcopy(doc["version"]) if doc else None

    def latest(self, code, status=None):
        status = VersionStatus(status) if status is not None else None
        found = [d["version"] for (c, _), d in self.docs.items()
                 if c == code and (status is None or d["version"].status is status)]
        return copy.deepcopy(max(found, key=lambda v: v.version)) if found else None

    def versions(self, code):
        return [copy.deepcopy(d["version"]) for (c, _), d in sorted(self.docs.items()) if c == code]

    def codes(self):
        return sorted({c for c, _ in self.docs})

    def drop_retired_events(self, event_types):
        changed = 0
        with self._lock:
            for doc in self.docs.values():
                kept = [e for e in doc["outbox"] if e["event_type"] not in event_types]
                changed += len(kept) != len(doc["outbox"])
                doc["outbox"] = kept
        return changed

    # -- the outbox (as services.common.mongo.OutboxStore) ---------------------------------------

    def publish(self, aggregate_id, entries):
        """After a committed write: publish the entries it added, drop those the bus took."""
        entries = list(entries or ())
        if entries and self.bus is not None:
            self._flush(aggregate_id, entries)

    def sweep(self, limit=100):
        """Publish the entries whose next try is due; the number published."""
        if self.bus is None:
            return 0
        now, sent = time.time(), 0
        due = [version_id(*key) for key, doc in self.docs.items() if any(_due(e, now) for e in doc["outbox"])]
        for aggregate_id in due[:limit]:
            sent += self._flush(aggregate_id, [e for e in self._doc(aggregate_id)["outbox"] if _due(e, now)])
        return sent

    def pending(self, aggregate_id=None):
        """The entries still waiting on one version ("<code>:<version>"), or on every version."""
        if aggregate_id is None:
            return [copy.deepcopy(e) for d in self.docs.values() for e in d["outbox"]]
        doc = self._doc(aggregate_id)
        return copy.deepcopy(doc["outbox"]) if doc else []

    def _doc(self, aggregate_id):
        code, _, version = aggregate_id.rpartition(":")
        return self.docs.get((code, int(version)))

    def _flush(self, aggregate_id, entries):
        from services.common.bus import Unroutable
        doc = self._doc(aggregate_id)
        sent = []
        for entry in entries:
            try:
                self.bus.publish_entry(entry)
            except Exception as exc:  # kept pending, tried again later, as the real store does
                for kept in doc["outbox"]:
                    if kept["id"] == entry["id"]:
                        kept["attempts"] = int(kept.get("attempts", 0)) + 1
                        kept["next_at"] = time.time() + _backoff(kept["attempts"])
                        kept["last_error"] = str(exc)[:200]
                if isinstance(exc, Unroutable):
                    continue
                break
            sent.append(entry["id"])
        doc["outbox"] = [e for e in doc["outbox"] if e["id"] not in sent]
        return len(sent)


def _due(entry, now):
    return entry.get("next_at", entry.get("at", 0)) <= now
