"""The generic conversions of the typed contracts (services/common/wire.py) that every service's
conversion module uses: ISO 8601 moments <-> google.protobuf.Timestamp and "YYYY-MM-DD" days <->
google.type.Date; round trips, unset values, naive moments as UTC, and values that are none refused
with a ValueError saying what they are not."""
import datetime
import re

import pytest
from google.protobuf import json_format, timestamp_pb2
from google.type import date_pb2

from onething.delivery.v1 import events_pb2
from services.common import wire

UTC = datetime.UTC
CST = datetime.timezone(datetime.timedelta(hours=8))


# --- moments ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kept", ["2026-11-27T09:00:00+00:00", "2026-11-27T02:30:15.123456+00:00",
                                  "1970-01-01T00:00:00+00:00", "0001-01-01T00:00:00+00:00",
                                  "9999-12-31T23:59:59.999999+00:00"])
def test_a_moment_round_trips_through_a_timestamp(kept):
    ts = wire.timestamp(kept)
    assert isinstance(ts, timestamp_pb2.Timestamp)
    assert ts.ToDatetime(tzinfo=UTC) == datetime.datetime.fromisoformat(kept)
    assert wire.iso(ts) == kept
    assert wire.timestamp(wire.iso(ts)) == ts


@pytest.mark.parametrize("given", ["2026-11-27T17:00:00+08:00", "2026-11-27T09:00:00Z", "2026-11-27T09:00:00",
                                   datetime.datetime(2026, 11, 27, 17, 0, tzinfo=CST),
                                   datetime.datetime(2026, 11, 27, 9, 0)])
def test_the_same_instant_whatever_its_offset_and_a_naive_moment_is_utc(given):
    ts = wire.timestamp(given)
    assert (ts.seconds, ts.nanos) == (1795770000, 0) and ts.ToJsonString() == "2026-11-27T09:00:00Z"
    assert wire.iso(ts) == "2026-11-27T09:00:00+00:00"


def test_a_moment_comes_back_in_the_zone_asked_for():
    ts = wire.timestamp("2026-11-27T09:00:00+00:00")
    assert wire.iso(ts, CST) == "2026-11-27T17:00:00+08:00"


def test_a_naive_moment_can_be_taken_in_another_zone_or_refused_as_ambiguous():
    assert wire.timestamp("2026-11-27T17:00:00", naive_tz=CST) == wire.timestamp("2026-11-27T09:00:00Z")
    with pytest.raises(ValueError, match=r"2026-11-27T09:00:00 has no offset: .* ambiguous"):
        wire.timestamp("2026-11-27T09:00:00", naive_tz=None)
    assert wire.timestamp("2026-11-27T09:00:00Z", naive_tz=None) is not None


@pytest.mark.parametrize("nothing", [None, ""])
def test_no_moment_is_an_unset_timestamp_and_unset_is_empty(nothing):
    assert wire.timestamp(nothing) is None and wire.rfc3339(nothing) is None
    assert wire.iso(None) == ""
    message = events_pb2.DeliveryCompleted(completed_at=wire.timestamp(nothing))
    assert not message.HasField("completed_at") and wire.field(message, "completed_at") is None
    assert wire.iso(wire.field(message, "completed_at")) == ""


def test_the_epoch_is_a_moment_not_unset():
    assert wire.iso(timestamp_pb2.Timestamp()) == "1970-01-01T00:00:00+00:00"


def test_the_rfc3339_form_is_what_json_format_reads():
    assert wire.rfc3339("2026-11-27T17:00:00.5+08:00") == "2026-11-27T09:00:00.500Z"
    parsed = json_format.ParseDict({"completed_at": wire.rfc3339("2026-11-27T09:00:00+00:00")},
                                   events_pb2.DeliveryCompleted())
    assert wire.field(parsed, "completed_at") == wire.timestamp("2026-11-27T09:00:00+00:00")


