"""Delivery use cases over the in-memory store (services.delivery.fakes) and a RecordingBus: each
channel from case_concluded to completion, every refusal changing nothing, and the pickup code kept
out of events."""
import copy
import json

import pytest

from onething.delivery.v1 import events_pb2
from services.common.bus import RecordingBus
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from services.common.events import from_payload
from services.delivery import domain, handlers
from services.delivery.fakes import MemoryDeliveryStore

CASE = "440100XSECS202611260001"
ADDRESS = {"recipient": "李华", "phone": "13800000000", "region_code": "440106", "line": "天河路100号1栋101",
           "postcode": "510620"}
CODE = "042517"


class FakeBlobs:
    def download_url(self, bucket, key, ttl):
        return f"https://s3.example/{bucket}/{key}?X-Amz-Expires={int(ttl.total_seconds())}"


@pytest.fixture
def bus():
    return RecordingBus("delivery")


@pytest.fixture
def store(bus):
    return MemoryDeliveryStore(bus)


@pytest.fixture
def delivery(store):
    return handlers.Delivery(store, FakeBlobs(), pickup_code=lambda: CODE)


def concluded(channel, address=None, approved=True, case_no=CASE, results=()):
    return domain.CaseConcluded(case_no=case_no, approved=approved, channel=channel, address=dict(address or {}),
                                license_ids=("L1", "L2"), applicant_id="11010519491231002X",
                                region_code="440100", package_code="XSECS", lead_department="wsjk",
                                results=tuple(results))


def result(license_id, document_key=None):
    """A licence as case_concluded gives it; document_key "": a session stored before the keys."""
    return domain.ResultDocument(license_id=license_id, item_code=f"item-{license_id}", type_code="CSYXZM",
                                 document_key=f"results/{license_id}.pdf" if document_key is None else document_key)


class Elicense:
    """elicense's get_license, recording what it was asked."""

    def __init__(self):
        self.asked = []

    def __call__(self, license_id):
        self.asked.append(license_id)
        return licenses(license_id)


def licenses(license_id):
    return {"document_key": f"licenses/{CASE}/{license_id}.pdf"}


def statuses(body):
    return [h["status"] for h in body["history"]]


def completed_payload(bus):
    [payload] = [p for t, p, _ in bus.published if t == "delivery_completed"]
    return payload


def test_rejected_case_delivers_nothing(delivery, store, bus):
    assert delivery.on_case_concluded(concluded(domain.WINDOW, approved=False), licenses) is None
    assert store.docs == {} and bus.published == []


def test_electronic_completes_at_once_with_links(delivery, bus):
    body = delivery.on_case_concluded(concluded(domain.ELECTRONIC), licenses)
    assert body["status"] == domain.COMPLETED
    assert statuses(body) == [domain.PREPARED, domain.DISPATCHED, domain.COMPLETED]
    assert all(r["download_url"].startswith("https://s3.example/results/") for r in body["results"])
    assert bus.types() == ["delivery_dispatched", "delivery_completed"]
    done = completed_payload(bus)
    assert done["lead_department"] == "wsjk" and done["package_code"] == "XSECS" and done["region_code"] == "440100"
    assert done["applicant_id"] == "11010519491231002X" and done["completed_at"]


def test_window_waits_with_a_code_that_never_leaves_the_delivery(delivery, bus, store):
    body = delivery.on_case_concluded(concluded(domain.WINDOW), licenses)
    assert body["status"] == domain.READY_FOR_PICKUP and body["pickup_code"] == CODE
    assert statuses(body) == [domain.PREPARED, domain.READY_FOR_PICKUP]
    assert all("download_url" not in r for r in body["results"])
    assert bus.types() == ["delivery_ready_for_pickup"]
    done = delivery.confirm_pickup(CASE, CODE, "clerk-7")
    assert done["status"] == domain.COMPLETED
    assert done["history"][-1]["by"] == "clerk-7"
    assert bus.types() == ["delivery_ready_for_pickup", "delivery_completed"]
    assert completed_payload(bus)["completed_by"] == "clerk-7"
    assert CODE not in json.dumps(bus.published, ensure_ascii=False)
    assert CODE not in json.dumps(store.docs[CASE]["body"]["history"], ensure_ascii=False)
    assert store.docs[CASE]["outbox"] == []


