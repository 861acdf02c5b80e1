"""The in-memory stand-in for the catalog's store (services.catalog.store.CatalogStore), for unit
tests and for tools that need a catalog without MongoDB: the same methods and the same outbox rules
(events published after a committed write, kept pending when the bus fails, published later by
`sweep`), run against the same contract tests (tests/test_catalog_store_contract.py)."""
import copy
import dataclasses
import datetime

from services.catalog.definitions import PackageVersion, VersionStatus
from services.common.memory import MemoryOutbox


def _utc_now():
    return datetime.datetime.now(datetime.UTC)


def version_id(code, version):
    return f"{code}:{version}"


class MemoryCatalogStore(MemoryOutbox):
    """`docs`: {(code, version): {"version": PackageVersion, "outbox": [pending entries]}}, `upstreams`:
    {(site, code, version): UpstreamVersion}; tests may read them. `pending()` without a version
    lists the entries of every version."""

    def __init__(self, bus=None, clock=None):
        super().__init__(bus)
        self.clock = clock or _utc_now
        self.docs = {}
        self.upstreams = {}  # {(site, code, version): UpstreamVersion}

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

    def add_events(self, code, version, events):
        events = copy.deepcopy(list(events))
        with self._lock:
            doc = self.docs.get((code, version))
            if doc is None:
                return False
            doc["outbox"].extend(events)
        self.publish(version_id(code, version), events)
        return True

    # -- what the site above published ------------------------------------------------------------

    def add_upstream(self, upstream):
        key = (upstream.site, upstream.code, upstream.version)
        with self._lock:
            if key in self.upstreams:
                return False
            self.upstreams[key] = dataclasses.replace(copy.deepcopy(upstream), received_at=self.clock())
        return True

    def upstream(self, site, code, version):
        return copy.deepcopy(self.upstreams.get((site, code, version)))

    def latest_upstream(self, site, code):
        found = [u for (s, c, _), u in self.upstreams.items() if (s, c) == (site, code)]
        return copy.deepcopy(max(found, key=lambda u: u.version)) if found else None

    def upstream_codes(self, site):
        return sorted({c for s, c, _ in self.upstreams if s == site})

    def note_upstream(self, site, code, version, problem):
        with self._lock:
            found = self.upstreams.get((site, code, version))
            if found is None:
                return False
            self.upstreams[(site, code, version)] = dataclasses.replace(found, problem=problem)
            return True

    # -- the outbox (services.common.memory.MemoryOutbox) -------------------------------------------

    def _outbox_of(self, aggregate_id):
        """The outbox of version "<code>:<version>"."""
        code, _, version = aggregate_id.rpartition(":")
        doc = self.docs.get((code, int(version)))
        return doc["outbox"] if doc else None

    def _every_outbox(self):
        return [(version_id(*key), doc["outbox"]) for key, doc in list(self.docs.items())]
