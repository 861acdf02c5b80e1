"""In-memory stand-ins for intake's adapters, for unit tests: THE fake of the store (run against the
same contract tests as IntakeStore: tests/test_intake_store_contract.py), object storage, the
catalog, elicense, and a clock that moves only when told."""
import copy
import datetime

from services.common.errors import NotFound, Unavailable
from services.common.memory import MemoryOutbox


class FakeIntakeStore(MemoryOutbox):
    """IntakeStore in memory, with the same rules: a case is inserted once per number and per
    idempotency key; a save is a compare-and-set on the case's version; the events a save carries
    wait in the case's outbox, are published on `bus` after the save and removed once the bus took
    them; a failed publish stays pending with its next try pushed back, for `sweep()`. Cases go in
    and come out as copies, as from a database."""

    def __init__(self, bus=None):
        super().__init__(bus)
        self._cases, self._outboxes, self._uploads, self._counters = {}, {}, {}, {}
        self.recent_copies = {}  # case_no -> the case as this store last read to change it, and saved since

    # uploads and numbers -------------------------------------------------------------------------
    def save_upload(self, upload):
        with self._lock:
            if upload.upload_id in self._uploads:
                raise KeyError(f"upload {upload.upload_id} exists")
            self._uploads[upload.upload_id] = upload

    def upload(self, upload_id):
        return self._uploads.get(upload_id)

    def uploads(self, upload_ids):
        return {i: self._uploads[i] for i in upload_ids if i in self._uploads}

    def next_sequence(self, key):
        with self._lock:
            self._counters[key] = self._counters.get(key, 0) + 1
            return self._counters[key]

    # cases ---------------------------------------------------------------------------------------
    def insert_case(self, case, events=()):
        events = [dict(e) for e in events]
        with self._lock:
            if case.case_no in self._cases or (case.idempotency_key and any(
                    c.idempotency_key == case.idempotency_key for c in self._cases.values())):
                return False
            self._cases[case.case_no] = copy.deepcopy(case)
            self._cases[case.case_no].version = 1
            self._outboxes[case.case_no] = list(events)
        self.publish(case.case_no, events)
        return True

    def case(self, case_no):
        with self._lock:
            return copy.deepcopy(self._cases.get(case_no))

    def case_to_change(self, case_no):
        with self._lock:
            found = self._cases.get(case_no)
            if found is None:
                self.recent_copies.pop(case_no, None)
                return None
            self.recent_copies[case_no] = copy.deepcopy(found)
            return copy.deepcopy(found)

    def recent(self, case_no):
        """As the real store: the case as this store last read to change it, with the saves made from
        that copy since (a copy), or None."""
        with self._lock:
            return copy.deepcopy(self.recent_copies.get(case_no))

    def by_idempotency_key(self, key):
        if not key:
            return None
        with self._lock:
            return next((copy.deepcopy(c) for c in self._cases.values() if c.idempotency_key == key), None)

    def save(self, case, expected_version, events=()):
        events = [dict(e) for e in events]
        with self._lock:
            stored = self._cases.get(case.case_no)
            if stored is None or stored.version != int(expected_version or 0):
                self.recent_copies.pop(case.case_no, None)
                return False
            saved = copy.deepcopy(case)
            # what its submission fixed stays as it was
            for name in ("package_code", "package_version", "region_code", "applicant", "form", "delivery",
                         "situations", "parties", "submitted_at", "idempotency_key", "request_hash"):
                setattr(saved, name, copy.deepcopy(getattr(stored, name)))
            saved.version = stored.version + 1
            self._cases[case.case_no] = saved
            kept = self.recent_copies.get(case.case_no)
            if kept is not None and kept.version == int(expected_version or 0):
                self.recent_copies[case.case_no] = copy.deepcopy(saved)  # the copy, with what the save wrote
            else:
                self.recent_copies.pop(case.case_no, None)
            self._outboxes[case.case_no].extend(events)
        self.publish(case.case_no, events)
        return True

    def cases_of(self, applicant_id, limit, after=None, region_prefix=None):
        with self._lock:
            found = [c for c in self._cases.values() if (c.applicant or {}).get("id_number") == applicant_id]
        if region_prefix is not None:
            found = [c for c in found if c.region_code.startswith(region_prefix) and c.region_code.isdigit()]
        if after is not None:
            at, case_no = after
            found = [c for c in found if c.submitted_at < at or (c.submitted_at == at and c.case_no < case_no)]
        found.sort(key=lambda c: (c.submitted_at, c.case_no), reverse=True)
        return [copy.deepcopy(c) for c in found[:limit]]

    # the outbox (services.common.memory.MemoryOutbox) ------------------------------------------
    def _outbox_of(self, case_no):
        return self._outboxes.get(case_no)

    def _every_outbox(self):
        return list(self._outboxes.items())


