"""joint_review's typed wire values (services/joint_review/codec.py): moments as
google.protobuf.Timestamp, days as google.type.Date and fixed sets as enums, mapped once in api.py and
where the events are built, while the session keeps (and the store stores) its ISO strings and words."""
import datetime

import pytest
from google.protobuf import timestamp_pb2
from google.type import date_pb2

from onething.joint_review.v1 import events_pb2 as review_events
from onething.joint_review.v1 import joint_review_pb2 as pb
from services.common import policy
from services.common.audit import MemoryAuditLog
from services.common.auth import Actor
from services.common.bus import RecordingBus
from services.common.errors import InvalidArgument
from services.common.events import from_payload
from services.joint_review import api, codec, domain, handlers
from services.joint_review.fakes import FakeSessionStore
from services.joint_review.tests.conftest import MemoryBlobs

CST = domain.CST
T0 = "2025-09-22T09:00:00+08:00"   # a Monday
VISIT = "2025-09-24T09:30:00+08:00"
ACCEPTANCE = {"code": "JGYS", "name": "工程建设项目竣工联合验收", "lead_department": "zjj",
              "promised_limit_days": 10, "statutory_limit_days": 20,
              "items": [
                  {"code": "A1", "name": "规划核实", "department_code": "zrzy", "inspection": True,
                   "promised_limit_days": 5},
                  {"code": "A2", "name": "消防验收", "department_code": "zjj", "inspection": True,
                   "promised_limit_days": 5},
                  {"code": "A4", "name": "档案验收", "department_code": "cjda", "promised_limit_days": 3}]}


def ts(iso):
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(datetime.datetime.fromisoformat(iso))
    return out


# moments ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("iso, tz, back", [
    ("2025-09-22T09:00:00+08:00", CST, "2025-09-22T09:00:00+08:00"),
    ("2025-09-22T09:00:00+08:00", datetime.UTC, "2025-09-22T01:00:00+00:00"),
    ("2025-09-22T01:00:00.123456+00:00", datetime.UTC, "2025-09-22T01:00:00.123456+00:00"),
    ("2025-09-22T01:00:00", datetime.UTC, "2025-09-22T01:00:00+00:00"),   # no offset: UTC
])
def test_a_moment_goes_to_a_timestamp_and_back(iso, tz, back):
    stamp = codec.timestamp_of(iso)
    assert stamp.ToDatetime(tzinfo=datetime.UTC) == datetime.datetime.fromisoformat(back)
    assert stamp.ToJsonString().endswith("Z")
    assert codec.iso_of(stamp, "at", tz) == back


def test_an_empty_moment_is_an_unset_timestamp_and_back():
    assert codec.timestamp_of("") is None and codec.timestamp_of(None) is None
    assert codec.iso_of(None, "at") == ""
    # a stored string that is no moment is left unset, not guessed (nor a failed read)
    assert codec.timestamp_of("next Tuesday") is None
    # the epoch itself is a moment, not "unset"
    assert codec.iso_of(timestamp_pb2.Timestamp(), "at") == "1970-01-01T00:00:00+00:00"


@pytest.mark.parametrize("stamp", [
    timestamp_pb2.Timestamp(seconds=253402300800),          # 10000-01-01T00:00:00Z
    timestamp_pb2.Timestamp(seconds=-62135596801),          # before 0001-01-01
    timestamp_pb2.Timestamp(seconds=0, nanos=-1),
    timestamp_pb2.Timestamp(seconds=0, nanos=1_000_000_000),
    timestamp_pb2.Timestamp(seconds=253402300000),          # 9999-12-31 in UTC, 10000 in China
])
def test_a_timestamp_out_of_range_is_refused_with_its_field(stamp):
    with pytest.raises(InvalidArgument, match="at must be a time between 0001-01-01T00:00:00Z and 9999-12-31"):
        codec.iso_of(stamp, "at", CST)


# days -------------------------------------------------------------------------------------------
def test_a_day_goes_to_a_date_and_back():
    date = codec.date_of("2025-10-11")
    assert (date.year, date.month, date.day) == (2025, 10, 11)
    assert codec.day_of(date, "due_date") == "2025-10-11"
    assert codec.date_of(datetime.date(2024, 2, 29)) == date_pb2.Date(year=2024, month=2, day=29)
    assert codec.date_of("") is None
    assert codec.day_of(date_pb2.Date(), "due_date") == "" and codec.day_of(None, "due_date") == ""


@pytest.mark.parametrize("date", [date_pb2.Date(year=2025, month=2, day=30), date_pb2.Date(month=10, day=11),
                                  date_pb2.Date(year=2025, month=13, day=1)])
def test_a_date_that_is_no_calendar_day_is_refused(date):
    with pytest.raises(InvalidArgument, match="valid_to must be a whole calendar day"):
        codec.day_of(date, "valid_to")


# fixed sets -------------------------------------------------------------------------------------
@pytest.mark.parametrize("table, enum", [(codec.INSPECTION_STATUS_PROTO, pb.InspectionStatus),
                                         (codec.CLOCK_PAUSE_REASON_PROTO, pb.ClockPauseReason),
                                         (codec.SESSION_KIND_PROTO, review_events.SessionKind)])
