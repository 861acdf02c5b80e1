"""delivery's handlers against the real MongoDB-wire server and broker: a MAIL and a WINDOW
delivery to completion, each event published once through the outbox, refusals changing nothing."""
import time

import pytest

from services.common.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from services.delivery import domain

pytestmark = pytest.mark.integration
ADDRESS = {"recipient": "李华", "phone": "13800000000", "region_code": "440106", "line": "天河路100号1栋101",
           "postcode": "510620"}


@pytest.fixture(scope="module")
def delivery(test_env):
    from services.delivery.wiring import build_delivery
    return build_delivery()


def concluded(case_no, channel, address=None, license_ids=()):
    """case_concluded as joint_review publishes it, decoded as the worker decodes it."""
    from services.delivery.worker import case_concluded
    return case_concluded({
        "case_no": case_no, "approved": True, "applicant": {"id_number": "11010519491231002X", "name": "李华"},
        "delivery": {"channel": channel, **({"address": address} if address else {})}, "license_ids": list(license_ids),
        "region_code": "440100", "package_code": "XSECS", "lead_department": "wsjk"})


def wait_keys(probe, case_no, n):
    deadline = time.time() + 10
    while time.time() < deadline and len(probe.for_case(case_no)) < n:
        time.sleep(0.05)
    time.sleep(0.3)
    return [k for k, _ in probe.for_case(case_no)]


def test_mail_delivery_to_completion(delivery, probe):
    case_no = f"D{int(time.time() * 1000)}M"
    assert delivery.on_case_concluded(concluded(case_no, "DELIVERY_CHANNEL_MAIL", ADDRESS), lambda _: {})[
        "status"] == domain.PREPARED
    delivery.record_dispatch(case_no, "SF", "SF1234567890123", "clerk-1")
    with pytest.raises(FailedPrecondition):
        delivery.record_dispatch(case_no, "SF", "SF1234567890124", "clerk-1")
    body = delivery.record_delivered(case_no, "SF1234567890123", "李华")
    assert body == delivery.get(case_no)
    assert [h["status"] for h in body["history"]] == [domain.PREPARED, domain.DISPATCHED, domain.COMPLETED]
    assert wait_keys(probe, case_no, 2) == ["delivery_dispatched", "delivery_completed"]
    completed = dict(probe.for_case(case_no))["delivery_completed"]
    assert completed["lead_department"] == "wsjk" and completed["completed_by"] == "李华"
    assert delivery.store.pending(case_no) == []


def test_window_pickup_wrong_code_then_right_code(delivery, probe):
    case_no = f"D{int(time.time() * 1000)}W"
    code = delivery.on_case_concluded(concluded(case_no, "DELIVERY_CHANNEL_WINDOW"), lambda _: {})["pickup_code"]
    wrong = "000000" if code != "000000" else "111111"
    with pytest.raises(PermissionDenied):
        delivery.confirm_pickup(case_no, wrong, "clerk-1")
    assert delivery.get(case_no)["status"] == domain.READY_FOR_PICKUP
    assert delivery.confirm_pickup(case_no, code, "clerk-1")["status"] == domain.COMPLETED
    keys = wait_keys(probe, case_no, 2)
    assert keys == ["delivery_ready_for_pickup", "delivery_completed"]
    assert all(code not in str(body) for _, body in probe.for_case(case_no))


def test_wrong_pickup_codes_are_counted_in_the_store_and_lock_the_pickup(delivery):
    """Five wrong codes in a row (counted atomically in MongoDB) lock ConfirmPickup, the right code
    too (RESOURCE_EXHAUSTED), until the lock's time has passed."""
    import datetime

    from services.common.errors import Busy
    from services.delivery.wiring import build_delivery
    case_no = f"D{int(time.time() * 1000)}L"
    code = delivery.on_case_concluded(concluded(case_no, "DELIVERY_CHANNEL_WINDOW"), lambda _: {})["pickup_code"]
    wrong = [f"{(int(code) + n) % 1000000:06d}" for n in range(1, 6)]
    for n, attempt in enumerate(wrong, 1):
        with pytest.raises(PermissionDenied) as err:
            delivery.confirm_pickup(case_no, attempt, "clerk-1")
        assert ("locked" in err.value.message) == (n == 5)
    body = delivery.store.get(case_no)
    assert body["pickup_failures"] == 0 and body["pickup_locked_until"]
    with pytest.raises(Busy):
        delivery.confirm_pickup(case_no, code, "clerk-1")
    assert delivery.get(case_no)["status"] == domain.READY_FOR_PICKUP
    later = datetime.datetime.fromisoformat(body["pickup_locked_until"]) + datetime.timedelta(seconds=1)
    after_the_lock = build_delivery(store=delivery.store, clock=lambda: later)  # the lock has run out
    assert after_the_lock.confirm_pickup(case_no, code, "clerk-1")["status"] == domain.COMPLETED


