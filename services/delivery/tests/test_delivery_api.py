"""What delivery's api answers: the domain's delivery (status and channel as enums) encoded once
into the proto, exactly as the stored strings were before; a clerk's view without the code, the
links and the full identity number."""
import copy

import pytest
from google.protobuf import json_format
from test_delivery_handlers import ADDRESS, CASE, CODE, FakeBlobs, bus, concluded, licenses, store  # noqa: F401

from onething.common.v1.common_pb2 import Address
from onething.delivery.v1 import delivery_pb2 as pb
from onething.delivery.v1 import events_pb2
from services.common import limits, policy
from services.common.auth import Actor
from services.common.errors import InvalidArgument
from services.common.events import from_payload
from services.delivery import api, domain, handlers, wire

AT = "2026-11-27T09:00:00+00:00"


def delivery(**changes):
    body = {"case_no": "C1", "channel": domain.WINDOW, "status": domain.READY_FOR_PICKUP, "attempt": 1,
            "applicant_id": "11010519491231002X", "region_code": "440100", "pickup_code": "042517",
            "pickup_failures": 0, "pickup_locked_until": "",
            "results": [{"license_id": "L1", "object_key": "k1", "download_url": "https://s3/x", "expires_at": AT}],
            "history": [{"status": domain.PREPARED, "at": AT, "note": "", "by": ""},
                        {"status": domain.READY_FOR_PICKUP, "at": AT, "note": "n", "by": ""}]}
    body.update(changes)
    return body


def test_the_delivery_is_encoded_as_the_stored_strings_were():
    before = json_format.ParseDict(
        dict(delivery(), channel="DELIVERY_CHANNEL_WINDOW", status="DELIVERY_STATUS_READY_FOR_PICKUP",
             history=[dict(h, status=f"DELIVERY_STATUS_{h['status']}") for h in delivery()["history"]]),
        pb.Delivery(), ignore_unknown_fields=True)
    message = api.to_proto(delivery())
    assert message == before
    assert message.status == pb.DELIVERY_STATUS_READY_FOR_PICKUP and message.channel == 2
    assert [h.status for h in message.history] == [pb.DELIVERY_STATUS_PREPARED, pb.DELIVERY_STATUS_READY_FOR_PICKUP]


def test_a_cancelled_delivery_without_a_channel_is_encoded():
    message = api.to_proto(delivery(channel=domain.Channel.UNSPECIFIED, status=domain.CANCELLED,
                                    history=[{"status": domain.CANCELLED, "at": AT, "note": "", "by": ""}]))
    assert message.channel == 0 and message.status == pb.DELIVERY_STATUS_CANCELLED


def test_a_clerk_sees_neither_the_code_nor_the_links_nor_the_whole_identity_number():
    message = api.to_proto(api.staff_view(delivery()))
    assert message.pickup_code == "" and message.results[0].download_url == ""
    assert not message.results[0].HasField("expires_at")
    assert message.applicant_id == "1101**********002X" and message.results[0].object_key == "k1"


# -- moments as Timestamps, the carrier as onething.delivery.v1.Carrier --------------------------

def test_the_stored_moments_are_answered_as_timestamps():
    revoked = {"license_id": "L2", "object_key": "k2", "revoked": True, "revoked_at": "2026-11-28T10:30:00.250000+08:00",
               "revoke_reason": "信息有误"}
    message = api.to_proto(delivery(results=[delivery()["results"][0], revoked]))
    assert [h.at.ToJsonString() for h in message.history] == ["2026-11-27T09:00:00Z", "2026-11-27T09:00:00Z"]
    assert message.results[0].expires_at.ToJsonString() == "2026-11-27T09:00:00Z"
    assert not message.results[0].HasField("revoked_at")
    assert message.results[1].revoked_at.ToJsonString() == "2026-11-28T02:30:00.250Z"
    assert not message.results[1].HasField("expires_at")
    assert wire.iso_of_timestamp(message.history[0], "at") == AT  # and back, as the store writes them


def test_an_empty_stored_moment_is_unset_and_one_without_an_offset_is_utc():
    message = api.to_proto(delivery(
        results=[{"license_id": "L1", "object_key": "k1", "revoked": True, "revoked_at": "", "expires_at": ""}],
        history=[{"status": domain.PREPARED, "at": "2026-11-27T09:00:00", "note": "", "by": ""}]))
    assert not message.results[0].HasField("revoked_at") and not message.results[0].HasField("expires_at")
    assert message.history[0].at.ToJsonString() == "2026-11-27T09:00:00Z"


@pytest.mark.parametrize("stored, number", [("EMS", pb.CARRIER_EMS), ("SF", pb.CARRIER_SF), ("JD", pb.CARRIER_JD),
                                            ("ZTO", pb.CARRIER_ZTO), ("YTO", pb.CARRIER_YTO),
                                            ("STO", pb.CARRIER_STO), ("YUNDA", pb.CARRIER_YUNDA)])
def test_the_stored_carrier_is_answered_as_its_enum(stored, number):
    assert api.to_proto(delivery(channel=domain.MAIL, status=domain.DISPATCHED, carrier=stored)).carrier == number