def test_every_word_has_one_enum_value_of_its_own_name(table, enum):
    declared = [v for v in enum.DESCRIPTOR.values if v.number]
    assert sorted(table.values()) == sorted(v.number for v in declared)
    prefix = enum.DESCRIPTOR.values[0].name.removesuffix("UNSPECIFIED")
    assert {word: enum.Name(number) for word, number in table.items()} == {
        v.name.removeprefix(prefix): v.name for v in declared}


def test_the_enums_decode_and_encode_and_refuse_what_they_do_not_declare():
    assert codec.clock_pause_reason(pb.CLOCK_PAUSE_REASON_TESTING) == "TESTING"
    assert codec.clock_pause_reason(pb.CLOCK_PAUSE_REASON_UNSPECIFIED) == ""
    with pytest.raises(InvalidArgument, match="reason must be one of CLOCK_PAUSE_REASON_HEARING, "
                                              "CLOCK_PAUSE_REASON_TESTING, CLOCK_PAUSE_REASON_EXPERT_INSPECTION"):
        codec.clock_pause_reason(42)
    assert codec.inspection_status_number("DONE") == pb.INSPECTION_STATUS_DONE
    assert codec.inspection_status_number("") == pb.INSPECTION_STATUS_UNSPECIFIED
    with pytest.raises(ValueError, match="no inspection status"):
        codec.inspection_status_number("POSTPONED")
    assert codec.session_status_number(domain.S_REJECTED) == pb.SESSION_STATUS_REJECTED
    assert codec.session_status_number(None) == pb.SESSION_STATUS_UNSPECIFIED
    assert codec.session_kind_number("INSPECTION") == review_events.SESSION_KIND_INSPECTION


# the api and the events -------------------------------------------------------------------------
def test_a_sessions_moments_and_days_reach_the_proto_typed():
    s = domain.new_session("C1", "440100", ACCEPTANCE, T0)
    domain.advance(s, T0)
    later = "2025-09-23T02:00:00+00:00"
    domain.record_opinion(s, "A4", "cjda", domain.RECTIFY, "案卷不全", "o-cjda", later, ["D1"], ["缺页"])
    msg = api.session_to_proto(s)
    assert msg.opened_at == ts(T0) and not msg.HasField("concluded_at") and not msg.HasField("withdrawn_at")
    assert msg.withdrawn_after == pb.SESSION_STATUS_UNSPECIFIED
    a4 = next(t for t in msg.tasks if t.item_code == "A4")
    assert a4.assigned_at == ts(T0) and a4.decided_at == ts(later)
    assert a4.rectification.requested_at == ts(later) and not a4.rectification.HasField("supplied_at")
    assert list(a4.rectification.material_codes) == ["D1"]
    a1 = next(t for t in msg.tasks if t.item_code == "A1")
    assert not a1.HasField("decided_at")
    today = api._today()
    due = domain.clock_view(domain.task_of(s, "A1")["clock"], today)["due_date"]
    assert codec.day_of(a1.clock.due_date, "due_date") == due and a1.clock.limit_days == 5
    assert codec.day_of(msg.clock.due_date, "due_date") == domain.clock_view(s["clock"], today)["due_date"]
    # the session itself keeps its strings
    assert s["opened_at"] == T0 and domain.task_of(s, "A4")["decided_at"] == later


def test_a_withdrawn_sessions_conclusion_made_void_is_a_session_status():
    s = domain.new_session("C1", "440100", ACCEPTANCE, T0)
    domain.advance(s, T0)
    s["status"], s["concluded_at"] = domain.S_REJECTED, "2025-09-23T02:00:00+00:00"
    domain.withdraw(s, "2025-09-24T02:00:00+00:00")
    msg = api.session_to_proto(s)
    assert msg.withdrawn_after == pb.SESSION_STATUS_REJECTED
    assert msg.concluded_at == ts("2025-09-23T02:00:00+00:00") and msg.withdrawn_at == ts("2025-09-24T02:00:00Z")
    entry = handlers.JointReview._withdrawn(s, ["L1"], "不办了")
    event = from_payload(review_events.SessionWithdrawn, entry["payload"])
    assert entry["payload"]["overridden"] == "SESSION_STATUS_REJECTED"
    assert entry["payload"]["withdrawn_at"] == "2025-09-24T02:00:00Z"
    assert event.overridden == pb.SESSION_STATUS_REJECTED and event.withdrawn_at == ts("2025-09-24T02:00:00Z")


class Clock:
    def __init__(self, iso):
        self.at = datetime.datetime.fromisoformat(iso)

    def __call__(self):
        return self.at


@pytest.fixture
def wired():
    """(servicer, review, store, bus) over the in-memory store; a JGYS session opened at T0."""
    bus = RecordingBus("joint_review")
    store = FakeSessionStore(bus)
    clock = Clock("2025-09-23T10:00:00+08:00")
    review = handlers.JointReview(store, blobs=MemoryBlobs(), audit=MemoryAuditLog("joint_review"), clock=clock)
    session = domain.new_session("C1", "440100", ACCEPTANCE, T0)
    domain.advance(session, T0)
    store.create(session, {"package_name": ACCEPTANCE["name"], "materials": [], "applicant": {}}, [])
    return api.JointReviewApi(review), review, store, bus, clock


