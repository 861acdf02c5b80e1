"""The store's contract, run against the in-memory fake (services/joint_review/fakes.py) and the real
MongoDB store alike: sessions read back typed at the version saved, a save naming a stale version
is refused and writes nothing, the events of a committed change are published and then removed, an
event the bus refused (or a writer that died) is left for the sweep, and sessions are stored with
the strings earlier versions stored."""
import time
import uuid

import pytest

from onething.joint_review.v1 import events_pb2
from services.common.bus import RecordingBus, outbox_entry
from services.common.testing import FlakyBus
from services.joint_review import domain
from services.joint_review.domain import Conflict, Decision, SessionStatus, TaskState
from services.joint_review.fakes import FakeSessionStore

T0 = "2025-09-22T09:00:00+08:00"
PACKAGE = {"code": "JGYS", "name": "工程建设项目竣工联合验收", "lead_department": "zjj", "promised_limit_days": 10,
           "items": [{"code": "A1", "name": "规划核实", "department_code": "zrzy", "promised_limit_days": 5},
                     {"code": "A2", "name": "消防验收", "department_code": "zjj", "promised_limit_days": 5,
                      "prerequisites": ["A1"]}]}
CASE = {"applicant": {"name": "某公司"}, "materials": [{"material_code": "G1"}], "package_code": "JGYS"}


class Backend:
    """A store under test and a look at what it keeps, in its stored form."""

    def __init__(self, store, raw, put_raw):
        self.store, self.raw, self.put_raw = store, raw, put_raw


def _fake():
    store = FakeSessionStore()

    def put_raw(case_no, body, case, version):
        store.docs[case_no] = {"version": version, "body": body, "case": case, "outbox": []}
    return Backend(store, lambda case_no: store.docs[case_no], put_raw)


def _mongo(request):
    from services.common import write_behind
    from services.joint_review.store import SessionDoc, SessionStore
    request.getfixturevalue("own_database")("joint_review")
    coll = SessionDoc._get_collection()

    def put_raw(case_no, body, case, version):
        coll.insert_one({"_id": case_no, "version": version, "body": body, "case": case, "outbox": []})
    def raw(case_no):
        write_behind.flush()  # the removal of published events waits a moment to go in one batch
        return coll.find_one({"_id": case_no})
    return Backend(SessionStore(), raw, put_raw)


@pytest.fixture(params=["fake", pytest.param("mongo", marks=pytest.mark.integration)])
def backend(request):
    return _fake() if request.param == "fake" else _mongo(request)


@pytest.fixture
def store(backend):
    return backend.store


def new_case_no():
    return f"C{uuid.uuid4().hex[:12]}"


def opened(case_no):
    session = domain.new_session(case_no, "440100", PACKAGE, T0)
    domain.advance(session, T0)
    return session


def event(case_no, item="A1"):
    return outbox_entry("task_assigned.zrzy.440100", events_pb2.TaskAssigned(case_no=case_no, item_code=item),
                        case_no)


def decided(session, item="A1"):
    domain.record_opinion(session, item, domain.task_of(session, item)["department_code"], Decision.APPROVE, "",
                          "o-1", T0)
    domain.advance(session, T0)
    return session


# --- insert and read -----------------------------------------------------------------------------


def test_a_created_session_reads_back_typed_at_version_0(store):
    case_no = new_case_no()
    session = opened(case_no)
    assert store.create(session, CASE, []) is True
    loaded = store.load(case_no)
    assert loaded == (session, CASE, 0)
    assert loaded.session == session and loaded.version == 0
    assert isinstance(loaded.session["status"], SessionStatus)
    assert [type(t["state"]) for t in loaded.session["tasks"]] == [TaskState, TaskState]
    assert domain.task_of(loaded.session, "A1")["decision"] is None


def test_a_case_without_a_session_loads_as_nothing(store):
    assert store.load(new_case_no()) == (None, None, None)