def test_real_pickup_codes_differ_between_cases(store):
    d = handlers.Delivery(store, FakeBlobs())
    codes = {d.on_case_concluded(concluded(domain.WINDOW, case_no=f"C{i}"), licenses)["pickup_code"]
             for i in range(20)}
    assert len(codes) > 15 and all(len(c) == 6 and c.isdigit() for c in codes)


def test_wrong_pickup_code_is_denied_and_changes_nothing_but_the_count(delivery, store, bus):
    delivery.on_case_concluded(concluded(domain.WINDOW), licenses)
    before = copy.deepcopy(store.docs)
    with pytest.raises(PermissionDenied):
        delivery.confirm_pickup(CASE, "999999", "clerk-7")
    assert store.docs[CASE]["body"].pop("pickup_failures") == 1
    assert store.docs == before and bus.types() == ["delivery_ready_for_pickup"]


def test_five_wrong_codes_lock_the_pickup_for_a_while_even_for_the_right_code(store):
    import datetime

    from services.common.errors import Busy
    now = [datetime.datetime(2026, 11, 27, 9, 0, tzinfo=datetime.UTC)]
    d = handlers.Delivery(store, FakeBlobs(), pickup_code=lambda: CODE, pickup_max_attempts=5,
                          pickup_lock=datetime.timedelta(minutes=30), clock=lambda: now[0])
    d.on_case_concluded(concluded(domain.WINDOW), licenses)
    for attempt in range(1, 5):
        with pytest.raises(PermissionDenied) as err:
            d.confirm_pickup(CASE, f"{attempt:06d}", "clerk-7")
        assert "locked" not in err.value.message
    with pytest.raises(PermissionDenied, match="locked for 30 minutes"):
        d.confirm_pickup(CASE, "000005", "clerk-7")
    with pytest.raises(Busy, match="locked") as err:  # RESOURCE_EXHAUSTED, the right code too
        d.confirm_pickup(CASE, CODE, "clerk-7")
    assert err.value.code == "RESOURCE_EXHAUSTED" and 29 * 60 < err.value.retry_after_s <= 30 * 60
    assert store.docs[CASE]["body"]["status"] == domain.READY_FOR_PICKUP and CODE not in err.value.message
    now[0] += datetime.timedelta(minutes=31)  # the window has passed: the right code works, the count restarts
    done = d.confirm_pickup(CASE, CODE, "clerk-7")
    assert done["status"] == domain.COMPLETED and done["pickup_failures"] == 0 and not done["pickup_locked_until"]


def test_a_right_code_resets_the_count_of_wrong_ones(store):
    d = handlers.Delivery(store, FakeBlobs(), pickup_code=lambda: CODE, pickup_max_attempts=2)
    d.on_case_concluded(concluded(domain.WINDOW), licenses)
    with pytest.raises(PermissionDenied):
        d.confirm_pickup(CASE, "111111", "clerk-7")
    assert d.confirm_pickup(CASE, CODE, "clerk-7")["pickup_failures"] == 0


def test_second_pickup_is_out_of_order(delivery, bus):
    delivery.on_case_concluded(concluded(domain.WINDOW), licenses)
    delivery.confirm_pickup(CASE, CODE, "clerk-7")
    with pytest.raises(FailedPrecondition, match="already been picked up"):
        delivery.confirm_pickup(CASE, CODE, "clerk-8")
    assert bus.types().count("delivery_completed") == 1


@pytest.mark.parametrize("code, clerk", [("", "clerk-7"), (CODE, ""), ("  ", "clerk-7"), (CODE, "  ")])
def test_pickup_needs_code_and_clerk(delivery, store, code, clerk):
    delivery.on_case_concluded(concluded(domain.WINDOW), licenses)
    with pytest.raises(InvalidArgument):
        delivery.confirm_pickup(CASE, code, clerk)
    assert store.docs[CASE]["body"]["status"] == domain.READY_FOR_PICKUP


def test_unknown_case_is_not_found(delivery):
    with pytest.raises(NotFound):
        delivery.confirm_pickup("NOPE", CODE, "clerk-7")
    with pytest.raises(NotFound):
        delivery.record_dispatch("NOPE", "EMS", "1234567890123", "clerk-7")
    with pytest.raises(NotFound):
        delivery.record_delivered("NOPE", "1234567890123", "李华")
    with pytest.raises(InvalidArgument):
        delivery.get("")


