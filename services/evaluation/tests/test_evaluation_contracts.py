"""The typed contract values and the plain ones the domain and the store keep
(services/evaluation/contracts.py): moments <-> google.protobuf.Timestamp, days <-> google.type.Date,
the channel <-> onething.evaluation.v1.Channel; round trips, unset values, requests out of range;
and the api's messages built from ratings as they are stored."""
import datetime as dt

import pytest
from google.protobuf import json_format, timestamp_pb2
from google.type import date_pb2

from onething.evaluation.v1 import evaluation_pb2 as pb
from onething.evaluation.v1 import events_pb2
from services.common.errors import InvalidArgument
from services.evaluation import api, contracts
from services.evaluation.domain import Grade, RectificationStatus

UTC = dt.UTC


# -- the channel -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, number", [("online", pb.CHANNEL_ONLINE), ("window", pb.CHANNEL_WINDOW),
                                          ("", pb.CHANNEL_UNSPECIFIED)])
def test_channel_round_trip(text, number):
    assert contracts.channel_to_proto(text) == number
    assert contracts.channel_from_proto(number) == text


def test_the_channel_table_is_explicit_and_covers_every_declared_value():
    assert contracts.CHANNEL_PROTO == {"online": 1, "window": 2}
    declared = {v.number for v in pb.Channel.DESCRIPTOR.values} - {pb.CHANNEL_UNSPECIFIED}
    assert set(contracts.CHANNEL_PROTO.values()) == declared
    assert contracts.channel_name("window") == "CHANNEL_WINDOW" and contracts.channel_name("") == "CHANNEL_UNSPECIFIED"


@pytest.mark.parametrize("number", [3, -1, 77])
def test_an_unknown_channel_number_is_refused_naming_the_values(number):
    with pytest.raises(InvalidArgument) as err:
        contracts.channel_from_proto(number)
    assert err.value.message == f"channel must be one of CHANNEL_ONLINE, CHANNEL_WINDOW (or unset), not {number}"


def test_a_channel_never_stored_is_not_encoded_as_another():
    with pytest.raises(KeyError):
        contracts.channel_to_proto("phone")


# -- moments ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("stored", ["2024-03-04T02:00:00+00:00", "2024-03-04T02:00:00.123456+00:00"])
def test_a_moment_round_trip(stored):
    stamp = contracts.timestamp_of(stored)
    assert isinstance(stamp, timestamp_pb2.Timestamp)
    assert contracts.iso_of(stamp) == stored
    assert stamp.ToDatetime(tzinfo=UTC) == dt.datetime.fromisoformat(stored)


def test_a_moment_with_another_offset_is_the_same_instant_in_utc():
    stamp = contracts.timestamp_of("2024-03-04T10:00:00+08:00")
    assert stamp.ToJsonString() == "2024-03-04T02:00:00Z"
    assert contracts.iso_of(stamp) == "2024-03-04T02:00:00+00:00"
    assert contracts.timestamp_of(dt.datetime(2024, 3, 4, 2, tzinfo=UTC)) == stamp


def test_an_unset_moment():
    assert contracts.timestamp_of("") is None and contracts.timestamp_of(None) is None
    assert contracts.iso_of(None) == ""


def test_a_moment_without_an_offset_is_ambiguous():
    with pytest.raises(ValueError, match="ambiguous"):
        contracts.timestamp_of("2024-03-04T02:00:00")


# -- days ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("day", ["2024-03-11", "2024-02-29", "0001-01-01", "9999-12-31"])
def test_a_day_round_trip(day):
    date = contracts.date_of(day)
    assert isinstance(date, date_pb2.Date)
    assert contracts.day_of(date) == day
    assert contracts.date_of(dt.date.fromisoformat(day)) == date


def test_a_day_in_json_is_year_month_day():
    assert json_format.MessageToDict(contracts.date_of("2024-03-11")) == {"year": 2024, "month": 3, "day": 11}


def test_an_unset_day():
    assert contracts.date_of("") is None and contracts.date_of(None) is None
    assert contracts.day_of(None) == "" and contracts.day_of(date_pb2.Date()) == ""
    assert contracts.request_day(pb.GetStatisticsRequest(), "rated_from") == ""


