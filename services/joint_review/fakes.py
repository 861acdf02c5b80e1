"""The one in-memory fake of joint_review's store (store.SessionStore), for unit tests. It keeps the
same contract, checked by the same tests as the real store (tests/test_joint_review_store_contract.py):
sessions saved under a version check in their stored form (domain.stored_session), the events of a
committed change published on its bus and removed once published, an entry the bus refused left
pending with its attempt counted until `sweep` publishes it."""
import copy
import threading
import time

from services.common.bus import Unroutable
from services.joint_review import domain
from services.joint_review.domain import Conflict, StoredSession


def backoff(attempts):
    """Seconds until the next try of an entry that failed `attempts` times (as the real outbox)."""
    return min(2 ** attempts, 300)


class FakeSessionStore:
    def __init__(self, bus=None):
        self.bus = bus
        # case_no -> {"version", "body" (the stored form), "case", "outbox"}
        self.docs = {}
        self.saves = 0
        self._lock = threading.RLock()

    # the port ----------------------------------------------------------------------------------
    def load(self, case_no):
        with self._lock:
            doc = self.docs.get(case_no)
            if doc is None:
                return domain.NO_SESSION
            return StoredSession(domain.session_from_stored(copy.deepcopy(doc["body"])), copy.deepcopy(doc["case"]),
                                 doc["version"])

    def create(self, session, case, events=()):
        events = copy.deepcopy(list(events))
        with self._lock:
            if session["case_no"] in self.docs:
                return False
            self.docs[session["case_no"]] = {"version": 0, "body": copy.deepcopy(domain.stored_session(session)),
                                             "case": copy.deepcopy(case), "outbox": list(events)}
        self.publish(session["case_no"], events)
        return True

    def save(self, session, expected_version, events=(), case=None):
        events = copy.deepcopy(list(events))
        with self._lock:
            self.saves += 1
            doc = self.docs.get(session["case_no"])
            if doc is None or doc["version"] != expected_version:
                raise Conflict(session["case_no"])
            doc["body"], doc["version"] = copy.deepcopy(domain.stored_session(session)), expected_version + 1
            if case is not None:
                doc["case"] = copy.deepcopy(case)
            doc["outbox"].extend(events)
        self.publish(session["case_no"], events)
        return expected_version + 1

    def open_case_numbers(self):
        stored_open = domain.SESSION_STATUS_STORED[domain.SessionStatus.OPEN]
        with self._lock:
            return [no for no, d in self.docs.items() if d["body"]["status"] == stored_open]

    def tasks(self, department_code, region_code, state=None):
        with self._lock:
            bodies = [(no, copy.deepcopy(d["body"])) for no, d in self.docs.items()]
        found = []
        for case_no, body in bodies:
            for task in domain.session_from_stored(body)["tasks"]:
                if task["department_code"] == department_code and task["region_code"] == region_code and (
                        not state or task["state"] == state):
                    found.append(dict(task, case_no=case_no))
        return found

    # the outbox (as services.common.mongo.OutboxStore) -----------------------------------------
    def publish(self, aggregate_id, entries):
        """Publish the entries a committed write added; those published leave the outbox. Never
        raises: an entry the bus refused stays pending, its next try pushed back."""
        if self.bus is None or not entries:
            return 0
        sent = []
        for entry in entries:
            try:
                self.bus.publish_entry(entry)
            except Unroutable:
                self._note_failure(aggregate_id, entry)
                continue
            except Exception:
                self._note_failure(aggregate_id, entry)
                break
            sent.append(entry["id"])
        with self._lock:
            doc = self.docs.get(aggregate_id)
            if doc is not None:
                doc["outbox"] = [e for e in doc["outbox"] if e["id"] not in sent]
        return len(sent)

    def sweep(self, limit=100):
        """Publish every entry whose next try is due; the number published."""
        if self.bus is None:
            return 0
        now = time.time()
        with self._lock:
            due = [(no, [copy.deepcopy(e) for e in d["outbox"] if e.get("next_at", 0) <= now])
                   for no, d in self.docs.items()]
        return sum(self.publish(no, entries) for no, entries in [d for d in due if d[1]][:limit])

    def pending(self, aggregate_id):
        with self._lock:
            return copy.deepcopy((self.docs.get(aggregate_id) or {}).get("outbox") or [])

    def _note_failure(self, aggregate_id, entry):
        with self._lock:
            for stored in (self.docs.get(aggregate_id) or {}).get("outbox", []):
                if stored["id"] == entry["id"]:
                    stored["attempts"] = int(stored.get("attempts", 0)) + 1
                    stored["next_at"] = time.time() + backoff(stored["attempts"])