def as_officer(department):
    return policy.bind(policy.Caller(Actor(f"o-{department}", "officer", department, "440100"), "", "t", "/m"))


def call(department, method, request):
    token = as_officer(department)
    try:
        return method(request, None)
    finally:
        policy.unbind(token)


def test_the_inspection_is_scheduled_for_a_timestamp_and_reported_with_its_status(wired):
    servicer, _, store, bus, clock = wired
    visit = ts(VISIT)
    session = call("zjj", servicer.ScheduleInspection, pb.ScheduleInspectionRequest(case_no="C1", at=visit,
                                                                                    place="天河区某地块"))
    assert session.inspection.status == pb.INSPECTION_STATUS_SCHEDULED and session.inspection.at == visit
    stored = store.docs["C1"]["body"]["inspection"]
    assert (stored["status"], stored["at"]) == ("SCHEDULED", VISIT)  # stored as before: a word, China time
    clock.at = datetime.datetime.fromisoformat("2025-09-24T11:00:00+08:00")
    call("zrzy", servicer.RecordFindings, pb.RecordFindingsRequest(case_no="C1", passed=True, notes="相符"))
    session = call("zjj", servicer.RecordFindings, pb.RecordFindingsRequest(case_no="C1", passed=True, notes="到位"))
    assert session.inspection.status == pb.INSPECTION_STATUS_DONE
    assert [(f.department_code, f.at) for f in session.inspection.findings] == [
        ("zjj", ts("2025-09-24T03:00:00Z")), ("zrzy", ts("2025-09-24T03:00:00Z"))]
    assert store.docs["C1"]["body"]["inspection"]["status"] == "DONE"
    [concluded] = [p for t, p, _ in bus.published if t == "session_concluded"]
    assert concluded["kind"] == "SESSION_KIND_INSPECTION" and concluded["concluded_at"] == "2025-09-24T03:00:00Z"
    event = from_payload(review_events.SessionConcluded, concluded)
    assert event.kind == review_events.SESSION_KIND_INSPECTION and event.passed
    assert event.concluded_at == ts("2025-09-24T11:00:00+08:00")


def test_a_visit_without_a_time_or_out_of_range_is_refused(wired):
    servicer, _, store, _, _ = wired
    with pytest.raises(InvalidArgument, match="a site visit needs a time and a place"):
        call("zjj", servicer.ScheduleInspection, pb.ScheduleInspectionRequest(case_no="C1", place="工地"))
    with pytest.raises(InvalidArgument, match="at must be a time between"):
        call("zjj", servicer.ScheduleInspection, pb.ScheduleInspectionRequest(
            case_no="C1", at=timestamp_pb2.Timestamp(seconds=2 ** 40), place="工地"))
    assert store.docs["C1"]["body"]["inspection"] is None


def test_a_clock_is_suspended_for_an_enum_reason_kept_as_its_word(wired):
    servicer, _, store, _, _ = wired
    with pytest.raises(InvalidArgument, match="HEARING or TESTING"):
        call("cjda", servicer.SuspendClock, pb.SuspendClockRequest(case_no="C1", item_code="A4"))
    with pytest.raises(InvalidArgument, match="HEARING or TESTING"):
        call("cjda", servicer.SuspendClock, pb.SuspendClockRequest(
            case_no="C1", item_code="A4", reason=pb.CLOCK_PAUSE_REASON_EXPERT_INSPECTION))
    with pytest.raises(InvalidArgument, match="reason must be one of"):
        call("cjda", servicer.SuspendClock, pb.SuspendClockRequest(case_no="C1", item_code="A4", reason=7))
    task = call("cjda", servicer.SuspendClock, pb.SuspendClockRequest(
        case_no="C1", item_code="A4", reason=pb.CLOCK_PAUSE_REASON_TESTING))
    assert task.clock.paused and task.clock.HasField("due_date")
    assert domain.task_of(domain.session_from_stored(store.docs["C1"]["body"]), "A4")["clock"]["paused_for"] == "TESTING"
    task = call("cjda", servicer.ResumeClock, pb.ResumeClockRequest(case_no="C1", item_code="A4"))
    assert not task.clock.paused


def test_a_session_opened_announces_its_moment_as_a_timestamp(wired):
    _, review, _, bus, clock = wired
    review.serves = None
    package = {**ACCEPTANCE, "code": "JGYS"}
    review.open_session(domain.CaseSubmitted(case_no="C2", region_code="440100", package=package, materials=(),
                                             applicant={}, parties=(), delivery={}))
    [opened] = [p for t, p, _ in bus.published if t == "session_opened"]
    assert opened["opened_at"] == "2025-09-23T02:00:00Z"
    assert from_payload(review_events.SessionOpened, opened).opened_at == ts(clock.at.isoformat())
