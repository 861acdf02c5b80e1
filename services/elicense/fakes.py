"""In-memory twins of elicense's adapters, for tests. MemoryLicenseStore keeps the port of
services.elicense.store.LicenseStore with the same rules (compare-and-set on the status, one
licence per case item, reserved serial numbers, the outbox of licences and of signing keys published
after each committed change and swept when a publish failed, a key directory that never gives a
known key id another key) and is run against the same contract tests
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
        self._key_outboxes = {}  # key_id -> {"outbox": [...]}: its pending signing_key_published
        self._directory = {}  # key_id -> domain.PublishedKey: the keys other sites published
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
    def every_key(self):
        return sorted(self._keys.values(), key=lambda k: k.key_id)

    @_interferable
    def add_key(self, key, events=()):
        if key.key_id in self._keys:
            return self._keys[key.key_id]
        entries = outbox_entries(events)
        self._keys[key.key_id] = key
        self._key_outboxes[key.key_id] = {"outbox": list(entries)}
        self.publish(key.key_id, entries)
        return self._keys[key.key_id]

    @_interferable
    def retire_key(self, key_id, retired_at, events=()):
        k = self._keys.get(key_id)
        if k is None or not k.active or k.created_at > retired_at:
            return False
        entries = outbox_entries(events)
        self._keys[key_id] = dataclasses.replace(k, active=False, retired_at=retired_at)
        self._key_outboxes[key_id]["outbox"].extend(entries)
        self.publish(key_id, entries)
        return True

    @_interferable
    def announce_key(self, key_id, events):
        box = self._key_outboxes.get(key_id)
        if box is None:
            return 0
        pending = {e["id"] for e in box["outbox"]}
        added = [e for e in outbox_entries(events) if e["id"] not in pending]
        box["outbox"].extend(added)
        self.publish(key_id, added)
        return len(added)

    # --- the key directory --------------------------------------------------------------------

    @_interferable
    def directory_key(self, key_id):
        return self._directory.get(key_id)

    @_interferable
    def directory_keys(self, issuer_region):
        return sorted((k for k in self._directory.values() if k.issuer_region == issuer_region),
                      key=lambda k: k.key_id)

    @_interferable
    def add_directory_key(self, key, received_at=0.0):
        if key.key_id in self._directory:
            return False
        self._directory[key.key_id] = key
        return True

    @_interferable
    def update_directory_key(self, key):
        known = self._directory.get(key.key_id)
        if known is None or (known.public_key, known.site_region) != (key.public_key, key.site_region):
            return False
        self._directory[key.key_id] = dataclasses.replace(known, valid_from=key.valid_from,
                                                          valid_until=key.valid_until)
        return True

    # --- the outbox (services.common.memory.MemoryOutbox) --------------------------------------

    def _aggregates(self):
        return self._licences

    def _outbox_of(self, aggregate_id):
        """A licence's outbox, or a signing key's (the ids never meet: a licence's starts 1.2.156)."""
        record = self._licences.get(aggregate_id) or self._key_outboxes.get(aggregate_id)
        return record["outbox"] if record is not None else None

    def _every_outbox(self):
        return [(aggregate_id, record["outbox"]) for records in (self._licences, self._key_outboxes)
                for aggregate_id, record in list(records.items())]

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
