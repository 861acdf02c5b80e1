"""Delivery rules: the statuses of each channel, pickup codes, carriers' tracking numbers, and
the order a WINDOW or MAIL delivery must move in."""
import pytest

from services.common.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from services.delivery import domain


def test_steps_of_each_channel():
    assert domain.steps_for(domain.ELECTRONIC) == [domain.PREPARED, domain.DISPATCHED, domain.COMPLETED]
    assert domain.steps_for(domain.WINDOW) == [domain.PREPARED, domain.READY_FOR_PICKUP]
    assert domain.steps_for(domain.MAIL) == [domain.PREPARED]


def test_pickup_codes_are_six_digits_and_vary():
    codes = {domain.new_pickup_code() for _ in range(200)}
    assert all(len(c) == 6 and c.isdigit() for c in codes)
    assert len(codes) > 150  # random, not a counter or a constant


def test_s10_check_digit_of_the_upu_example():
    # UPU S10 example number AA 47312482 9 GB
    assert domain.s10_check_digit("47312482") == 9


@pytest.mark.parametrize("carrier, number, expected", [
    ("EMS", "1234567890123", ("EMS", "1234567890123")),
    ("ems", " ea473124829cn ", ("EMS", "EA473124829CN")),
    ("SF", "SF1234567890123", ("SF", "SF1234567890123")),
    ("SF", "SF 123456789012", ("SF", "SF123456789012")),
    ("JD", "JDVA12345678901", ("JD", "JDVA12345678901")),
    ("ZTO", "73100012345678", ("ZTO", "73100012345678")),
])
def test_tracking_numbers_accepted(carrier, number, expected):
    assert domain.normalise_tracking(carrier, number) == expected


@pytest.mark.parametrize("carrier, number, words", [
    ("EMS", "123456789012", "not a EMS tracking number"),
    ("EMS", "EA473124828CN", "check digit"),
    ("SF", "SF12345", "not a SF tracking number"),
    ("SF", "", "not a SF tracking number"),
    ("ZTO", "12345-67890", "not a ZTO"),
    ("DHL", "1234567890", "unknown carrier 'DHL'"),
    ("", "1234567890123", "unknown carrier"),
])
def test_tracking_numbers_refused(carrier, number, words):
    with pytest.raises(InvalidArgument, match=words):
        domain.normalise_tracking(carrier, number)


def window(status=domain.READY_FOR_PICKUP, code="042517"):
    return {"case_no": "C1", "channel": domain.WINDOW, "status": status, "pickup_code": code}


def mail(status=domain.PREPARED, **extra):
    return {"case_no": "C1", "channel": domain.MAIL, "status": status, **extra}


def test_pickup_with_the_right_code():
    domain.check_pickup(window(), "042517")
    domain.check_pickup(window(), " 042517 ")


@pytest.mark.parametrize("code", ["042518", "42517", "", None, "0425170"])
def test_pickup_with_a_wrong_code_is_denied(code):
    with pytest.raises(PermissionDenied, match="does not match"):
        domain.check_pickup(window(), code)


def test_pickup_twice_or_of_another_channel_is_out_of_order():
    with pytest.raises(FailedPrecondition, match="already been picked up"):
        domain.check_pickup(window(domain.COMPLETED), "042517")
    with pytest.raises(FailedPrecondition, match="MAIL"):
        domain.check_pickup(mail(), "042517")
    with pytest.raises(FailedPrecondition, match="not ready"):
        domain.check_pickup(window(domain.PREPARED), "042517")


def test_a_delivery_without_a_code_never_matches_an_empty_one():
    with pytest.raises(PermissionDenied):
        domain.check_pickup(window(code=""), "")


def test_dispatch_order():
    domain.check_dispatch(mail())
    with pytest.raises(FailedPrecondition, match="already been dispatched"):
        domain.check_dispatch(mail(domain.DISPATCHED, carrier="EMS", tracking_number="1234567890123"))
    with pytest.raises(FailedPrecondition, match="failed: bad address"):
        domain.check_dispatch(mail(domain.FAILED, failure_reason="bad address"))
    with pytest.raises(FailedPrecondition, match="WINDOW"):
        domain.check_dispatch(window())