def test_mail_from_prepared_to_delivered(delivery, bus, store):
    body = delivery.on_case_concluded(concluded(domain.MAIL, ADDRESS), licenses)
    assert body["status"] == domain.PREPARED and body["address"] == ADDRESS
    assert "pickup_code" not in body
    assert bus.types() == []
    body = delivery.record_dispatch(CASE, "ems", "ea473124829cn", "clerk-7")
    assert body["status"] == domain.DISPATCHED
    assert (body["carrier"], body["tracking_number"]) == ("EMS", "EA473124829CN")
    [(_, sent, headers)] = bus.published
    assert sent["tracking_number"] == "EA473124829CN" and sent["carrier"] == "CARRIER_EMS" and headers["case_no"] == CASE
    body = delivery.record_delivered(CASE, "EA473124829CN", "李华")
    assert body["status"] == domain.COMPLETED
    assert statuses(body) == [domain.PREPARED, domain.DISPATCHED, domain.COMPLETED]
    assert body["history"][1]["by"] == "clerk-7" and body["history"][2]["by"] == "李华"
    assert "EA473124829CN" in body["history"][1]["note"]
    assert bus.types() == ["delivery_dispatched", "delivery_completed"]
    done = from_payload(events_pb2.DeliveryCompleted, completed_payload(bus))
    assert done.lead_department == "wsjk" and done.completed_by == "李华" and done.channel == 3


def test_mail_out_of_order_changes_nothing(delivery, store, bus):
    delivery.on_case_concluded(concluded(domain.MAIL, ADDRESS), licenses)
    with pytest.raises(FailedPrecondition, match="not been dispatched"):
        delivery.record_delivered(CASE, "1234567890123", "李华")
    delivery.record_dispatch(CASE, "EMS", "1234567890123", "clerk-7")
    before = copy.deepcopy(store.docs)
    with pytest.raises(FailedPrecondition, match="already been dispatched"):
        delivery.record_dispatch(CASE, "SF", "SF1234567890123", "clerk-7")
    with pytest.raises(InvalidArgument, match="not the one recorded"):
        delivery.record_delivered(CASE, "1234567890124", "李华")
    with pytest.raises(InvalidArgument, match="signed"):
        delivery.record_delivered(CASE, "1234567890123", " ")
    assert store.docs == before
    delivery.record_delivered(CASE, "1234567890123", "李华")
    with pytest.raises(FailedPrecondition, match="already been delivered"):
        delivery.record_delivered(CASE, "1234567890123", "李华")
    assert bus.types() == ["delivery_dispatched", "delivery_completed"]


@pytest.mark.parametrize("carrier, number, clerk", [("EMS", "12345", "clerk-7"), ("DHL", "1234567890", "clerk-7"),
                                                    ("EMS", "1234567890123", "")])
def test_dispatch_with_bad_input_changes_nothing(delivery, store, bus, carrier, number, clerk):
    delivery.on_case_concluded(concluded(domain.MAIL, ADDRESS), licenses)
    with pytest.raises(InvalidArgument):
        delivery.record_dispatch(CASE, carrier, number, clerk)
    assert store.docs[CASE]["body"]["status"] == domain.PREPARED and bus.published == []


def test_window_and_mail_calls_refuse_the_other_channel(delivery):
    delivery.on_case_concluded(concluded(domain.ELECTRONIC), licenses)
    with pytest.raises(FailedPrecondition, match="ELECTRONIC"):
        delivery.confirm_pickup(CASE, CODE, "clerk-7")
    with pytest.raises(FailedPrecondition, match="ELECTRONIC"):
        delivery.record_dispatch(CASE, "EMS", "1234567890123", "clerk-7")


@pytest.mark.parametrize("change, words", [({"phone": "12345"}, "mobile"), ({"postcode": "51062"}, "postcode"),
                                           ({"line": ""}, "street")])
