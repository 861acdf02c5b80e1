"""elicense and a withdrawn case (unit: an in-memory licence store and a RecordingBus): no licence
of a withdrawn case stays valid, each revoked once with its license_revoked."""
from onething.joint_review.v1 import events_pb2 as review_events
from onething.joint_review.v1 import joint_review_pb2 as review_pb
from services.elicense import codec, domain

CASE = "440100XSECS202611260001"
HOLDER = "11010519491231002X"


def add(store, license_id, case_no=CASE, status=domain.VALID):
    """A licence kept already (only the fields these tests need), without events."""
    assert store.insert({"license_id": license_id, "case_no": case_no, "item_code": f"item-{license_id}",
                         "status": status, "holder_code": HOLDER})


def withdrawn(license_ids=(), after=True, case_no=CASE):
    return codec.withdrawal_of(review_events.SessionWithdrawn(
        case_no=case_no, license_ids=list(license_ids), after_conclusion=after,
        overridden=review_pb.SESSION_STATUS_APPROVED if after else review_pb.SESSION_STATUS_UNSPECIFIED))


def test_every_licence_of_a_withdrawn_case_is_revoked_once(elicense, store, bus):
    add(store, "L1")
    add(store, "L2")
    add(store, "L9", case_no="440100XSECS202611260002")  # another case's
    assert sorted(elicense.on_session_withdrawn(withdrawn(["L1"]))) == ["L1", "L2"]  # L2 found by the case
    assert {i: store.get(i)["status"] for i in ("L1", "L2", "L9")} == {
        "L1": domain.REVOKED, "L2": domain.REVOKED, "L9": domain.VALID}
    assert bus.types() == ["license_revoked", "license_revoked"]
    payload = bus.published[0][1]
    assert payload["case_no"] == CASE and "withdrawn" in payload["reason"] and "after its conclusion" in payload["reason"]
    assert payload["revoked_by"] == "joint_review:withdrawal"
    assert elicense.on_session_withdrawn(withdrawn(["L1", "L2"])) == []  # redelivered
    assert len(bus.published) == 2


def test_a_licence_revoked_already_is_left_as_it_is(elicense, store, bus):
    add(store, "L1", status=domain.REVOKED)
    assert elicense.on_session_withdrawn(withdrawn(["L1"], after=False)) == []
    assert bus.published == []


def test_a_licence_revoked_meanwhile_is_skipped(elicense, store, bus):
    add(store, "L1")
    # a concurrent redelivery revokes it between our look and our write
    store.interfere("change_status", lambda: store.change_status(
        "L1", domain.VALID, domain.REVOKED, {"revoked_at": "2026-11-26T10:00:00+00:00", "revoke_reason": "x"}))
    assert elicense.on_session_withdrawn(withdrawn(["L1"])) == []
    assert bus.published == []
    assert store.get("L1")["revoke_reason"] == "x"  # the other writer's revocation stands


def test_unknown_licences_and_a_case_without_any_change_nothing(elicense, store, bus):
    assert elicense.on_session_withdrawn(withdrawn(["1.2.156.3005.2.X.Y.1.1.Z"])) == []
    assert elicense.on_session_withdrawn(withdrawn(case_no="")) == []
    assert bus.published == []
