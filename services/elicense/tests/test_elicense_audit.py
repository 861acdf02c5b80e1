"""What elicense writes to its audit log (the in-memory fake of the port): revocations by an officer
and by a withdrawal, key rotations, staff reads; refusals with their status."""
import pytest
from test_elicense_withdrawal import CASE, add, withdrawn

from services.common import audit
from services.common.auth import Actor
from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.privacy import contains_personal_data

OFFICER = Actor("officer-3", "officer", "wsjk", "440100")
OPERATOR = Actor("operator-1", "operator", "", "440100")


def test_a_revocation_is_recorded_with_its_officer_and_a_second_one_as_refused(elicense, store):
    add(store, "L1")
    elicense.revoke("L1", "签发有误", OFFICER.label(), actor=OFFICER)
    with pytest.raises(FailedPrecondition):
        elicense.revoke("L1", "again", OFFICER.label(), actor=OFFICER)
    first, second = elicense.audit.records
    assert (first["action"], first["target"], first["outcome"]) == ("licence.revoke", "L1", "ok")
    assert first["actor"]["sub"] == "officer-3" and first["details"] == {"case_no": CASE}
    assert second["outcome"] == "FAILED_PRECONDITION"
    assert "签发有误" not in str(elicense.audit.records)


def test_revocations_of_a_withdrawal_are_recorded_as_the_service(elicense, store):
    add(store, "L1")
    add(store, "L2")
    elicense.on_session_withdrawn(withdrawn(["L1"]))
    assert [(r["target"], r["actor"]["sub"], r["actor"]["auth"]) for r in elicense.audit.records] == [
        ("L1", "joint_review:withdrawal", "service"), ("L2", "joint_review:withdrawal", "service")]


def test_a_key_rotation_is_recorded(elicense):
    key = elicense.rotate_key("440100", actor=OPERATOR)
    with pytest.raises(InvalidArgument):
        elicense.rotate_key("44", actor=OPERATOR)
    ok, refused = elicense.audit.records
    assert (ok["action"], ok["target"], ok["details"]["key_id"]) == ("signing_key.rotate", "440100", key.key_id)
    assert ok["actor"]["role"] == "operator" and refused["outcome"] == "INVALID_ARGUMENT"


def test_staff_reads_are_recorded_holders_are_masked(elicense, store):
    add(store, "L1")
    elicense.get("L1", actor=OFFICER)
    elicense.get("L1")  # internal
    elicense.get("L1", actor=Actor("11010519491231002X", "applicant"))
    elicense.list(holder_code="11010519491231002X", actor=OFFICER)
    elicense.list(case_no=CASE, actor=audit.unauthenticated("clerk-2", "clerk"))
    assert [(r["action"], r["target"]) for r in elicense.audit.records] == [
        ("licence.read", "L1"), ("licences.list", "1101**********002X"), ("licences.list", CASE)]
    assert elicense.audit.records[1]["details"] == {"license_ids": ["L1"]}
    assert not contains_personal_data(str(elicense.audit.records))