def test_invalid_mail_address_fails_the_delivery(delivery, bus, change, words):
    body = delivery.on_case_concluded(concluded(domain.MAIL, {**ADDRESS, **change}), licenses)
    assert body["status"] == domain.FAILED and words in body["failure_reason"]
    assert statuses(body) == [domain.PREPARED, domain.FAILED]
    [(kind, payload, _)] = bus.published
    assert kind == "delivery_failed" and words in payload["reason"]
    with pytest.raises(FailedPrecondition, match="failed"):
        delivery.record_dispatch(CASE, "EMS", "1234567890123", "clerk-7")


def test_mail_without_an_address_fails(delivery, bus):
    body = delivery.on_case_concluded(concluded(domain.MAIL), licenses)
    assert body["status"] == domain.FAILED and "recipient" in body["failure_reason"]
    assert bus.types() == ["delivery_failed"]


def test_redelivered_case_concluded_changes_nothing(delivery, bus):
    first = delivery.on_case_concluded(concluded(domain.WINDOW), licenses)
    again = delivery.on_case_concluded(concluded(domain.WINDOW), licenses)
    assert again == first and bus.types() == ["delivery_ready_for_pickup"]


def test_a_concurrent_change_is_refused(delivery, store, bus):
    """Two clerks read READY_FOR_PICKUP; the second write finds it no longer so and fails."""
    delivery.on_case_concluded(concluded(domain.WINDOW), licenses)
    real_get = store.get

    def stale_get(case_no):
        body = real_get(case_no)
        store.docs[case_no]["body"]["status"] = domain.COMPLETED  # someone else finished it meanwhile
        return body

    store.get = stale_get
    with pytest.raises(FailedPrecondition, match="changed meanwhile"):
        delivery.confirm_pickup(CASE, CODE, "clerk-8")
    assert "delivery_completed" not in bus.types()


# --- a parcel that comes back, the corrected address, the parcel sent again --------------------

NEW_ADDRESS = {"recipient": "李华", "phone": "13800000000", "region_code": "440106", "line": "天河路200号2栋202",
               "postcode": "510620"}


def dispatched_mail(delivery):
    delivery.on_case_concluded(concluded(domain.MAIL, ADDRESS), licenses)
    return delivery.record_dispatch(CASE, "EMS", "EA473124829CN", "clerk-7")


def test_a_returned_parcel_fails_the_delivery_and_is_sent_again_to_the_corrected_address(delivery, bus, store):
    dispatched_mail(delivery)
    body = delivery.record_undeliverable(CASE, "ea473124829cn", "地址不详，查无此人")
    assert body["status"] == domain.FAILED and body["failure_reason"] == "地址不详，查无此人"
    [failed] = [p for t, p, _ in bus.published if t == "delivery_failed"]
    assert failed["attempt"] == 1 and failed["reason"] == "地址不详，查无此人" and failed["channel"] == "DELIVERY_CHANNEL_MAIL"

    body = delivery.redispatch(CASE, NEW_ADDRESS, "sf", "SF1234567890123", "clerk-8")
    assert body["status"] == domain.DISPATCHED and body["attempt"] == 2 and body["address"] == NEW_ADDRESS
    assert (body["carrier"], body["tracking_number"], body["failure_reason"]) == ("SF", "SF1234567890123", "")
    again = [p for t, p, _ in bus.published if t == "delivery_dispatched"]
    assert [p["attempt"] for p in again] == [1, 2] and again[1]["tracking_number"] == "SF1234567890123"
    assert again[1]["dispatched_by"] == "clerk-8"

    done = delivery.record_delivered(CASE, "SF1234567890123", "李华")
    assert done["status"] == domain.COMPLETED and completed_payload(bus)["attempt"] == 2
    assert statuses(done) == [domain.PREPARED, domain.DISPATCHED, domain.FAILED, domain.DISPATCHED, domain.COMPLETED]
    assert bus.types() == ["delivery_dispatched", "delivery_failed", "delivery_dispatched", "delivery_completed"]


def test_an_invalid_address_at_conclusion_is_corrected_by_redispatch(delivery, bus):
    delivery.on_case_concluded(concluded(domain.MAIL, {**ADDRESS, "postcode": "51062"}), licenses)
    body = delivery.redispatch(CASE, NEW_ADDRESS, "EMS", "1234567890123", "clerk-8")
    assert body["status"] == domain.DISPATCHED and body["attempt"] == 2
    assert bus.types() == ["delivery_failed", "delivery_dispatched"]


