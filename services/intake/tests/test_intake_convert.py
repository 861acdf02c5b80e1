"""The contracts' typed values and intake's domain values (services/intake/convert.py): moments as
Timestamps and the RFC 3339 strings the domain keeps, days as google.type.Date and "YYYY-MM-DD",
the enums of the events intake reads and the domain's words; each way, unset, and values that are
none. Then the places that use them: the case as the api sends it, the events as the worker
decodes them, the licences as elicense lists them."""
import dataclasses
import datetime

import pytest
from google.protobuf import json_format, timestamp_pb2
from google.type import date_pb2

from onething.delivery.v1 import delivery_pb2
from onething.delivery.v1 import events_pb2 as delivery_events
from onething.elicense.v1 import elicense_pb2
from onething.evaluation.v1 import evaluation_pb2
from onething.evaluation.v1 import events_pb2 as evaluation_events
from onething.intake.v1 import intake_pb2
from onething.joint_review.v1 import events_pb2 as review_events
from onething.joint_review.v1 import joint_review_pb2
from services.common.errors import InvalidArgument
from services.common.events import to_payload
from services.intake import convert, domain, worker
from services.intake.api import case_to_proto
from services.intake.elicense_client import ElicenseClient, licence_dict

UTC = datetime.UTC


# --- moments ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kept, back", [
    ("2026-11-26T02:00:00+00:00", "2026-11-26T02:00:00+00:00"),
    ("2026-11-26T10:00:00+08:00", "2026-11-26T02:00:00+00:00"),           # the same moment, in UTC
    ("2026-11-26T02:00:00.123456+00:00", "2026-11-26T02:00:00.123456+00:00"),
    ("2026-11-26T02:00:00Z", "2026-11-26T02:00:00+00:00"),
    ("2026-11-26T02:00:00", "2026-11-26T02:00:00+00:00"),                 # no offset: UTC
])
def test_a_moment_goes_into_a_timestamp_and_comes_back_as_the_domain_writes_it(kept, back):
    ts = convert.timestamp(kept)
    change = intake_pb2.StatusChange(at=ts)
    assert convert.iso(change, "at") == back
    assert convert.timestamp(back) == ts  # and round again: the same Timestamp


def test_a_domain_moment_written_by_isoformat_round_trips_exactly():
    now = datetime.datetime(2026, 11, 26, 2, 0, 0, 500, tzinfo=UTC)
    change = intake_pb2.StatusChange(at=convert.timestamp(now.isoformat()))
    assert convert.iso(change, "at") == now.isoformat()


def test_a_datetime_goes_into_a_timestamp_naive_ones_as_utc():
    aware = datetime.datetime(2026, 11, 26, 10, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=8)))
    naive = datetime.datetime(2026, 11, 26, 2, 0)  # as MongoDB gives a stored datetime back
    assert convert.timestamp(aware) == convert.timestamp(naive)
    assert convert.timestamp(naive).ToJsonString() == "2026-11-26T02:00:00Z"


@pytest.mark.parametrize("nothing", [None, ""])
def test_no_moment_is_an_unset_timestamp_and_an_unset_one_is_empty(nothing):
    assert convert.timestamp(nothing) is None
    change = intake_pb2.StatusChange(at=convert.timestamp(nothing))
    assert not change.HasField("at") and convert.iso(change, "at") == ""
    assert json_format.MessageToDict(change) == {}


@pytest.mark.parametrize("bad", ["t0", "26/11/2026", "2026-11-26T25:00:00+00:00", 42])
def test_what_is_no_moment_is_refused_by_name(bad):
    with pytest.raises(InvalidArgument, match="submitted_at must be"):
        convert.timestamp(bad, "submitted_at")
    assert convert.shown_timestamp(bad, "submitted_at") is None  # shown: unset, not a failed case


def test_a_timestamp_out_of_range_is_refused():
    change = intake_pb2.StatusChange(at=timestamp_pb2.Timestamp(seconds=400_000_000_000))  # year ~14645
    with pytest.raises(InvalidArgument, match="at is out of range"):
        convert.iso(change, "at")


# --- days ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["2026-12-03", "2024-02-29", "0001-01-01", "9999-12-31"])
def test_a_day_round_trips_through_a_date(text):
    d = convert.date(text)
    assert (d.year, d.month, d.day) == tuple(int(p) for p in text.split("-"))
    opened = evaluation_events.BadReviewOpened(deadline=d)
    assert convert.day(opened, "deadline") == text
    assert json_format.MessageToDict(opened)["deadline"] == {"year": d.year, "month": d.month, "day": d.day}


