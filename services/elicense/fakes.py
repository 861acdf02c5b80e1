"""In-memory twins of elicense's adapters, for tests. MemoryLicenseStore keeps the port of
services.elicense.store.LicenseStore with the same rules (compare-and-set on the status, one
licence per case item, reserved serial numbers, the outbox published after each committed change
and swept when a publish failed) and is run against the same contract tests
(tests/test_elicense_store_contract.py)."""
import copy
import dataclasses
import functools
import time

from services.common.memory import MemoryOutbox
from services.elicense import domain
from services.elicense.store import outbox_entries


def _interferable(method):
    """Lets a test run something just before the next call of `method` (MemoryLicenseStore.interfere)."""
    @functools.wraps(method)
    def run(self, *args, **kwargs):
        action = self._interference.pop(method.__name__, None)
        if action is not None:
            action()
        return method(self, *args, **kwargs)
    return run


class MemoryLicenseStore(MemoryOutbox):
    def __init__(self, bus=None, clock=None):
        """`clock()`: now in seconds (time.time), for when outbox entries are due."""
        super().__init__(bus)
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

    # --- the outbox (services.common.memory.MemoryOutbox) --------------------------------------

    def _aggregates(self):
        return self._licences

    def outbox_now(self):
        return self.clock()


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