@pytest.mark.parametrize("change, carrier, number, clerk, words", [
    ({"postcode": "51062"}, "EMS", "1234567890123", "clerk-8", "postcode"),
    ({"phone": "020-1234"}, "EMS", "1234567890123", "clerk-8", "mobile"),
    ({"line": "  "}, "EMS", "1234567890123", "clerk-8", "street"),
    ({"recipient": ""}, "EMS", "1234567890123", "clerk-8", "recipient"),
    ({}, "DHL", "1234567890123", "clerk-8", "unknown carrier"),
    ({}, "EMS", "12345", "clerk-8", "EMS tracking number"),
    ({}, "EMS", "1234567890123", " ", "clerk_id"),
])
def test_a_redispatch_with_bad_input_is_invalid_and_changes_nothing(delivery, store, bus, change, carrier, number,
                                                                    clerk, words):
    dispatched_mail(delivery)
    delivery.record_undeliverable(CASE, "EA473124829CN", "查无此人")
    before, sent = copy.deepcopy(store.docs), len(bus.published)
    with pytest.raises(InvalidArgument, match=words):
        delivery.redispatch(CASE, {**NEW_ADDRESS, **change}, carrier, number, clerk)
    assert store.docs == before and len(bus.published) == sent


def test_a_redispatch_of_a_delivery_that_has_not_failed_is_refused(delivery, store, bus):
    dispatched_mail(delivery)
    before, sent = copy.deepcopy(store.docs), len(bus.published)
    with pytest.raises(FailedPrecondition, match="has not failed"):
        delivery.redispatch(CASE, NEW_ADDRESS, "EMS", "1234567890123", "clerk-8")
    with pytest.raises(NotFound):
        delivery.redispatch("440100XSECS209901019999", NEW_ADDRESS, "EMS", "1234567890123", "clerk-8")
    with pytest.raises(InvalidArgument, match="case_no"):
        delivery.redispatch("", NEW_ADDRESS, "EMS", "1234567890123", "clerk-8")
    assert store.docs == before and len(bus.published) == sent


def test_a_second_redispatch_is_refused(delivery, bus):
    dispatched_mail(delivery)
    delivery.record_undeliverable(CASE, "EA473124829CN", "查无此人")
    delivery.redispatch(CASE, NEW_ADDRESS, "EMS", "1234567890123", "clerk-8")
    with pytest.raises(FailedPrecondition, match="has not failed"):
        delivery.redispatch(CASE, NEW_ADDRESS, "EMS", "1234567890124", "clerk-8")
    assert bus.types().count("delivery_dispatched") == 2


@pytest.mark.parametrize("step, number, reason, error, words", [
    ("prepared", "EA473124829CN", "查无此人", FailedPrecondition, "not been dispatched"),
    ("dispatched", "EA000000000CN", "查无此人", InvalidArgument, "not the one recorded"),
    ("dispatched", "EA473124829CN", "  ", InvalidArgument, "reason"),
    ("failed", "EA473124829CN", "查无此人", FailedPrecondition, "already failed"),
    ("delivered", "EA473124829CN", "查无此人", FailedPrecondition, "already been delivered"),
])
def test_a_refused_undeliverable_report_changes_nothing(delivery, store, bus, step, number, reason, error, words):
    delivery.on_case_concluded(concluded(domain.MAIL, ADDRESS), licenses)
    if step != "prepared":
        delivery.record_dispatch(CASE, "EMS", "EA473124829CN", "clerk-7")
    if step == "failed":
        delivery.record_undeliverable(CASE, "EA473124829CN", "拒收")
    if step == "delivered":
        delivery.record_delivered(CASE, "EA473124829CN", "李华")
    before, sent = copy.deepcopy(store.docs), len(bus.published)
    with pytest.raises(error, match=words):
        delivery.record_undeliverable(CASE, number, reason)
    assert store.docs == before and len(bus.published) == sent


def test_only_mail_can_be_undeliverable(delivery):
    delivery.on_case_concluded(concluded(domain.WINDOW), licenses)
    with pytest.raises(FailedPrecondition, match="WINDOW"):
        delivery.record_undeliverable(CASE, "EA473124829CN", "查无此人")


# --- revoked licences: no link for them -------------------------------------------------------