def test_no_day_is_an_unset_date_and_an_unset_or_zero_one_is_empty():
    assert convert.date("") is None and convert.date(None) is None
    assert convert.day(evaluation_events.BadReviewOpened(), "deadline") == ""
    assert convert.day(evaluation_events.BadReviewOpened(deadline=date_pb2.Date()), "deadline") == ""
    assert convert.date(datetime.date(2026, 12, 3)) == date_pb2.Date(year=2026, month=12, day=3)


@pytest.mark.parametrize("bad", ["2026-13-01", "2026-02-30", "03.12.2026", "tomorrow"])
def test_what_is_no_day_is_refused_by_name(bad):
    with pytest.raises(InvalidArgument, match="deadline must be a day as YYYY-MM-DD"):
        convert.date(bad, "deadline")


@pytest.mark.parametrize("y, m, d", [(2026, 13, 1), (2026, 2, 30), (0, 12, 3), (2026, 0, 0)])
def test_a_date_that_is_no_whole_day_is_refused(y, m, d):
    with pytest.raises(InvalidArgument, match="deadline must be a whole calendar day"):
        convert.day(evaluation_events.BadReviewOpened(deadline=date_pb2.Date(year=y, month=m, day=d)), "deadline")


# --- enums -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("table, enum", [
    (convert.SESSION_KIND_WORDS, review_events.SessionKind),
    (convert.CHANNEL_WORDS, evaluation_pb2.Channel),
    (convert.CARRIER_WORDS, delivery_pb2.Carrier),
])
def test_every_value_of_an_enum_has_its_word_and_back(table, enum):
    assert set(table) == {v.number for v in enum.DESCRIPTOR.values} - {0}  # a new value needs its word
    for number, word in table.items():
        assert convert.word(table, number) == word
        assert convert.number(table, word, "x") == number
    assert convert.word(table, 0) == "" and convert.number(table, "", "x") == 0


def test_the_conclusions_a_withdrawal_can_void_have_their_words():
    assert convert.OVERRIDDEN_WORDS == {joint_review_pb2.SESSION_STATUS_APPROVED: "approved",
                                        joint_review_pb2.SESSION_STATUS_REJECTED: "rejected"}
    assert convert.word(convert.OVERRIDDEN_WORDS, joint_review_pb2.SESSION_STATUS_OPEN) == ""


def test_an_unknown_enum_number_is_no_word_and_an_unknown_word_is_refused():
    assert convert.word(convert.CHANNEL_WORDS, 99) == ""
    with pytest.raises(InvalidArgument, match="channel must be one of online, window, not 'phone'"):
        convert.number(convert.CHANNEL_WORDS, "phone", "channel")


# --- the case as the api sends it ------------------------------------------------------------------

def _case(**fields):
    at = datetime.datetime(2026, 11, 26, 2, 0, tzinfo=UTC)
    base = dict(case_no="440100XSECS202611260001", package_code="XSECS", package_version=3, region_code="440100",
                applicant={"id_number": "X"}, status=domain.SUBMITTED, submitted_at=at,
                history=[domain.HistoryEntry(domain.SUBMITTED, at.isoformat(), "submitted")])
    return domain.Case(**dict(base, **fields))


def test_the_case_sends_its_moments_as_timestamps_and_json_as_rfc3339():
    shown = json_format.MessageToDict(case_to_proto(_case()), preserving_proto_field_name=True)
    assert shown["submitted_at"] == "2026-11-26T02:00:00Z"
    assert shown["history"][0]["at"] == "2026-11-26T02:00:00Z"


def test_a_stored_naive_submission_time_is_utc():
    shown = case_to_proto(_case(submitted_at=datetime.datetime(2026, 11, 26, 2, 0)))
    assert shown.submitted_at.ToDatetime(tzinfo=UTC) == datetime.datetime(2026, 11, 26, 2, 0, tzinfo=UTC)


def test_a_history_entry_or_request_without_a_moment_sends_it_unset():
    rect = {"material_codes": ["M02"], "resume_status": domain.SUBMITTED,
            "requests": [{"item_code": "I1", "department_code": "gaj", "material_codes": ["M02"], "round": 1},
                         {"item_code": "I2", "department_code": "gaj", "material_codes": ["M02"], "at": "",
                          "round": 1},
                         {"item_code": "I3", "department_code": "gaj", "material_codes": ["M02"],
                          "at": "2026-11-26T03:00:00+00:00", "round": 1}]}
    case = _case(status=domain.RECTIFYING, rectification=rect,
                 history=[domain.HistoryEntry(domain.SUBMITTED, "", "submitted")])
    shown = case_to_proto(case)
    assert not shown.history[0].HasField("at")
    assert [r.HasField("at") for r in shown.rectification.requests] == [False, False, True]
    assert shown.rectification.requests[2].at.ToJsonString() == "2026-11-26T03:00:00Z"
    assert [r.item_code for r in shown.rectification.requests] == ["I1", "I2", "I3"]
    assert case.rectification == rect  # the domain's value is left as it is


