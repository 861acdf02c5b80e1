"""What delivery's api answers: the domain's delivery (status and channel as enums) encoded once
into the proto, exactly as the stored strings were before; a clerk's view without the code, the
links and the full identity number."""
from google.protobuf import json_format

from onething.delivery.v1 import delivery_pb2 as pb
from services.delivery import api, domain

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
    assert message.pickup_code == "" and message.results[0].download_url == "" and message.results[0].expires_at == ""
    assert message.applicant_id == "1101**********002X" and message.results[0].object_key == "k1"