def revoked(license_id="L1", case_no=CASE):
    return domain.LicenseRevoked(license_id=license_id, case_no=case_no, reason="信息有误")


def test_a_revoked_licence_is_shown_revoked_and_its_link_is_no_longer_given(delivery, store):
    delivery.on_case_concluded(concluded(domain.ELECTRONIC), licenses)
    assert delivery.on_license_revoked(revoked("L1")) and delivery.on_license_revoked(revoked("L1"))
    body = delivery.get(CASE)
    l1, l2 = body["results"]
    assert l1["revoked"] and l1["revoke_reason"] == "信息有误" and l1["revoked_at"]
    assert "download_url" not in l1 and "expires_at" not in l1
    assert l2["download_url"] and not l2.get("revoked")
    assert len(store.revoked) == 1


def test_a_licence_revoked_before_its_delivery_gets_no_link(delivery):
    delivery.on_license_revoked(revoked("L2"))
    body = delivery.on_case_concluded(concluded(domain.ELECTRONIC), licenses)
    l1, l2 = body["results"]
    assert l1["download_url"] and l2["revoked"] and "download_url" not in l2


def test_a_licence_elicense_reports_revoked_at_delivery_gets_no_link(delivery, store):
    def lookup(license_id):
        return dict(licenses(license_id), status="LICENSE_STATUS_REVOKED", revoke_reason="撤销") \
            if license_id == "L1" else licenses(license_id)
    body = delivery.on_case_concluded(concluded(domain.ELECTRONIC), lookup)
    assert body["results"][0]["revoked"] and "download_url" not in store.docs[CASE]["body"]["results"][0]
    assert body["results"][1]["download_url"]


# --- the documents: from case_concluded's results; elicense only for what they do not give -------


def test_results_with_document_keys_are_delivered_without_asking_elicense(delivery, bus):
    elicense = Elicense()
    body = delivery.on_case_concluded(concluded(domain.ELECTRONIC, results=[result("L1"), result("L2")]), elicense)
    assert elicense.asked == []
    assert [r["object_key"] for r in body["results"]] == ["results/L1.pdf", "results/L2.pdf"]
    assert [r["download_url"] for r in body["results"]] == [
        "https://s3.example/results/results/L1.pdf?X-Amz-Expires=86400",
        "https://s3.example/results/results/L2.pdf?X-Amz-Expires=86400"]
    assert bus.types() == ["delivery_dispatched", "delivery_completed"]


def test_a_result_without_a_document_key_is_looked_up_at_elicense(delivery):
    elicense = Elicense()
    body = delivery.on_case_concluded(concluded(domain.WINDOW, results=[result("L1", ""), result("L2")]), elicense)
    assert elicense.asked == ["L1"]  # only the licence a session stored before the keys names without one
    assert [r["object_key"] for r in body["results"]] == [f"licenses/{CASE}/L1.pdf", "results/L2.pdf"]


def test_an_event_from_before_the_results_looks_every_licence_up_at_elicense(delivery):
    elicense = Elicense()
    body = delivery.on_case_concluded(concluded(domain.ELECTRONIC), elicense)
    assert elicense.asked == ["L1", "L2"]
    assert [r["object_key"] for r in body["results"]] == [f"licenses/{CASE}/L1.pdf", f"licenses/{CASE}/L2.pdf"]


def test_a_licence_revoked_before_a_delivery_with_results_gets_no_link(delivery):
    delivery.on_license_revoked(revoked("L2"))
    elicense = Elicense()
    body = delivery.on_case_concluded(concluded(domain.ELECTRONIC, results=[result("L1"), result("L2")]), elicense)
    l1, l2 = body["results"]
    assert elicense.asked == []
    assert l1["download_url"] and l2["revoked"] and l2["revoke_reason"] == "信息有误" and "download_url" not in l2
    assert delivery.on_license_revoked(revoked("L1"))  # and one revoked after it loses its link
    assert all(r["revoked"] and "download_url" not in r for r in delivery.get(CASE)["results"])


def test_a_revocation_without_a_licence_id_is_ignored(delivery, store):
    assert not delivery.on_license_revoked(domain.LicenseRevoked(license_id="", case_no=CASE))
    assert store.revoked == {}


# --- a withdrawal after the conclusion: nothing is delivered ----------------------------------