def test_the_case_as_stored_is_unchanged_by_sending_it():
    case = _case()
    before = dataclasses.asdict(case)
    case_to_proto(case)
    assert dataclasses.asdict(case) == before and isinstance(case.history[0].at, str)


# --- the events as the worker decodes them ---------------------------------------------------------

def test_a_session_concluded_decodes_kind_and_moment_into_the_domain_words():
    got = worker.session_concluded(to_payload(review_events.SessionConcluded(
        case_no="C", kind=review_events.SESSION_KIND_ACCEPTANCE, passed=True,
        concluded_at=convert.timestamp("2026-11-27T10:00:00+08:00"))))
    assert got == domain.SessionConcluded(case_no="C", kind="ACCEPTANCE", passed=True,
                                          concluded_at="2026-11-27T02:00:00+00:00")


def test_a_session_concluded_without_kind_or_moment_decodes_to_empty():
    assert worker.session_concluded(to_payload(review_events.SessionConcluded(case_no="C", report_key="r"))) == \
        domain.SessionConcluded(case_no="C", report_key="r")


def test_a_bad_review_decodes_channel_and_deadline_and_without_them_empty():
    opened = evaluation_events.BadReviewOpened(case_no="C", channel=evaluation_pb2.CHANNEL_WINDOW,
                                               department_code="wsjk", deadline=convert.date("2026-12-03"))
    assert worker.bad_review_opened(to_payload(opened)) == domain.BadReviewOpened(
        case_no="C", channel="window", department_code="wsjk", deadline="2026-12-03")
    assert worker.bad_review_opened(to_payload(evaluation_events.BadReviewOpened(case_no="C"))) == \
        domain.BadReviewOpened(case_no="C")


def test_a_bad_review_with_a_deadline_that_is_no_day_is_refused():
    opened = evaluation_events.BadReviewOpened(case_no="C", deadline=date_pb2.Date(year=2026, month=2, day=30))
    with pytest.raises(InvalidArgument):  # a domain refusal: the worker logs it and goes on
        worker.bad_review_opened(to_payload(opened))


def test_a_dispatch_decodes_its_carrier_into_the_short_name():
    for number, name in convert.CARRIER_WORDS.items():
        got = worker.delivery_dispatched(to_payload(delivery_events.DeliveryDispatched(case_no="C", carrier=number)))
        assert got.carrier == name
    assert worker.delivery_dispatched(to_payload(delivery_events.DeliveryDispatched(case_no="C"))).carrier == ""


def test_the_conclusion_a_withdrawal_voids_decodes_into_the_domain_word():
    got = worker.session_withdrawn(to_payload(review_events.SessionWithdrawn(
        case_no="C", after_conclusion=True, overridden=joint_review_pb2.SESSION_STATUS_APPROVED)))
    assert got == domain.SessionWithdrawn(case_no="C", after_conclusion=True, overridden="approved")


# --- the licences as elicense lists them -----------------------------------------------------------

def test_a_licence_reads_with_its_days_moments_and_code_type_as_before():
    lic = elicense_pb2.License(
        license_id="L1", type_code="CSYXZM", holder_code="H1", status=elicense_pb2.LICENSE_STATUS_VALID,
        holder_code_type=elicense_pb2.HOLDER_CODE_TYPE_CREDIT_CODE, valid_from=convert.date("2026-01-01"),
        valid_to=convert.date("2030-12-31"), issued_at=convert.timestamp("2026-01-01T08:00:00+08:00"))
    assert licence_dict(lic) == {"license_id": "L1", "type_code": "CSYXZM", "holder_code": "H1",
                                 "status": "LICENSE_STATUS_VALID", "holder_code_type": "001",
                                 "valid_from": "2026-01-01", "valid_to": "2030-12-31",
                                 "issued_at": "2026-01-01T00:00:00+00:00"}
    assert domain.valid_licences([licence_dict(lic)], datetime.date(2026, 6, 1)) == [licence_dict(lic)]
    assert domain.valid_licences([licence_dict(lic)], datetime.date(2031, 1, 1)) == []


def test_a_licence_whose_validity_is_no_day_is_not_counted():
    class Stub:
        def ListLicenses(self, request, timeout, metadata=None):
            return elicense_pb2.ListLicensesResponse(licenses=[
                elicense_pb2.License(license_id="BAD", valid_from=date_pb2.Date(year=2026, month=13, day=1)),
                elicense_pb2.License(license_id="OK", valid_from=convert.date("2026-01-01"))])

    got = ElicenseClient("unused", stub=Stub(), metadata=lambda: ()).licences_of("H1")
    assert [lic["license_id"] for lic in got] == ["OK"]