def test_creating_a_session_again_changes_nothing(store, backend):
    case_no = new_case_no()
    bus = RecordingBus("joint_review")
    store.bus = bus
    first = opened(case_no)
    assert store.create(first, CASE, [event(case_no)]) is True
    other = dict(opened(case_no), package_code="OTHER")
    assert store.create(other, {"applicant": {}}, [event(case_no, "A2")]) is False
    assert store.load(case_no) == (first, CASE, 0)
    assert [p["item_code"] for _, p, _ in bus.published] == ["A1"]  # the refused insert published nothing
    assert backend.raw(case_no)["outbox"] == []


# --- conditional update ---------------------------------------------------------------------------


def test_a_save_naming_the_current_version_writes_the_next(store):
    case_no = new_case_no()
    store.create(opened(case_no), CASE, [])
    session, _, version = store.load(case_no)
    assert store.save(decided(session), version, []) == 1
    again = store.load(case_no)
    assert again.version == 1 and again.case == CASE  # the case is kept when not given
    assert domain.task_of(again.session, "A1")["decision"] is Decision.APPROVE
    assert domain.task_of(again.session, "A2")["state"] is TaskState.ASSIGNED
    store.save(again.session, 1, [], case=dict(CASE, materials=[]))
    assert store.load(case_no).case["materials"] == [] and store.load(case_no).version == 2


def test_the_recent_copy_is_the_session_as_this_store_last_created_saved_or_read(store, backend):
    case_no = new_case_no()
    assert store.recent(case_no) is None
    store.create(opened(case_no), CASE, [])
    assert store.recent(case_no) == store.load(case_no) and isinstance(store.recent(case_no), domain.RecentSession)
    session, _, version = store.recent(case_no)
    store.save(decided(session), version, [])
    assert store.recent(case_no) == store.load(case_no) == (session, CASE, 1)  # the case as kept with the copy
    copy = store.recent(case_no)
    copy.session["tasks"].clear()
    assert store.recent(case_no).session == session  # a copy each time
    with pytest.raises(Conflict):
        store.save(session, 0, [])  # stale: no copy kept of what it might be now
    assert store.recent(case_no) is None
    store.save(store.load(case_no).session, 1, [], case=dict(CASE, materials=[]))
    assert store.recent(case_no) == store.load(case_no) and store.recent(case_no).case["materials"] == []


def test_a_save_without_the_case_from_another_version_than_the_copy_keeps_no_copy(store):
    """The case kept with a copy is that version's: a save without the case that started from
    another version (another process's copy, say) cannot tell what the case is now."""
    case_no = new_case_no()
    store.create(opened(case_no), CASE, [])
    # the stored session moves on without this store (version 1, the case changed)
    other = type(store)()
    if isinstance(store, FakeSessionStore):
        other.docs = store.docs
    moved = other.load(case_no)
    other.save(moved.session, moved.version, [], case=dict(CASE, materials=[]))
    store.save(decided(other.load(case_no).session), 1, [])  # from version 1, which its copy (0) is not
    assert store.recent(case_no) is None
    assert store.load(case_no).case["materials"] == []


def test_a_save_naming_a_stale_version_is_refused_and_writes_nothing(store, backend):
    case_no = new_case_no()
    bus = RecordingBus("joint_review")
    store.bus = bus
    store.create(opened(case_no), CASE, [])
    session, _, version = store.load(case_no)
    store.save(decided(session), version, [])                      # another writer got in first
    stale = opened(case_no)
    with pytest.raises(Conflict):
        store.save(stale, version, [event(case_no, "A2")], case={"applicant": {}})
    kept = store.load(case_no)
    assert kept.version == 1 and kept.case == CASE
    assert domain.task_of(kept.session, "A1")["state"] is TaskState.DONE
    assert bus.published == [] and backend.raw(case_no)["outbox"] == []  # the refused change's event is not kept
    with pytest.raises(Conflict):
        store.save(opened(new_case_no()), 0, [])                   # no such session


# --- the stored form --------------------------------------------------------------------------------


