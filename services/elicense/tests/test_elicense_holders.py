"""elicense issues each licence to its item's holder party, under the implementing body's name, and
a transfer supersedes the previous certificate (unit: an in-memory licence store, blobs and a
RecordingBus; signatures and PDFs are real)."""
import pytest

from onething.joint_review.v1 import events_pb2 as review_events
from services.common import ids
from services.common.errors import FailedPrecondition
from services.common.events import from_payload
from services.elicense import codec, domain
from tools.client import citizen_id

APPLICANT = citizen_id("44010619700303123")
NEWBORN = {"role": "newborn", "name": "张小宝", "id_number": citizen_id("44010620261120001"), "code_type": "111"}
BUYER = {"role": "buyer", "name": "买方甲", "id_number": citizen_id("44010619900101123"), "code_type": "111"}
SELLER = citizen_id("44010619800202123")
ENTERPRISE_CODE = "91350100M000100Y43"


def status(store, license_id):
    return store.get(license_id)["status"]


def opinion(case_no, item="110000000001", type_code="CSYXZM", type_name="出生医学证明", department="wsjk",
            holder=None, issuer="广州市卫生健康委员会", supersedes=None):
    payload = {"case_no": case_no, "item_code": item, "item_name": type_name, "department_code": department,
               "region_code": "440100", "decision": "DECISION_APPROVE", "result_type": "RESULT_TYPE_LICENSE",
               "license_type_code": type_code, "license_type_name": type_name, "issuer_name": issuer,
               "holder": NEWBORN if holder is None else holder}
    if supersedes:
        payload["supersedes"] = supersedes
    return codec.opinion_of(from_payload(review_events.OpinionRecorded, payload))


def transfer(case_no, buyer=BUYER, seller=SELLER, license_ids=()):
    return opinion(case_no, item="160000000002", type_code="BDCQZ", type_name="不动产权证书", department="zrzy",
                   holder=buyer, issuer="广州市规划和自然资源局",
                   supersedes={"holder_code": seller, "license_type_code": "BDCQZ", "license_ids": list(license_ids),
                               "party": "seller"})


def sellers_certificate(elicense, case_no="440100ESFGH202611270001"):
    seller = {"role": "buyer", "name": "卖方乙", "id_number": SELLER, "code_type": "111"}
    return elicense.on_opinion(transfer(case_no, buyer=seller, seller=citizen_id("44010619600101123")))


# --- the holder -------------------------------------------------------------------------------


def test_the_licence_goes_to_the_holder_party_under_the_implementing_bodys_name(elicense, bus):
    lic = elicense.on_opinion(opinion("440100XSECS202611270001"))
    assert (lic["holder_name"], lic["holder_code"], lic["holder_code_type"]) == (
        NEWBORN["name"], NEWBORN["id_number"], ids.CODE_TYPE_CITIZEN_ID)
    assert lic["issuer_name"] == "广州市卫生健康委员会" and lic["issuer_code"] == "440100WSJK"
    assert APPLICANT not in str(lic)
    assert bus.published[-1][1]["holder_code"] == NEWBORN["id_number"]
    assert elicense.verify(lic["license_id"])[0]


def test_an_enterprise_licence_carries_the_credit_code_type(elicense):
    enterprise = {"role": "enterprise", "name": "广州味道餐饮有限公司", "id_number": ENTERPRISE_CODE}
    lic = elicense.on_opinion(opinion("440100KBCYD202611270001", item="120000000001", type_code="YYZZ",
                                      type_name="营业执照", department="scjg", holder=enterprise,
                                      issuer="广州市市场监督管理局"))
    assert lic["holder_code"] == ENTERPRISE_CODE and lic["holder_code_type"] == ids.CODE_TYPE_CREDIT_CODE == "001"
    assert lic["issuer_name"] == "广州市市场监督管理局"


def test_an_opinion_without_an_issuer_name_prints_the_department_code(elicense):
    # joint_review sends the implementing body's name, else the department's name from the package
    # snapshot; only an opinion with neither falls back to the code
    lic = elicense.on_opinion(opinion("440100XSECS202611270002", issuer=""))
    assert lic["issuer_name"] == "wsjk"


def test_an_opinion_without_a_holder_issues_nothing_and_is_not_absorbed(elicense, store, bus):
    """An opinion naming no holder (sent before parties existed) is not issued to someone else: it
    fails (not a domain refusal), so the worker retries and then dead-letters it for an operator."""
    with pytest.raises(ValueError, match="names no holder"):
        elicense.on_opinion(opinion("440100XSECS202611270003", holder={"role": "newborn"}))
    assert store.by_case("440100XSECS202611270003") == [] and bus.published == []


# --- superseding --------------------------------------------------------------------------------


def test_the_buyers_certificate_supersedes_the_sellers(elicense, store, bus):
    old = sellers_certificate(elicense)
    start = len(bus.published)
    new = elicense.on_opinion(transfer("440100ESFGH202611270002", license_ids=[old["license_id"]]))
    assert new["holder_code"] == BUYER["id_number"] and new["status"] == domain.VALID
    assert status(store, old["license_id"]) == domain.SUPERSEDED
    assert store.get(old["license_id"])["superseded_by"] == new["license_id"]
    assert bus.types()[start:] == ["license_issued", "license_revoked"]
    revoked = bus.published[-1][1]
    assert revoked["license_id"] == old["license_id"] and revoked["superseded_by"] == new["license_id"]
    assert revoked["case_no"] == "440100ESFGH202611270001" and "superseded" in revoked["reason"]
    valid, reason, fields = elicense.verify(old["license_id"])
    assert not valid and "superseded by " + new["license_id"] in reason
    assert fields["status"] == domain.SUPERSEDED
    assert elicense.verify(new["license_id"])[0]


