"""In-memory twins of elicense's adapters, for tests. MemoryLicenseStore keeps the port of
services.elicense.store.LicenseStore with the same rules (compare-and-set on the status, one
licence per case item, reserved serial numbers, the outbox published after each committed change
and swept when a publish failed) and is run against the same contract tests
(tests/test_elicense_store_contract.py)."""
import copy
import dataclasses
import functools
import logging
import time

from services.common.bus import Unroutable
from services.common.config import settings
from services.elicense import domain
from services.elicense.store import outbox_entries

log = logging.getLogger(__name__)


def _interferable(method):
    """Lets a test run something just before the next call of `method` (MemoryLicenseStore.interfere)."""
    @functools.wraps(method)
    def run(self, *args, **kwargs):
        action = self._interference.pop(method.__name__, None)
        if action is not None:
            action()
        return method(self, *args, **kwargs)
    return run


class MemoryLicenseStore:
    def __init__(self, bus=None, clock=None):
        """`clock()`: now in seconds (time.time), for when outbox entries are due."""
        self.bus = bus
        self.clock = clock or time.time
        self._licences = {}  # license_id -> {"fields": {...}, "outbox": [...]}
        self._keys = {}  # key_id -> domain.SigningKey, in the order added
        self._counters, self._reserved = {}, {}
        self._interference = {}

    def interfere(self, method, action):
        """Run `action()` just before the next call of `method` (once): another writer's change
        meanwhile, or a fault (an action that raises: the store went away)."""
        self._interference[method] = action

    # --- licences ---------------------------------------------------------------------------

    def _copy(self, record):
        return copy.deepcopy(record["fields"]) if record is not None else None

    @_interferable
    def get(self, license_id):
        return self._copy(self._licences.get(license_id))

    @_interferable
    def for_case_item(self, case_no, item_code):
        return next((self._copy(r) for r in self._licences.values()
                     if (r["fields"].get("case_no"), r["fields"].get("item_code")) == (case_no, item_code)), None)

    @_interferable
    def by_holder(self, holder_code):
        return [self._copy(r) for r in self._licences.values() if r["fields"].get("holder_code") == holder_code]

    @_interferable
    def by_case(self, case_no):
        return [self._copy(r) for r in self._licences.values() if r["fields"].get("case_no") == case_no]

    @_interferable
    def insert(self, fields, events=()):
        fields = copy.deepcopy(fields)
        if "status" in fields:
            fields["status"] = domain.LicenseStatus(fields["status"])
        if fields["license_id"] in self._licences or any(
                (r["fields"].get("case_no"), r["fields"].get("item_code")) == (fields.get("case_no"),
                                                                             fields.get("item_code"))
                for r in self._licences.values()):
            return False
        entries = outbox_entries(events)
        self._licences[fields["license_id"]] = {"fields": fields, "outbox": list(entries)}
        self.publish(fields["license_id"], entries)
        return True

    @_interferable
    def change_status(self, license_id, expected, status, changes=None, events=()):
        if {"status", "license_id"} & set(changes or {}):
            raise ValueError("status and license_id are not changed this way")
        record = self._licences.get(license_id)
        if record is None or record["fields"].get("status") != domain.LicenseStatus(expected):
            return False
        entries = outbox_entries(events)
        record["fields"].update(copy.deepcopy(changes or {}), status=domain.LicenseStatus(status))
        record["outbox"].extend(entries)
        self.publish(license_id, entries)
        return True

    @_interferable
    def serial_for(self, key, reservation):
        if reservation not in self._reserved:
            self._counters[key] = self._counters.get(key, 0) + 1
            self._reserved[reservation] = self._counters[key]
        return self._reserved[reservation]

    # --- signing keys -----------------------------------------------------------------------

    @_interferable
    def active_key(self, region_code):
        return next((k for k in self._keys.values() if k.region_code == region_code and k.active), None)

    @_interferable
    def key(self, key_id):
        return self._keys.get(key_id)

    @_interferable
    def keys(self, region_code):
        return sorted((k for k in self._keys.values() if k.region_code == region_code), key=lambda k: k.key_id)

    @_interferable
    def add_key(self, key):
        self._keys.setdefault(key.key_id, key)
        return self._keys[key.key_id]

    @_interferable
    def deactivate_keys_before(self, region_code, created_at):
        for key_id, k in self._keys.items():
            if k.region_code == region_code and k.active and k.created_at < created_at:
                self._keys[key_id] = dataclasses.replace(k, active=False)

    # --- the outbox (as services.common.mongo.OutboxStore and flush_outbox do it) -------------

    def publish(self, aggregate_id, entries):
        entries = list(entries or ())
        if entries and self.bus is not None:
            self._flush(aggregate_id, entries)

    def sweep(self, limit=100):
        if self.bus is None:
            return 0
        now = self.clock()
        grace = settings().sweep_grace_seconds
        due_ids = [i for i, r in self._licences.items() if any(_due(e, now, grace) for e in r["outbox"])][:limit]
        return sum(self._flush(i, [e for e in self._licences[i]["outbox"] if _due(e, now, grace)])
                   for i in due_ids)

    def pending(self, aggregate_id):
        record = self._licences.get(aggregate_id)
        return copy.deepcopy(record["outbox"]) if record is not None else []

    def _flush(self, aggregate_id, entries):
        record = self._licences[aggregate_id]
        publish = getattr(self.bus, "publish_entry", None) or (lambda e: self.bus.publish_raw(
            e["event_type"], e["payload"], {"case_no": e.get("case_no", "")}))
        sent = []
        for entry in entries:
            try:
                publish(entry)
            except Unroutable as exc:
                log.error("event %s (%s) of %s is unroutable: kept pending", entry["event_type"], entry["id"],
                          aggregate_id)
                self._note_failure(record, entry, exc)
                continue
            except Exception as exc:  # broker away: the sweep publishes it later
                log.warning("event %s of %s left for the outbox sweep: %s", entry["event_type"], aggregate_id, exc)
                self._note_failure(record, entry, exc)
                break
            sent.append(entry["id"])
        record["outbox"] = [e for e in record["outbox"] if e["id"] not in sent]
        return len(sent)

    def _note_failure(self, record, entry, error):
        for kept in record["outbox"]:
            if kept["id"] == entry["id"]:
                kept["attempts"] = int(kept.get("attempts", 0)) + 1
                kept["next_at"] = self.clock() + min(2 ** kept["attempts"], 300)
                kept["last_error"] = str(error)[:200]


def _due(entry, now, grace):
    if "next_at" in entry:
        return entry["next_at"] <= now
    return entry.get("at", 0) < now - grace


class MemoryBlobs:
    """Object storage in memory (put/get as services.common.blobs.Blobs)."""

    def __init__(self):
        self.objects = {}

    def ensure_bucket(self, bucket):
        pass

    def put(self, bucket, key, data, content_type="application/octet-stream", metadata=None):
        self.objects[(bucket, key)] = data

    def get(self, bucket, key):
        return self.objects[(bucket, key)]