def test_sessions_are_stored_with_the_strings_earlier_versions_stored(store, backend):
    case_no = new_case_no()
    store.create(opened(case_no), CASE, [])
    session, _, version = store.load(case_no)
    store.save(decided(session), version, [])
    body = backend.raw(case_no)["body"]
    assert body["status"] == "SESSION_STATUS_OPEN"
    assert [(t["item_code"], t["state"], t["decision"]) for t in body["tasks"]] == [
        ("A1", "TASK_STATE_DONE", "DECISION_APPROVE"), ("A2", "TASK_STATE_ASSIGNED", "")]


def test_a_session_stored_by_an_earlier_version_reads_typed(store, backend):
    case_no = new_case_no()
    task = {k: v for k, v in opened(case_no)["tasks"][0].items()}
    legacy = dict(opened(case_no), status="SESSION_STATUS_WITHDRAWN", withdrawn_after="SESSION_STATUS_APPROVED",
                  tasks=[dict(task, state="TASK_STATE_DONE", decision="DECISION_APPROVE"),
                         dict(task, item_code="A2", state="TASK_STATE_CLOSED", decision="")])
    backend.put_raw(case_no, legacy, CASE, 7)
    loaded = store.load(case_no)
    assert loaded.version == 7 and loaded.session["status"] is SessionStatus.WITHDRAWN
    assert loaded.session["withdrawn_after"] is SessionStatus.APPROVED
    assert [(t["state"], t["decision"]) for t in loaded.session["tasks"]] == [
        (TaskState.DONE, Decision.APPROVE), (TaskState.CLOSED, None)]
    loaded.session["tasks"][1]["reason"] = "read and saved again"
    store.save(loaded.session, 7, [])
    assert backend.raw(case_no)["body"]["tasks"] == [legacy["tasks"][0], dict(legacy["tasks"][1],
                                                                              reason="read and saved again")]
    assert backend.raw(case_no)["body"]["withdrawn_after"] == "SESSION_STATUS_APPROVED"


# --- the outbox ---------------------------------------------------------------------------------------


def test_the_events_of_a_save_are_published_after_it_and_then_removed(store):
    case_no = new_case_no()
    bus = RecordingBus("joint_review")
    store.bus = bus
    created = event(case_no)
    store.create(opened(case_no), CASE, [created])
    session, _, version = store.load(case_no)
    first, second = event(case_no, "A2"), outbox_entry("session_concluded", events_pb2.SessionConcluded(
        case_no=case_no, kind=events_pb2.SESSION_KIND_INSPECTION), case_no)
    store.save(decided(session), version, [first, second])
    assert [(t, h["event_id"], h["case_no"]) for t, _, h in bus.published] == [
        ("task_assigned.zrzy.440100", created["id"], case_no), ("task_assigned.zrzy.440100", first["id"], case_no),
        ("session_concluded", second["id"], case_no)]
    assert bus.published[1][1] == {"case_no": case_no, "item_code": "A2"}
    assert store.pending(case_no) == []
    store.sweep()
    assert len(bus.published) == 3  # nothing of it left for the sweep


def test_an_event_the_bus_refused_stays_pending_until_the_sweep_publishes_it(store):
    case_no = new_case_no()
    failing = FlakyBus("joint_review", away=True)
    store.bus = failing
    store.create(opened(case_no), CASE, [])
    session, _, version = store.load(case_no)
    entry = event(case_no, "A2")
    assert store.save(decided(session), version, [entry]) == 1      # committed all the same, nothing raised
    assert failing.tries == 1 and store.load(case_no).version == 1
    [pending] = store.pending(case_no)
    assert pending["id"] == entry["id"] and pending["attempts"] == 1 and pending["next_at"] > time.time()
    bus = RecordingBus("joint_review")
    store.bus = bus
    store.sweep()
    assert case_no not in [h["case_no"] for _, _, h in bus.published]  # not due yet: it waits out its backoff
    time.sleep(max(0.0, pending["next_at"] - time.time()) + 0.1)
    store.sweep()
    assert [(t, h["event_id"]) for t, _, h in bus.published if h["case_no"] == case_no] == [
        ("task_assigned.zrzy.440100", entry["id"])]
    assert store.pending(case_no) == []