def test_a_delivery_without_a_carrier_answers_carrier_unspecified():
    assert api.to_proto(delivery()).carrier == pb.CARRIER_UNSPECIFIED


@pytest.fixture
def clerk():
    token = policy.bind(policy.Caller(Actor("clerk-7", "clerk", "", "440100"), "", "t", "/m"))
    yield
    policy.unbind(token)


@pytest.fixture
def mail(store):
    """The api over the use cases, a MAIL delivery waiting for its dispatch."""
    use_cases = handlers.Delivery(store, FakeBlobs(), pickup_code=lambda: CODE)
    use_cases.on_case_concluded(concluded(domain.MAIL, ADDRESS), licenses)
    return api.DeliveryApi(use_cases)


def test_a_dispatch_names_its_carrier_by_number_and_the_store_keeps_the_short_name(mail, store, bus, clerk):
    answer = mail.RecordDispatch(pb.RecordDispatchRequest(case_no=CASE, carrier=pb.CARRIER_EMS,
                                                          tracking_number="ea473124829cn"), None)
    assert answer.carrier == pb.CARRIER_EMS and answer.tracking_number == "EA473124829CN"
    assert answer.status == pb.DELIVERY_STATUS_DISPATCHED and answer.history[-1].HasField("at")
    assert store.get(CASE)["carrier"] == "EMS"
    [(_, sent, _)] = bus.published
    assert sent["carrier"] == "CARRIER_EMS"
    assert from_payload(events_pb2.DeliveryDispatched, sent).carrier == pb.CARRIER_EMS


def test_a_redispatch_names_its_carrier_by_number(mail, store, bus, clerk):
    mail.RecordDispatch(pb.RecordDispatchRequest(case_no=CASE, carrier=pb.CARRIER_EMS,
                                                 tracking_number="EA473124829CN"), None)
    mail.RecordUndeliverable(pb.RecordUndeliverableRequest(case_no=CASE, tracking_number="EA473124829CN",
                                                           reason="查无此人"), None)
    answer = mail.Redispatch(pb.RedispatchRequest(case_no=CASE, address=json_format.ParseDict(ADDRESS, Address()),
                                                  carrier=pb.CARRIER_SF, tracking_number="SF1234567890123"), None)
    assert answer.carrier == pb.CARRIER_SF and answer.attempt == 2 and store.get(CASE)["carrier"] == "SF"
    done = mail.RecordDelivered(pb.RecordDeliveredRequest(case_no=CASE, tracking_number="SF1234567890123",
                                                          signed_by="李华"), None)
    [payload] = [p for t, p, _ in bus.published if t == "delivery_completed"]
    completed = from_payload(events_pb2.DeliveryCompleted, payload)
    assert completed.completed_at == done.history[-1].at and completed.HasField("completed_at")
    assert wire.iso_of_timestamp(completed, "completed_at") == store.get(CASE)["history"][-1]["at"]


@pytest.mark.parametrize("number, words", [
    (99, "unknown carrier '99'; use one of EMS, SF, JD, ZTO, YTO, STO, YUNDA"),
    (-3, "unknown carrier '-3'; use one of EMS, SF, JD, ZTO, YTO, STO, YUNDA"),
    (pb.CARRIER_UNSPECIFIED, "unknown carrier ''; use one of EMS, SF, JD, ZTO, YTO, STO, YUNDA"),
])
def test_a_carrier_number_no_carrier_has_is_invalid_changes_nothing_and_is_audited(mail, store, bus, clerk, number,
                                                                                   words):
    before = copy.deepcopy(store.docs)
    with pytest.raises(InvalidArgument) as refused:
        mail.RecordDispatch(pb.RecordDispatchRequest(case_no=CASE, carrier=number, tracking_number="1234567890123"),
                            None)
    assert refused.value.message == words
    with pytest.raises(InvalidArgument, match="unknown carrier"):
        mail.Redispatch(pb.RedispatchRequest(case_no=CASE, address=json_format.ParseDict(ADDRESS, Address()),
                                             carrier=number, tracking_number="1234567890123"), None)
    assert store.docs == before and bus.published == []
    assert [(r["action"], r["outcome"]) for r in mail.delivery.audit.records] == [
        ("dispatch.record", "INVALID_ARGUMENT"), ("dispatch.redispatch", "INVALID_ARGUMENT")]


def test_the_server_refuses_a_carrier_number_carrier_does_not_declare_before_the_handler():
    """services.common.limits (the api server's walk of every request) answers first for a number no
    Carrier has; CARRIER_UNSPECIFIED passes it and reaches the handler (refused above)."""
    [violation] = limits.check_message(pb.RecordDispatchRequest(case_no=CASE, carrier=99, tracking_number="1"))
    assert violation.field == "carrier" and "onething.delivery.v1.Carrier" in violation.description
    assert limits.check_message(pb.RedispatchRequest(case_no=CASE, carrier=pb.CARRIER_UNSPECIFIED)) == []