class MemoryBlobs:
    """Object storage in memory (the methods of services.intake.material_files.MaterialBlobs that
    intake uses)."""

    def __init__(self):
        self.objects = {}  # (bucket, key) -> (bytes, content type, metadata)
        self.puts, self.ranges = [], []

    def ensure_bucket(self, bucket):
        pass

    def put(self, bucket, key, data, content_type="application/octet-stream", metadata=None):
        self.objects[(bucket, key)] = (bytes(data), content_type, dict(metadata or {}))
        self.puts.append((bucket, key))

    def put_stream(self, bucket, key, chunks, content_type="application/octet-stream", metadata=None, length=None):
        """As Blobs.put_stream: stored only when `chunks` ends without an exception (and, with a
        `length`, has that many bytes)."""
        data = b"".join(bytes(c) for c in chunks)
        if length is not None and len(data) != length:
            raise OSError(f"the stream carried {len(data)} bytes, not the {length} declared")
        self.put(bucket, key, data, content_type, metadata)

    def get(self, bucket, key):
        if (bucket, key) not in self.objects:
            raise KeyError(f"no object {bucket}/{key}")
        return self.objects[(bucket, key)][0]

    def read_range(self, bucket, key, offset, length):
        """As MaterialBlobs.read_range: up to `length` bytes from `offset` (None: no such object);
        `ranges` remembers each read."""
        self.ranges.append((bucket, key, offset, length))
        if (bucket, key) not in self.objects:
            return None
        return self.objects[(bucket, key)][0][offset:offset + length]

    def stat(self, bucket, key):
        found = self.objects.get((bucket, key))
        return None if found is None else {"size": len(found[0]), "content_type": found[1], "metadata": found[2]}

    def delete(self, bucket, key):
        self.objects.pop((bucket, key), None)

    def list(self, bucket, prefix):
        return sorted(k for b, k in self.objects if b == bucket and k.startswith(prefix))


class FakeCatalog:
    """The catalog's GetPackage for one package (a copy each time); `calls` remembers the look-ups."""

    def __init__(self, package):
        self._original = copy.deepcopy(package)
        self.reset()

    def reset(self):
        self.package, self.calls = copy.deepcopy(self._original), []

    def get_package(self, code, region_code, situations=None):
        self.calls.append((code, region_code, dict(situations or {})))
        if code != self.package["code"]:
            raise NotFound(f"there is no package {code!r} in region {region_code}")
        return copy.deepcopy(self.package)


class FakeLicences:
    """elicense's licences of a holder: `held[holder] = [licence dicts]`; `down` makes it unreachable."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.held, self.down = {}, False

    def licences_of(self, holder):
        if self.down:
            raise Unavailable("elicense cannot be reached (UNAVAILABLE)")
        return copy.deepcopy(list(self.held.get(holder, [])))


class Clock:
    """Now, as the test says: starts at `start` (an aware datetime), moves by `advance()`."""

    def __init__(self, start=datetime.datetime(2026, 11, 26, 2, 0, tzinfo=datetime.UTC)):
        self.now = start

    def __call__(self):
        return self.now

    def advance(self, **delta):
        self.now += datetime.timedelta(**delta)
        return self.now