def test_invalid_address_fails_the_delivery(delivery, probe):
    case_no = f"D{int(time.time() * 1000)}F"
    body = delivery.on_case_concluded(concluded(case_no, "DELIVERY_CHANNEL_MAIL", {**ADDRESS, "postcode": "1"}),
                                      lambda _: {})
    assert body["status"] == domain.FAILED and "postcode" in body["failure_reason"]
    assert wait_keys(probe, case_no, 1) == ["delivery_failed"]


def test_returned_parcel_redispatched_to_a_corrected_address(delivery, probe):
    case_no = f"D{int(time.time() * 1000)}R"
    delivery.on_case_concluded(concluded(case_no, "DELIVERY_CHANNEL_MAIL", ADDRESS), lambda _: {})
    delivery.record_dispatch(case_no, "EMS", "EA473124829CN", "clerk-1")
    assert delivery.record_undeliverable(case_no, "EA473124829CN", "查无此人")["status"] == domain.FAILED
    corrected = {**ADDRESS, "line": "天河路200号2栋202"}
    with pytest.raises(InvalidArgument, match="postcode"):
        delivery.redispatch(case_no, {**corrected, "postcode": "5106"}, "SF", "SF1234567890123", "clerk-2")
    body = delivery.redispatch(case_no, corrected, "SF", "SF1234567890123", "clerk-2")
    assert body == delivery.get(case_no) and body["attempt"] == 2 and body["address"] == corrected
    with pytest.raises(FailedPrecondition, match="has not failed"):
        delivery.redispatch(case_no, corrected, "SF", "SF1234567890124", "clerk-2")
    delivery.record_delivered(case_no, "SF1234567890123", "李华")
    assert wait_keys(probe, case_no, 4) == ["delivery_dispatched", "delivery_failed", "delivery_dispatched",
                                            "delivery_completed"]
    attempts = [b.get("attempt") for _, b in probe.for_case(case_no)]
    assert attempts == [1, 1, 2, 2]


def test_revoked_licences_lose_their_links_even_when_revoked_before_the_delivery(delivery):
    case_no = f"D{int(time.time() * 1000)}V"
    early = domain.LicenseRevoked(license_id=f"{case_no}-L2", case_no=case_no, reason="撤销")
    assert delivery.on_license_revoked(early) and delivery.on_license_revoked(early)
    event = concluded(case_no, "DELIVERY_CHANNEL_ELECTRONIC", license_ids=[f"{case_no}-L1", f"{case_no}-L2"])
    body = delivery.on_case_concluded(event, lambda lid: {"document_key": f"licenses/{case_no}/{lid}.pdf"})
    l1, l2 = body["results"]
    assert l1["download_url"] and l2["revoked"] and "download_url" not in l2
    delivery.on_license_revoked(domain.LicenseRevoked(license_id=f"{case_no}-L1", case_no=case_no))
    assert all(r["revoked"] and "download_url" not in r for r in delivery.get(case_no)["results"])
    assert set(delivery.store.revocations(case_no)) == {f"{case_no}-L1", f"{case_no}-L2"}


def test_a_withdrawal_after_the_conclusion_cancels_the_delivery_first_or_last(delivery, probe):
    first, last = f"D{int(time.time() * 1000)}X", f"D{int(time.time() * 1000)}Y"
    for case_no in (first, last):
        withdrawal = domain.SessionWithdrawn(case_no=case_no, after_conclusion=True)
        if case_no == last:
            delivery.on_case_concluded(concluded(case_no, "DELIVERY_CHANNEL_WINDOW"), lambda _: {})
        assert delivery.on_session_withdrawn(withdrawal)["status"] == domain.CANCELLED
        assert delivery.on_session_withdrawn(withdrawal)["status"] == domain.CANCELLED
        delivery.on_case_concluded(concluded(case_no, "DELIVERY_CHANNEL_WINDOW"), lambda _: {})
        body = delivery.get(case_no)
        assert body["status"] == domain.CANCELLED and "pickup_code" not in body
    assert wait_keys(probe, first, 0) == []
    assert wait_keys(probe, last, 1) == ["delivery_ready_for_pickup"]