def test_named_licences_only_when_the_case_named_some(elicense, store):
    first = sellers_certificate(elicense, "440100ESFGH202611270011")
    second = sellers_certificate(elicense, "440100ESFGH202611270012")  # another flat of the same seller
    elicense.on_opinion(transfer("440100ESFGH202611270013", license_ids=[second["license_id"]]))
    assert status(store, first["license_id"]) == domain.VALID
    assert status(store, second["license_id"]) == domain.SUPERSEDED


def test_without_named_licences_every_earlier_valid_one_of_the_type_is_superseded(elicense, store):
    old = sellers_certificate(elicense)
    other_type = elicense.on_opinion(opinion("440100XSECS202611270004", holder={
        "role": "newborn", "name": "卖方乙", "id_number": SELLER}))  # the seller's 出生医学证明: another type
    new = elicense.on_opinion(transfer("440100ESFGH202611270002"))
    assert status(store, old["license_id"]) == domain.SUPERSEDED
    assert status(store, other_type["license_id"]) == domain.VALID
    assert status(store, new["license_id"]) == domain.VALID


def test_a_licence_issued_after_the_new_one_is_not_superseded():
    issued = {"license_id": "NEW", "issued_at": "2026-11-27T10:00:00+00:00"}
    later = {"license_id": "LATER", "type_code": "BDCQZ", "status": domain.VALID, "issued_at": "2026-11-28T10:00:00+00:00"}
    before = {"license_id": "OLD", "type_code": "BDCQZ", "status": domain.VALID}  # from before issued_at was kept
    gone = {"license_id": "GONE", "type_code": "BDCQZ", "status": domain.REVOKED}
    assert [l["license_id"] for l in domain.to_supersede([later, before, gone, dict(issued, type_code="BDCQZ",
                                                                                   status=domain.VALID)],
                                                         issued, "BDCQZ")] == ["OLD"]


def test_a_redelivered_opinion_supersedes_nothing_twice_and_finishes_what_a_crash_left(elicense, store, bus):
    old = sellers_certificate(elicense)
    event = transfer("440100ESFGH202611270002", license_ids=[old["license_id"]])

    def store_away():
        raise ConnectionError("mongo away")
    store.interfere("by_holder", store_away)  # the superseding looks the seller's licences up first
    with pytest.raises(ConnectionError):  # issued, then the store went away before the superseding
        elicense.on_opinion(event)
    assert status(store, old["license_id"]) == domain.VALID
    assert bus.types()[-1] == "license_issued"
    start = len(bus.published)
    again = elicense.on_opinion(event)  # the redelivery: same licence, the superseding done now
    assert status(store, old["license_id"]) == domain.SUPERSEDED
    assert bus.types()[start:] == ["license_revoked"]
    assert elicense.on_opinion(event)["license_id"] == again["license_id"]
    assert bus.types()[start:] == ["license_revoked"]  # nothing more


def test_a_superseded_licence_cannot_be_revoked_and_a_withdrawal_leaves_it(elicense, store, bus):
    old = sellers_certificate(elicense)
    elicense.on_opinion(transfer("440100ESFGH202611270002", license_ids=[old["license_id"]]))
    with pytest.raises(FailedPrecondition, match="superseded"):
        elicense.revoke(old["license_id"], "登记错误", "officer-1")
    start = len(bus.published)
    assert elicense.on_session_withdrawn(domain.Withdrawal(case_no="440100ESFGH202611270001",
                                                           after_conclusion=True)) == []
    assert bus.published[start:] == []


def test_a_transfer_naming_no_seller_supersedes_nothing(elicense, store, bus):
    old = sellers_certificate(elicense)
    event = opinion("440100ESFGH202611270002", item="160000000002", type_code="BDCQZ", type_name="不动产权证书",
                    department="zrzy", holder=BUYER)
    elicense.on_opinion(event)
    assert status(store, old["license_id"]) == domain.VALID


def test_licence_dates_are_dates_in_china_by_the_handlers_clock(store, blobs):
    """17:00 UTC on New Year's Eve is already 1 January in China: the licence is valid from then and
    numbered in the new year's register; when it was issued is kept in UTC."""
    import datetime

    from services.common.audit import MemoryAuditLog
    from services.elicense.wiring import build_elicense
    new_years_eve = datetime.datetime(2026, 12, 31, 17, 0, tzinfo=datetime.UTC)
    elicense = build_elicense(store=store, blobs=blobs, audit=MemoryAuditLog("elicense"), clock=lambda: new_years_eve)
    lic = elicense.on_opinion(opinion("440100XSECS202612310001"))
    assert lic["valid_from"] == "2027-01-01" and lic["license_no"] == "CSYXZM202700000001"
    assert lic["issued_at"] == "2026-12-31T17:00:00+00:00"
    assert elicense.verify(lic["license_id"])[0]
    revoked = elicense.revoke(lic["license_id"], "登记错误", "officer-1")
    assert revoked["revoked_at"] == "2026-12-31T17:00:00+00:00"
