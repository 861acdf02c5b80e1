"""What delivery writes to its audit log (the in-memory fake of the port): pickups, dispatches and
re-dispatches with their clerk (from the token, or named in the request and marked
unauthenticated), staff reads; never the pickup code, the address or the phone."""
import json

import pytest
from test_delivery_handlers import ADDRESS, CASE, CODE, bus, concluded, delivery, licenses, store  # noqa: F401

from services.common import audit
from services.common.auth import Actor
from services.common.errors import InvalidArgument, PermissionDenied
from services.common.privacy import contains_personal_data
from services.delivery import domain

CLERK = Actor("clerk-7", "clerk", "", "440100")


def test_a_pickup_is_recorded_without_its_code_and_a_wrong_code_as_refused(delivery):
    delivery.on_case_concluded(concluded(domain.WINDOW), licenses)
    with pytest.raises(PermissionDenied):
        delivery.confirm_pickup(CASE, "999999", "clerk-7", actor=CLERK)
    delivery.confirm_pickup(CASE, CODE, "clerk-7", actor=CLERK)
    assert [(r["action"], r["target"], r["outcome"]) for r in delivery.audit.records] == [
        ("pickup.confirm", CASE, "PERMISSION_DENIED"), ("pickup.confirm", CASE, "ok")]
    assert CODE not in json.dumps(delivery.audit.records) and "999999" not in json.dumps(delivery.audit.records)
    assert delivery.audit.records[1]["actor"]["auth"] == "token"


def test_dispatch_and_redispatch_are_recorded_without_the_address(delivery):
    delivery.on_case_concluded(concluded(domain.MAIL, ADDRESS), licenses)
    clerk = audit.unauthenticated("clerk-8", "clerk")  # named in the request, no token yet
    delivery.record_dispatch(CASE, "EMS", "EA473124829CN", "clerk-8", actor=clerk)
    delivery.record_undeliverable(CASE, "EA473124829CN", "查无此人")
    delivery.redispatch(CASE, dict(ADDRESS, line="天河路200号2栋202"), "SF", "SF1234567890123", "clerk-8", actor=clerk)
    with pytest.raises(InvalidArgument):
        delivery.redispatch(CASE, dict(ADDRESS, phone="12"), "SF", "SF1234567890123", "clerk-8", actor=clerk)
    assert [(r["action"], r["outcome"], r["details"]) for r in delivery.audit.records] == [
        ("dispatch.record", "ok", {"carrier": "EMS"}),
        ("dispatch.redispatch", "ok", {"carrier": "SF", "attempt": 2}),
        ("dispatch.redispatch", "INVALID_ARGUMENT", {"carrier": "SF"})]
    assert delivery.audit.records[0]["actor"] == {"sub": "clerk-8", "role": "clerk", "department": "", "region": "",
                                                  "on_behalf_of": "", "auth": "unauthenticated"}
    text = json.dumps(delivery.audit.records, ensure_ascii=False)
    assert "天河路" not in text and not contains_personal_data(text)


def test_staff_reads_are_recorded(delivery):
    delivery.on_case_concluded(concluded(domain.ELECTRONIC), licenses)
    assert delivery.get(CASE, actor=CLERK)["applicant_id"] == "1101**********002X"  # staff: masked
    assert delivery.get(CASE, actor=Actor("11010519491231002X", "applicant"))["applicant_id"] == "11010519491231002X"
    delivery.get(CASE)
    assert [(r["action"], r["target"]) for r in delivery.audit.records] == [("delivery.read", CASE)]