@pytest.mark.parametrize("bad", ["yesterday", "27/11/2026", "2026-13-01T00:00:00+00:00", "2026-11-27T25:00:00+00:00"])
def test_a_string_that_is_no_moment_is_refused_saying_so(bad):
    with pytest.raises(ValueError, match=re.escape(f"'{bad}' is not an RFC 3339 moment (such as ")):
        wire.timestamp(bad)


@pytest.mark.parametrize("bad, says", [(42, "42 is not an RFC 3339 moment: a int, not a string or datetime"),
                                       (datetime.date(2026, 11, 27), "is not an RFC 3339 moment: a date, not a string")])
def test_what_is_no_string_or_datetime_is_refused(bad, says):
    with pytest.raises(ValueError, match=says):
        wire.timestamp(bad)


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+08:00", "9999-12-31T23:59:59-08:00"])
def test_a_moment_a_timestamp_cannot_hold_is_refused(moment):
    with pytest.raises(ValueError, match=re.escape(f"the moment {moment} is out of range")):
        wire.timestamp(moment)


@pytest.mark.parametrize("seconds, nanos", [(253402300800, 0), (-62135596801, 0), (0, -1), (0, 1_000_000_000)])
def test_a_timestamp_out_of_its_range_is_refused(seconds, nanos):
    with pytest.raises(ValueError, match=f"seconds {seconds}, nanos {nanos} is out of range"):
        wire.iso(timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos))


def test_a_timestamp_the_zone_asked_for_cannot_show_is_refused():
    last = timestamp_pb2.Timestamp(seconds=253402300000)  # 9999-12-31 in UTC, 10000 in China
    assert wire.iso(last).startswith("9999-12-31T")
    with pytest.raises(ValueError, match="out of range"):
        wire.iso(last, CST)


# --- calendar days ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kept", ["2026-11-27", "2024-02-29", "0001-01-01", "9999-12-31"])
def test_a_day_round_trips_through_a_date(kept):
    d = wire.date(kept)
    assert isinstance(d, date_pb2.Date) and (d.year, d.month, d.day) == tuple(int(p) for p in kept.split("-"))
    assert wire.day(d) == kept
    assert wire.date(datetime.date.fromisoformat(kept)) == d
    assert json_format.MessageToDict(d) == {"year": d.year, "month": d.month, "day": d.day}


@pytest.mark.parametrize("nothing", [None, ""])
def test_no_day_is_an_unset_date_and_unset_or_all_zero_is_empty(nothing):
    assert wire.date(nothing) is None
    assert wire.day(None) == "" and wire.day(date_pb2.Date()) == ""


@pytest.mark.parametrize("bad, says", [("2026-02-30", "'2026-02-30' is not a date of the calendar"),
                                       ("2025-02-29", "'2025-02-29' is not a date of the calendar"),
                                       ("2026/11/27", "'2026/11/27' is not a date \\(YYYY-MM-DD\\)"),
                                       ("20261127", "'20261127' is not a date \\(YYYY-MM-DD\\)"),
                                       ("2026-11-27T00:00:00+08:00", "is not a date \\(YYYY-MM-DD\\)"),
                                       ("長期", "'長期' is not a date"), (20261127, "20261127 is not a date")])
def test_what_is_no_day_is_refused_saying_so(bad, says):
    with pytest.raises(ValueError, match=says):
        wire.date(bad)


@pytest.mark.parametrize("ymd", [(2026, 2, 30), (2026, 13, 1), (2026, 0, 1), (2026, 11, 0), (0, 11, 27),
                                 (10000, 1, 1), (2026, -1, 5), (-2147483648, -1, 2147483647)])
def test_a_date_that_is_no_day_of_the_calendar_is_refused(ymd):
    year, month, day = ymd
    with pytest.raises(ValueError, match="is not a date of the calendar"):
        wire.day(date_pb2.Date(year=year, month=month, day=day))