def test_the_events_of_a_writer_that_died_are_published_by_the_sweep_once(store, monkeypatch):
    monkeypatch.setenv("ONETHING_SWEEP_GRACE_SECONDS", "0")       # due as soon as written
    case_no = new_case_no()
    store.bus = None                                                # it died before publishing
    entries = [event(case_no), event(case_no, "A2")]
    store.create(opened(case_no), CASE, entries)
    assert [e["id"] for e in store.pending(case_no)] == [e["id"] for e in entries]
    bus = RecordingBus("joint_review")
    store.bus = bus
    assert store.sweep() >= 2
    mine = [h["event_id"] for _, _, h in bus.published if h["case_no"] == case_no]
    assert mine == [e["id"] for e in entries]
    assert store.pending(case_no) == []
    store.sweep()
    assert [h["event_id"] for _, _, h in bus.published if h["case_no"] == case_no] == mine  # once


# --- queries --------------------------------------------------------------------------------------------


def test_open_sessions_and_a_departments_tasks(store):
    open_no, withdrawn_no = new_case_no(), new_case_no()
    store.create(opened(open_no), CASE, [])
    gone = opened(withdrawn_no)
    domain.withdraw(gone, T0)
    store.create(gone, CASE, [])
    numbers = store.open_case_numbers()
    assert open_no in numbers and withdrawn_no not in numbers
    mine = [t for t in store.tasks("zrzy", "440100") if t["case_no"] in (open_no, withdrawn_no)]
    assert sorted((t["case_no"], t["item_code"], t["state"]) for t in mine) == sorted([
        (open_no, "A1", TaskState.ASSIGNED), (withdrawn_no, "A1", TaskState.CLOSED)])
    assigned = [t for t in store.tasks("zrzy", "440100", TaskState.ASSIGNED) if t["case_no"] in (open_no, withdrawn_no)]
    assert [t["case_no"] for t in assigned] == [open_no]
    assert not [t for t in store.tasks("zrzy", "440300") if t["case_no"] == open_no]
    assert not [t for t in store.tasks("zjj", "440100", TaskState.ASSIGNED) if t["case_no"] == open_no]


def test_a_departments_tasks_page_through_the_sessions_in_case_number_order(store):
    numbers = sorted(new_case_no() for _ in range(5))
    for no in reversed(numbers):
        store.create(opened(no), CASE, [])
    assert [t["case_no"] for t in store.tasks("zrzy", "440100", sessions=2)] == numbers[:2]
    assert [t["case_no"] for t in store.tasks("zrzy", "440100", after=numbers[1], sessions=2)] == numbers[2:4]
    assert [t["case_no"] for t in store.tasks("zrzy", "440100", after=numbers[3])] == numbers[4:]
    assert store.tasks("zrzy", "440100", after=numbers[4]) == []
    # zjj's task waits on zrzy's in each: a state with none of them in it lists nothing
    assert [t["case_no"] for t in store.tasks("zjj", "440100", TaskState.PENDING, sessions=3)] == numbers[:3]
    assert store.tasks("zjj", "440100", TaskState.ASSIGNED) == []


def test_a_task_whose_state_changes_moves_to_the_list_of_its_new_state(store):
    no = new_case_no()
    store.create(opened(no), CASE, [])
    loaded = store.load(no)
    store.save(decided(loaded.session), loaded.version)
    assert store.tasks("zrzy", "440100", TaskState.ASSIGNED) == []
    assert [(t["item_code"], t["state"]) for t in store.tasks("zrzy", "440100")] == [
        ("A1", domain.task_of(loaded.session, "A1")["state"])]
    assert [t["item_code"] for t in store.tasks("zjj", "440100", TaskState.ASSIGNED)] == ["A2"]
    assert store.tasks("zjj", "440100", TaskState.PENDING) == []


