"""elicense and a withdrawn case (unit: an in-memory licence store and a RecordingBus): no licence
of a withdrawn case stays valid, each revoked once with its license_revoked."""
import copy
import types

import pytest

from onething.joint_review.v1 import events_pb2 as review_events
from services.elicense import domain

CASE = "440100XSECS202611260001"


class FakeLicenseStore:
    def __init__(self):
        self.docs = {}

    def add(self, license_id, case_no=CASE, status=domain.VALID):
        self.docs[license_id] = {"fields": {"license_id": license_id, "case_no": case_no, "status": status,
                                            "holder_code": "11010519491231002X"}, "outbox": []}

    def get(self, license_id):
        doc = self.docs.get(license_id)
        return types.SimpleNamespace(license_id=license_id, fields=copy.deepcopy(doc["fields"])) if doc else None

    def by_case(self, case_no):
        return [self.get(i) for i, d in self.docs.items() if d["fields"]["case_no"] == case_no]

    def revoke(self, license_id, at, reason, outbox):
        doc = self.docs.get(license_id)
        if doc is None or doc["fields"]["status"] != domain.VALID:
            return False
        doc["fields"].update(status=domain.REVOKED, revoked_at=at, revoke_reason=reason)
        doc["outbox"].extend(outbox)
        return True


@pytest.fixture
def store():
    return FakeLicenseStore()




def withdrawn(license_ids=(), after=True, case_no=CASE):
    return review_events.SessionWithdrawn(case_no=case_no, license_ids=list(license_ids), after_conclusion=after,
                                          overridden="SESSION_STATUS_APPROVED" if after else "")


def test_every_licence_of_a_withdrawn_case_is_revoked_once(elicense, store, bus):
    store.add("L1")
    store.add("L2")
    store.add("L9", case_no="440100XSECS202611260002")  # another case's
    assert sorted(elicense.on_session_withdrawn(withdrawn(["L1"]))) == ["L1", "L2"]  # L2 found by the case
    assert {i: d["fields"]["status"] for i, d in store.docs.items()} == {
        "L1": domain.REVOKED, "L2": domain.REVOKED, "L9": domain.VALID}
    assert bus.types() == ["license_revoked", "license_revoked"]
    payload = bus.published[0][1]
    assert payload["case_no"] == CASE and "withdrawn" in payload["reason"] and "after its conclusion" in payload["reason"]
    assert payload["revoked_by"] == "joint_review:withdrawal"
    assert elicense.on_session_withdrawn(withdrawn(["L1", "L2"])) == []  # redelivered
    assert len(bus.published) == 2


def test_a_licence_revoked_already_is_left_as_it_is(elicense, store, bus):
    store.add("L1", status=domain.REVOKED)
    assert elicense.on_session_withdrawn(withdrawn(["L1"], after=False)) == []
    assert bus.published == []


def test_a_licence_revoked_meanwhile_is_skipped(elicense, store, bus):
    store.add("L1")
    store.revoke = lambda *a: False  # a concurrent redelivery revoked it between our look and our write
    assert elicense.on_session_withdrawn(withdrawn(["L1"])) == []
    assert bus.published == []


def test_unknown_licences_and_a_case_without_any_change_nothing(elicense, store, bus):
    assert elicense.on_session_withdrawn(withdrawn(["1.2.156.3005.2.X.Y.1.1.Z"])) == []
    assert elicense.on_session_withdrawn(withdrawn(case_no="")) == []
    assert bus.published == []