def session_withdrawn(after=True, case_no=CASE):
    return domain.SessionWithdrawn(case_no=case_no, region_code="440100", after_conclusion=after)


def test_a_withdrawal_after_the_conclusion_cancels_the_delivery_once(delivery, store, bus):
    delivery.on_case_concluded(concluded(domain.WINDOW), licenses)
    sent = len(bus.published)
    body = delivery.on_session_withdrawn(session_withdrawn())
    assert body["status"] == domain.CANCELLED and "pickup_code" not in body
    assert "withdrawn" in body["history"][-1]["note"]
    again = delivery.on_session_withdrawn(session_withdrawn())
    assert again == body and len(bus.published) == sent
    with pytest.raises(FailedPrecondition, match="cancelled"):
        delivery.confirm_pickup(CASE, CODE, "clerk-7")


def test_a_cancelled_electronic_delivery_gives_no_link(delivery):
    delivery.on_case_concluded(concluded(domain.ELECTRONIC), licenses)
    body = delivery.on_session_withdrawn(session_withdrawn())
    assert body["status"] == domain.CANCELLED
    assert all("download_url" not in r for r in delivery.get(CASE)["results"])


def test_a_withdrawal_that_reaches_delivery_first_keeps_the_late_conclusion_from_delivering(delivery, store, bus):
    body = delivery.on_session_withdrawn(session_withdrawn())
    assert body["status"] == domain.CANCELLED and body["results"] == []
    late = delivery.on_case_concluded(concluded(domain.ELECTRONIC), licenses)
    assert late["status"] == domain.CANCELLED and late["results"] == [] and bus.published == []
    for call, args in ((delivery.record_dispatch, (CASE, "EMS", "1234567890123", "c")),
                       (delivery.record_delivered, (CASE, "1234567890123", "c")),
                       (delivery.redispatch, (CASE, NEW_ADDRESS, "EMS", "1234567890123", "c")),
                       (delivery.record_undeliverable, (CASE, "1234567890123", "r"))):
        with pytest.raises(FailedPrecondition, match="cancelled"):
            call(*args)


def test_a_withdrawal_before_the_conclusion_needs_nothing_from_delivery(delivery, store):
    assert delivery.on_session_withdrawn(session_withdrawn(after=False)) is None
    assert store.docs == {}


def test_a_cancellation_that_keeps_losing_the_race_is_left_to_the_queue(delivery, store):
    delivery.on_case_concluded(concluded(domain.WINDOW), licenses)
    store.update = lambda *a, **k: False
    with pytest.raises(RuntimeError, match="kept changing"):
        delivery.on_session_withdrawn(session_withdrawn())


def test_a_case_without_a_delivery_channel_fails_its_delivery(delivery, bus):
    body = delivery.on_case_concluded(concluded(domain.Channel.UNSPECIFIED), licenses)
    assert body["status"] == domain.FAILED and body["channel"] is domain.Channel.UNSPECIFIED
    assert body["failure_reason"] == "no delivery channel chosen (DELIVERY_CHANNEL_UNSPECIFIED)"
    [(kind, payload, _)] = bus.published
    assert kind == "delivery_failed" and payload["reason"] == body["failure_reason"]


# --- wiring: every adapter may be given ---------------------------------------------------------


def test_build_delivery_uses_the_adapters_it_is_given(bus, monkeypatch):
    import datetime

    from services.common import mongo
    from services.common.audit import MemoryAuditLog
    from services.delivery.wiring import build_delivery
    monkeypatch.setattr(mongo, "connect", lambda *a, **k: pytest.fail("no database was asked for"))
    store, blobs, audit = MemoryDeliveryStore(bus), FakeBlobs(), MemoryAuditLog("delivery")
    at = datetime.datetime(2026, 11, 27, 9, 0, tzinfo=datetime.UTC)
    d = build_delivery(store=store, blobs=blobs, clock=lambda: at, audit=audit, pickup_code=lambda: CODE)
    assert (d.store, d.blobs, d.audit) == (store, blobs, audit)
    body = d.on_case_concluded(concluded(domain.WINDOW), licenses)
    assert body["pickup_code"] == CODE and body["history"][0]["at"] == at.isoformat()
    assert bus.types() == ["delivery_ready_for_pickup"]
