"""The one in-memory fake of joint_review's store (store.SessionStore), for unit tests. It keeps the
same contract, checked by the same tests as the real store (tests/test_joint_review_store_contract.py):
sessions saved under a version check in their stored form (domain.stored_session), the events of a
committed change published on its bus and removed once published, an entry the bus refused left
pending with its attempt counted until `sweep` publishes it (services.common.memory.MemoryOutbox)."""
import copy

from services.common.memory import MemoryOutbox
from services.common.recent import Recent
from services.joint_review import domain
from services.joint_review.domain import Conflict, StoredSession


class FakeSessionStore(MemoryOutbox):
    def __init__(self, bus=None):
        super().__init__(bus)
        # case_no -> {"version", "body" (the stored form), "case", "outbox"}
        self.docs = {}
        self.saves = 0
        self.recent_copies = Recent()

    # the port ----------------------------------------------------------------------------------
    def load(self, case_no):
        with self._lock:
            doc = self.docs.get(case_no)
            if doc is None:
                return domain.NO_SESSION
            self.recent_copies.put(case_no, doc["version"], doc["body"], doc["case"])
            return StoredSession(domain.session_from_stored(copy.deepcopy(doc["body"])), copy.deepcopy(doc["case"]),
                                 doc["version"])

    def recent(self, case_no):
        """As the real store: the session as this store last saved or read it (a copy), or None."""
        found = self.recent_copies.get(case_no)
        return None if found is None else domain.RecentSession(domain.session_from_stored(found[0]), found[1],
                                                                found[2])

    def create(self, session, case, events=()):
        events = copy.deepcopy(list(events))
        with self._lock:
            if session["case_no"] in self.docs:
                return False
            self.docs[session["case_no"]] = {"version": 0, "body": copy.deepcopy(domain.stored_session(session)),
                                             "case": copy.deepcopy(case), "outbox": list(events)}
            self.recent_copies.put(session["case_no"], 0, self.docs[session["case_no"]]["body"], case)
        self.publish(session["case_no"], events)
        return True

    def save(self, session, expected_version, events=(), case=None):
        events = copy.deepcopy(list(events))
        with self._lock:
            self.saves += 1
            doc = self.docs.get(session["case_no"])
            if doc is None or doc["version"] != expected_version:
                self.recent_copies.drop(session["case_no"])
                raise Conflict(session["case_no"])
            doc["body"], doc["version"] = copy.deepcopy(domain.stored_session(session)), expected_version + 1
            if case is not None:
                doc["case"] = copy.deepcopy(case)
            doc["outbox"].extend(events)
            self.recent_copies.saved(session["case_no"], expected_version + 1, doc["body"], case)
        self.publish(session["case_no"], events)
        return expected_version + 1

    def open_case_numbers(self, clocks_due_by=None):
        stored_open = domain.SESSION_STATUS_STORED[domain.SessionStatus.OPEN]
        with self._lock:
            bodies = [(no, copy.deepcopy(d["body"])) for no, d in self.docs.items() if d["body"]["status"] == stored_open]
        if clocks_due_by is None:
            return [no for no, _ in bodies]
        due = []
        for no, body in bodies:
            day = domain.next_clock_check(domain.session_from_stored(body))
            if day and day <= clocks_due_by.isoformat():
                due.append(no)
        return due

    def tasks(self, department_code, region_code, state=None, after="", sessions=None):
        with self._lock:
            bodies = sorted((no, copy.deepcopy(d["body"])) for no, d in self.docs.items() if no > (after or ""))
        found, held = [], 0
        for case_no, body in bodies:
            mine = [dict(task, case_no=case_no) for task in domain.session_from_stored(body)["tasks"]
                    if domain.listed(task, department_code, region_code, state)]
            if mine:
                if sessions is not None and held == sessions:
                    break
                found.extend(mine)
                held += 1
        return found