def test_delivered_order_and_tracking_number():
    sent = mail(domain.DISPATCHED, tracking_number="SF1234567890123")
    domain.check_delivered(sent, "sf1234567890123")
    with pytest.raises(InvalidArgument, match="not the one recorded"):
        domain.check_delivered(sent, "SF1234567890124")
    with pytest.raises(FailedPrecondition, match="not been dispatched"):
        domain.check_delivered(mail(), "SF1234567890123")
    with pytest.raises(FailedPrecondition, match="already been delivered"):
        domain.check_delivered(mail(domain.COMPLETED, tracking_number="SF1234567890123"), "SF1234567890123")
    with pytest.raises(FailedPrecondition, match="ELECTRONIC"):
        domain.check_delivered({"case_no": "C1", "channel": domain.ELECTRONIC, "status": domain.COMPLETED}, "x")


# --- the enums on the wire and in the store -----------------------------------------------------


def test_every_status_and_channel_has_its_proto_number():
    from onething.common.v1 import common_pb2
    from onething.delivery.v1 import delivery_pb2
    assert {s: delivery_pb2.DeliveryStatus.Value(f"DELIVERY_STATUS_{s}") for s in domain.Status} == domain.STATUS_NUMBERS
    assert set(domain.STATUS_NUMBERS.values()) == set(delivery_pb2.DeliveryStatus.values()) - {0}
    assert {c: common_pb2.DeliveryChannel.Value(f"DELIVERY_CHANNEL_{c}") for c in domain.Channel} == \
        domain.CHANNEL_NUMBERS
    assert set(domain.CHANNEL_NUMBERS.values()) == set(common_pb2.DeliveryChannel.values())
    assert domain.channel_of_number(3) is domain.MAIL and domain.channel_of_number(99) is domain.Channel.UNSPECIFIED


def test_stored_strings_are_those_the_collection_has_always_held():
    assert domain.STORED_STATUSES == {
        domain.PREPARED: "DELIVERY_STATUS_PREPARED", domain.DISPATCHED: "DELIVERY_STATUS_DISPATCHED",
        domain.COMPLETED: "DELIVERY_STATUS_COMPLETED", domain.READY_FOR_PICKUP: "DELIVERY_STATUS_READY_FOR_PICKUP",
        domain.FAILED: "DELIVERY_STATUS_FAILED", domain.CANCELLED: "DELIVERY_STATUS_CANCELLED"}
    assert domain.STORED_CHANNELS == {
        domain.Channel.UNSPECIFIED: "DELIVERY_CHANNEL_UNSPECIFIED", domain.ELECTRONIC: "DELIVERY_CHANNEL_ELECTRONIC",
        domain.WINDOW: "DELIVERY_CHANNEL_WINDOW", domain.MAIL: "DELIVERY_CHANNEL_MAIL"}
    for status, text in domain.STORED_STATUSES.items():
        assert domain.status_of_stored(text) is status
    for channel, text in domain.STORED_CHANNELS.items():
        assert domain.channel_of_stored(text) is channel
    with pytest.raises(ValueError, match="not a stored delivery status"):
        domain.status_of_stored("PREPARED")
    with pytest.raises(ValueError, match="not a stored delivery channel"):
        domain.channel_of_stored("DELIVERY_CHANNEL_PIGEON")


def test_refusals_name_the_channel_and_status_in_plain_words():
    with pytest.raises(FailedPrecondition, match=r"delivered by ELECTRONIC, so it cannot be picked up"):
        domain.check_pickup({"case_no": "C1", "channel": domain.ELECTRONIC, "status": domain.COMPLETED}, "1")
    with pytest.raises(FailedPrecondition, match=r"has not failed \(DISPATCHED\); only a failed"):
        domain.check_redispatch(mail(domain.DISPATCHED))
