"""delivery's values on the wire and in the store: ISO strings <-> google.protobuf.Timestamp
(services.delivery.wire) and carriers' short names <-> onething.delivery.v1.Carrier (the explicit
table in services.delivery.domain), both ways, unset values and numbers no carrier has."""
import pytest

from onething.delivery.v1 import delivery_pb2 as pb
from onething.delivery.v1 import events_pb2
from services.common.errors import InvalidArgument
from services.common.events import from_payload, to_payload
from services.delivery import domain, wire


@pytest.mark.parametrize("text, seconds, nanos", [
    ("2026-11-27T09:00:00+00:00", 1795770000, 0),
    ("2026-11-27T09:00:00.123456+00:00", 1795770000, 123456000),
    ("2026-11-27T17:00:00+08:00", 1795770000, 0),          # an offset: the same moment
    ("2026-11-27T09:00:00Z", 1795770000, 0),
    ("2026-11-27T09:00:00", 1795770000, 0),                # no offset: UTC
])
def test_an_iso_moment_becomes_a_timestamp(text, seconds, nanos):
    ts = wire.timestamp_of_iso(text)
    assert (ts.seconds, ts.nanos) == (seconds, nanos)


@pytest.mark.parametrize("text", ["2026-11-27T09:00:00+00:00", "2026-11-27T09:00:00.123456+00:00",
                                  "1970-01-01T00:00:00+00:00", "9999-12-31T23:59:59.999999+00:00"])
def test_a_stored_moment_survives_the_round_trip(text):
    message = events_pb2.DeliveryCompleted(completed_at=wire.timestamp_of_iso(text))
    assert wire.iso_of_timestamp(message, "completed_at") == text
    again = from_payload(events_pb2.DeliveryCompleted, to_payload(message))  # over the bus, as JSON
    assert wire.iso_of_timestamp(again, "completed_at") == text


def test_an_empty_moment_is_unset_and_an_unset_one_empty():
    assert wire.timestamp_of_iso("") is None and wire.timestamp_of_iso(None) is None
    assert wire.rfc3339_of_iso("") is None
    message = events_pb2.DeliveryCompleted(completed_at=wire.timestamp_of_iso(""))
    assert not message.HasField("completed_at")
    assert wire.iso_of_timestamp(message, "completed_at") == ""
    assert "completed_at" not in to_payload(message)


def test_the_rfc3339_form_is_what_json_gives_back():
    assert wire.rfc3339_of_iso("2026-11-27T17:00:00.5+08:00") == "2026-11-27T09:00:00.500Z"
    message = events_pb2.DeliveryCompleted(completed_at=wire.timestamp_of_iso("2026-11-27T09:00:00+00:00"))
    assert to_payload(message)["completed_at"] == "2026-11-27T09:00:00Z"


def test_a_moment_that_is_not_one_is_refused():
    with pytest.raises(ValueError):
        wire.timestamp_of_iso("27/11/2026")


# -- carriers ----------------------------------------------------------------------------------

def test_every_carrier_has_its_number_and_the_table_matches_the_proto():
    assert list(domain.CARRIER_NUMBERS) == list(domain.CARRIERS)
    assert {c: pb.Carrier.Value(f"CARRIER_{c}") for c in domain.CARRIERS} == domain.CARRIER_NUMBERS
    assert {v.number for v in pb.Carrier.DESCRIPTOR.values} == {0, *domain.CARRIER_NUMBERS.values()}


@pytest.mark.parametrize("carrier", list(domain.CARRIERS))
def test_a_carrier_round_trips_through_its_number(carrier):
    assert domain.carrier_of_number(domain.carrier_number(carrier)) == carrier


def test_no_carrier_is_number_zero_both_ways():
    assert domain.carrier_number("") == pb.CARRIER_UNSPECIFIED
    assert domain.carrier_of_number(pb.CARRIER_UNSPECIFIED) == ""


def test_a_stored_carrier_this_code_does_not_know_is_an_error_not_a_guess():
    with pytest.raises(ValueError, match="DHL"):
        domain.carrier_number("DHL")


@pytest.mark.parametrize("number", [8, 99, -1, 2 ** 31 - 1])
def test_a_number_no_carrier_has_is_refused_naming_the_carriers(number):
    carrier = domain.carrier_of_number(number)
    with pytest.raises(InvalidArgument) as refused:
        domain.normalise_tracking(carrier, "1234567890123")
    assert refused.value.message == (f"unknown carrier '{number}'; use one of EMS, SF, JD, ZTO, YTO, STO, YUNDA")


def test_carrier_unspecified_is_refused_as_no_carrier_was():
    with pytest.raises(InvalidArgument, match="unknown carrier ''; use one of EMS, SF"):
        domain.normalise_tracking(domain.carrier_of_number(pb.CARRIER_UNSPECIFIED), "1234567890123")


def test_the_tracking_number_check_is_the_same_for_a_carrier_named_by_number():
    assert domain.normalise_tracking(domain.carrier_of_number(pb.CARRIER_EMS), "ea473124829cn") == (
        "EMS", "EA473124829CN")