def test_the_overdue_check_reads_only_sessions_whose_clock_may_have_run_out(store):
    import datetime
    running, paused = new_case_no(), new_case_no()
    store.create(opened(running), CASE, [])
    session = opened(paused)
    store.create(session, CASE, [])
    # 规划核实: 5 working days from Monday 22 September 2025, due on Sunday the 28th (a working day
    # that year, given for the National Day holiday), overdue from the 29th
    assert domain.next_clock_check(session) == "2025-09-29"
    assert running not in store.open_case_numbers(clocks_due_by=datetime.date(2025, 9, 28))
    assert running in store.open_case_numbers(clocks_due_by=datetime.date(2025, 9, 29))
    # a paused clock cannot run out: the session is not looked at until it runs again
    stored = store.load(paused)
    domain.suspend(stored.session, "A1", "zrzy", "HEARING", "2025-09-24T10:00:00+08:00")
    store.save(stored.session, stored.version)
    assert paused not in store.open_case_numbers(clocks_due_by=datetime.date(2026, 9, 30))
    assert paused in store.open_case_numbers()  # still open
    # once flagged overdue, a task is not looked at again
    stored = store.load(running)
    assert [t["item_code"] for t in domain.check_clocks(stored.session, datetime.date(2025, 9, 29))] == ["A1"]
    store.save(stored.session, stored.version)
    assert running not in store.open_case_numbers(clocks_due_by=datetime.date(2026, 9, 30))


@pytest.mark.integration
def test_sessions_stored_without_task_keys_get_them_on_the_workers_first_sweep(request):
    """Sessions an earlier version stored have no task keys, so no department's list finds them;
    the first sweep gives them theirs (not over a session saved meanwhile), then notes in the
    database that none is left, and later sweeps do not look again."""
    backend = _mongo(request)
    store = backend.store
    from services.joint_review.store import SessionDoc
    coll = SessionDoc._get_collection()
    old, saved_meanwhile = new_case_no(), new_case_no()
    for no in (old, saved_meanwhile):
        backend.put_raw(no, domain.stored_session(opened(no)), CASE, 3)
    assert store.tasks("zrzy", "440100") == []  # found by no key
    coll.update_one({"_id": saved_meanwhile}, {"$set": {"version": 4, "task_keys": ["zrzy|440100|mine"]}})
    assert store.give_task_keys() is False  # one given: looked at once more
    assert coll.find_one({"_id": old})["task_keys"] == ["zjj|440100|TASK_STATE_PENDING",
                                                        "zrzy|440100|TASK_STATE_ASSIGNED"]
    assert coll.find_one({"_id": saved_meanwhile})["task_keys"] == ["zrzy|440100|mine"]  # not overwritten
    assert [t["case_no"] for t in store.tasks("zrzy", "440100")] == [old]
    assert store.give_task_keys() is True and coll.database["outbox_checks"].find_one({"_id": "sessions.task_keys"})
    backend.put_raw(new_case_no(), domain.stored_session(opened("x")), CASE, 0)
    assert store.give_task_keys() is True  # noted: not looked for again
    store.backfilled = set()
    store.sweep()
    assert store.backfilled == {"give_task_keys"}


@pytest.mark.integration
def test_a_sweep_that_cannot_give_task_keys_logs_it_and_sweeps_all_the_same(request, caplog, monkeypatch):
    from pymongo.errors import OperationFailure
    backend = _mongo(request)
    store = backend.store
    store.bus = RecordingBus("joint_review")
    no = new_case_no()
    store.create(opened(no), CASE, [event(no)])

    def refused():
        raise OperationFailure("not authorized on onething_joint_review to execute command", code=13)
    monkeypatch.setattr(store, "give_task_keys", refused)
    backend.raw(no)  # the creation's own publish done and its removal written
    store.sweep()
    assert "give_task_keys" not in store.backfilled
    assert "could not give stored sessions their task keys" in caplog.text
    monkeypatch.undo()
    store.sweep()
    assert "give_task_keys" in store.backfilled  # the next sweep tries again