@pytest.mark.parametrize("date, says", [
    (date_pb2.Date(year=2024, month=13, day=1), "month 1 to 12, not 13"),
    (date_pb2.Date(year=2024, month=0, day=1), "month 1 to 12, not 0"),
    (date_pb2.Date(year=2024, month=2, day=30), "2024-02-30 is not a real date"),
    (date_pb2.Date(year=2023, month=2, day=29), "2023-02-29 is not a real date"),
    (date_pb2.Date(year=2024, month=3, day=0), "is not a real date"),
    (date_pb2.Date(year=2024, month=3, day=-1), "is not a real date"),
    (date_pb2.Date(year=0, month=3, day=11), "year 1 to 9999, not 0"),
    (date_pb2.Date(year=10000, month=1, day=1), "year 1 to 9999, not 10000"),
    (date_pb2.Date(year=-2147483648, month=-1, day=2147483647), "year 1 to 9999"),
])
def test_a_day_out_of_range_is_refused_naming_the_field(date, says):
    with pytest.raises(InvalidArgument) as err:
        contracts.request_day(pb.GetStatisticsRequest(rated_to=date), "rated_to")
    assert err.value.message.startswith("rated_to ") and says in err.value.message


# -- the api's messages, from ratings as they are stored --------------------------------------------

def stored_bad_rating():
    """A 差评 as handlers return it (and the store reads back): moments and days as strings."""
    rect = {"case_no": "C1", "channel": "window", "department_code": "wsjk", "region_code": "440100",
            "package_code": "XSECS", "grade": Grade.DISSATISFIED, "comment": "态度差",
            "opened_at": "2024-03-04T10:00:00+08:00", "deadline": "2024-03-11", "deadline_provisional": False,
            "status": RectificationStatus.CLOSED,
            "callbacks": [{"at": "2024-03-06T03:00:00.5+00:00", "by": "staff-1", "note": "已回访"}],
            "closed_at": "2024-03-11T15:00:00+00:00", "closed_by": "chief-1", "result": "已整改", "on_time": True}
    return {"case_no": "C1", "applicant_id": "11010519491231002X", "channel": "window", "grade": Grade.DISSATISFIED,
            "dimensions": {"态度": 1}, "comment": "态度差", "bad_review": True, "satisfied": False,
            "rated_at": "2024-03-04T02:00:00+00:00", "rated_on": "2024-03-04", "department_code": "wsjk",
            "region_code": "440100", "package_code": "XSECS", "rectification": rect}


def test_a_stored_rating_reads_as_typed_values():
    message = api.to_proto(stored_bad_rating())
    assert message.channel == pb.CHANNEL_WINDOW and message.grade == pb.GRADE_DISSATISFIED
    assert message.rated_at.ToDatetime(tzinfo=UTC) == dt.datetime(2024, 3, 4, 2, tzinfo=UTC)
    rect = message.rectification
    assert rect.channel == pb.CHANNEL_WINDOW and rect.status == pb.RECTIFICATION_STATUS_CLOSED
    assert rect.opened_at.ToJsonString() == "2024-03-04T02:00:00Z"
    assert (rect.deadline.year, rect.deadline.month, rect.deadline.day) == (2024, 3, 11)
    assert rect.closed_at.ToJsonString() == "2024-03-11T15:00:00Z" and rect.on_time
    [call] = rect.callbacks
    assert (call.by, call.note, call.at.ToJsonString()) == ("staff-1", "已回访", "2024-03-06T03:00:00.500Z")


def test_what_is_not_there_stays_unset():
    body = stored_bad_rating()
    body["rectification"].update(status=RectificationStatus.OPEN, closed_at="", closed_by="", result="",
                                 on_time=False, callbacks=[{"by": "staff-1", "note": "无时间的旧记录"}])
    rect = api.rectification(body["rectification"])
    assert not rect.HasField("closed_at") and rect.HasField("opened_at") and rect.HasField("deadline")
    assert not rect.callbacks[0].HasField("at")
    del body["rectification"]
    message = api.to_proto(dict(body, rated_at="", channel=""))
    assert not message.HasField("rated_at") and not message.HasField("rectification")
    assert message.channel == pb.CHANNEL_UNSPECIFIED


def test_the_events_carry_typed_values_that_read_back():
    opened = events_pb2.BadReviewOpened(channel=contracts.channel_to_proto("online"),
                                        deadline=contracts.date_of("2024-03-11"),
                                        opened_at=contracts.timestamp_of("2024-03-04T02:00:00+00:00"))
    payload = json_format.MessageToDict(opened, preserving_proto_field_name=True)
    assert payload == {"channel": "CHANNEL_ONLINE", "deadline": {"year": 2024, "month": 3, "day": 11},
                       "opened_at": "2024-03-04T02:00:00Z"}
    back = json_format.ParseDict(payload, events_pb2.BadReviewOpened())
    assert contracts.channel_from_proto(back.channel) == "online" and contracts.day_of(back.deadline) == "2024-03-11"
    assert contracts.iso_of(back.opened_at) == "2024-03-04T02:00:00+00:00"
