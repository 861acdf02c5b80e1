"""elicense's handlers against the real MongoDB-wire and S3 servers: one licence per approved item
however often the opinion arrives, its signed document in S3, verification that catches tampering."""
import json
import time

import pytest

from services.common.errors import NotFound

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def elicense(test_env):
    from services.elicense.wiring import build_elicense
    return build_elicense()


def approved(case_no, decision="DECISION_APPROVE"):
    from onething.joint_review.v1 import events_pb2
    from services.common.events import from_payload
    return from_payload(events_pb2.OpinionRecorded, {
        "case_no": case_no, "item_code": "110000000001", "item_name": "出生医学证明签发", "department_code": "wsjk",
        "region_code": "440100", "decision": decision, "result_type": "RESULT_TYPE_LICENSE",
        "license_type_code": "CSYXZM", "license_type_name": "出生医学证明",
        "applicant": {"id_number": "11010519491231002X", "name": "李华"}})


def test_one_licence_per_item_stored_signed_and_verifiable(elicense, probe):
    case_no = f"E{int(time.time() * 1000)}"
    first = elicense.on_opinion(approved(case_no))
    again = elicense.on_opinion(approved(case_no))
    assert first["license_id"] == again["license_id"]
    assert len(elicense.list(case_no=case_no)) == 1
    doc = json.loads(elicense.blobs.get("results", first["document_key"]))
    assert doc["license_id"] == first["license_id"] and doc["signature"] == first["signature"]
    valid, reason, _ = elicense.verify(first["license_id"])
    assert valid, reason
    time.sleep(0.5)
    assert [k for k, _ in probe.for_case(case_no)] == ["license_issued"]


def test_rejected_opinion_issues_nothing(elicense):
    case_no = f"E{int(time.time() * 1000)}R"
    assert elicense.on_opinion(approved(case_no, "DECISION_REJECT")) is None
    assert elicense.list(case_no=case_no) == []


def test_tampered_licence_fails_verification(elicense):
    from services.elicense.store import LicenseDoc
    case_no = f"E{int(time.time() * 1000)}T"
    lic = elicense.on_opinion(approved(case_no))
    LicenseDoc.objects(license_id=lic["license_id"]).update_one(set__fields__holder_name="王五")
    valid, reason, _ = elicense.verify(lic["license_id"])
    assert not valid and "signature" in reason
    with pytest.raises(NotFound):
        elicense.get("1.2.156.3005.2.X.Y.1.001.0")
