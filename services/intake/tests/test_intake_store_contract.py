"""What every intake store promises (the port the handlers use), run against the shared in-memory
fake (services.intake.fakes.FakeIntakeStore) and the real MongoDB store alike: a case inserted and
read back as the domain's values, inserted once per number and idempotency key; a save refused
when the version it was decided on is stale; the events a save adds published after the commit and
removed, kept pending when the bus fails or the writer died, and published by the sweep once due;
uploads, sequence numbers and an applicant's cases in pages. The last tests are the real store's
own: the stored strings are those cases have always carried, and a case stored before versions
were kept can still be changed."""
import dataclasses
import datetime
import time
import uuid

import pytest

from onething.intake.v1 import events_pb2
from services.common.bus import outbox_entry
from services.common.testing import FlakyBus
from services.common.testing import make_due as due_now
from services.intake import domain
from services.intake.fakes import FakeIntakeStore

UTC = datetime.UTC
T0 = datetime.datetime(2026, 11, 26, 2, 0, 0, 123000, tzinfo=UTC)  # whole milliseconds, as MongoDB keeps them


@pytest.fixture(params=["fake", pytest.param("mongo", marks=pytest.mark.integration)])
def kind(request):
    if request.param == "mongo":
        request.getfixturevalue("own_database")("intake")
    return request.param


@pytest.fixture
def bus():
    return FlakyBus("intake")


@pytest.fixture
def store(kind, bus):
    if kind == "fake":
        return FakeIntakeStore(bus)
    from services.intake.store import IntakeStore
    return IntakeStore(bus)


@pytest.fixture
def make_due(store):
    """Every pending entry of a case due now, as if its retry time had come."""
    return lambda case_no: due_now(store, case_no)


def _with(case, **changes):
    return dataclasses.replace(case, **changes)


def new_case_no():
    return f"440100XSECS{uuid.uuid4().int % 10 ** 12:012d}"


def a_case(case_no=None, key=None, applicant_id="11010519491231002X", at=T0, region="440100", **fields):
    case = domain.Case(
        case_no=case_no or new_case_no(), package_code="XSECS", package_version=3, region_code=region,
        applicant={"id_number": applicant_id, "name": "李华"}, status=domain.SUBMITTED, submitted_at=at,
        form={"child_name": "李小明"}, delivery={"channel": "DELIVERY_CHANNEL_ELECTRONIC"},
        situations={"maternity": "yes"}, parties=[{"role": "buyer", "name": "买方", "id_number": "X1",
                                                   "code_type": "111"}],
        materials=[{"material_code": "M01", "name": "身份证", "object_key": "content/sha256/ab", "sha256": "ab",
                    "size": 3, "content_type": "application/pdf"}],
        history=[domain.HistoryEntry(domain.SUBMITTED, at.isoformat(), "submitted")],
        idempotency_key=key, request_hash="d" * 64 if key else None)
    for name, value in fields.items():
        setattr(case, name, value)
    return case


def sent(bus, case_no):
    """What the bus took for one case: (event type, event id). The real store's database is shared
    by this run's tests, so a sweep may well publish other cases' leftovers too."""
    return [(t, h["event_id"]) for t, _, h in bus.published if h.get("case_no") == case_no]


def submitted(case_no):
    return outbox_entry("case_submitted", events_pb2.CaseSubmitted(case_no=case_no, region_code="440100"), case_no)


def withdrawn(case_no):
    return outbox_entry("case_withdrawn", events_pb2.CaseWithdrawn(case_no=case_no, reason="不再办理"), case_no)


# --- cases -----------------------------------------------------------------------------------------


def test_a_case_reads_back_as_it_was_inserted_at_version_one(store):
    case = a_case(key="11010519491231002X:k1", rectification_rounds={"I1": 1}, delivery_attempt=2,
                  license_ids=["L1"], noted=["session_opened"])
    assert store.insert_case(case)
    got = store.case(case.case_no)
    assert got == _with(case, version=1)
    assert got.status is domain.SUBMITTED and got.history[0].status is domain.SUBMITTED
    assert store.case(new_case_no()) is None


def test_a_case_is_inserted_once_per_number_and_per_idempotency_key(store, bus):
    key = f"11010519491231002X:{uuid.uuid4().hex}"
    first = a_case(key=key)
    assert store.insert_case(first, [submitted(first.case_no)])
    assert not store.insert_case(a_case(key=key), [submitted("other")])             # the key is taken
    assert not store.insert_case(a_case(first.case_no), [submitted(first.case_no)])  # the number too
    assert store.by_idempotency_key(key).case_no == first.case_no
    assert store.by_idempotency_key(None) is None and store.by_idempotency_key(f"x:{uuid.uuid4().hex}") is None
    assert bus.types() == ["case_submitted"]  # the refused inserts published nothing


def test_cases_without_a_key_do_not_collide(store):
    assert store.insert_case(a_case()) and store.insert_case(a_case())


def test_a_save_writes_the_change_and_a_stale_one_is_refused(store):
    case = a_case()
    store.insert_case(case)
    first = store.case(case.case_no)
    rect = {"material_codes": ["M02"], "resume_status": domain.IN_REVIEW,
            "requests": [{"item_code": "I1", "department_code": "gaj", "material_codes": ["M02"], "reason": "模糊",
                          "at": "2026-11-26T03:00:00+00:00", "round": 1}]}
    moved = first.changed(domain.RECTIFYING, "rectification: gaj asks for M02", "2026-11-26T03:00:00+00:00",
                          rectification=rect, rectification_rounds={"I1": 1})
    assert store.save(moved, first.version)
    got = store.case(case.case_no)
    assert got == _with(moved, version=2)
    assert got.rectification["resume_status"] is domain.IN_REVIEW and got.history[-1].status is domain.RECTIFYING
    # decided on the case as it was before that save: refused, nothing changes
    late = first.changed(domain.WITHDRAWN, "withdrawn", "2026-11-26T03:00:01+00:00")
    assert not store.save(late, first.version)
    assert store.case(case.case_no) == got
    assert not store.save(_with(late, case_no=new_case_no()), 1)  # no such case


def test_the_recent_copy_is_the_case_as_this_store_last_read_to_change_it_and_saved_since(store):
    case = a_case(key=f"11010519491231002X:{uuid.uuid4().hex}", rectification_rounds={"I1": 1})
    store.insert_case(case)
    assert store.recent(case.case_no) is None  # a case is kept once read to change
    assert store.case(case.case_no) is not None and store.recent(case.case_no) is None  # a plain read keeps none
    first = store.case(case.case_no)
    assert store.save(first.changed(domain.SUBMITTED, "a note", T0.isoformat(), note_only=True), first.version)
    assert store.recent(case.case_no) is None  # a save without a copy of the version it started from keeps none
    read = store.case_to_change(case.case_no)
    assert read == store.case(case.case_no) == store.recent(case.case_no)
    moved = read.changed(domain.IN_REVIEW, "review opened", T0.isoformat(), noted=["session_opened"],
                         rectification={"material_codes": ["M01"], "requests": [], "resume_status": domain.SUBMITTED})
    assert store.save(moved, read.version)
    kept = store.recent(case.case_no)
    assert kept == store.case(case.case_no) and kept.version == 3  # what the save left, as a read would give it
    assert kept.submitted_at == T0 and kept.submitted_at.tzinfo is not None
    assert kept.rectification["resume_status"] is domain.SUBMITTED
    cleared = kept.changed(domain.IN_REVIEW, "supplemented", T0.isoformat(), rectification={})
    assert store.save(cleared, 3) and store.recent(case.case_no) == store.case(case.case_no)
    kept.history.clear()
    assert store.recent(case.case_no).history  # a copy each time
    assert not store.save(moved, read.version)  # stale: no copy kept of what it might be now
    assert store.recent(case.case_no) is None
    assert store.case_to_change(new_case_no()) is None


def test_the_copy_a_save_leaves_holds_what_is_stored_not_what_the_caller_said_of_the_fixed_fields(store):
    """A save writes only what may change: a caller whose case says otherwise of what the submission
    fixed (applicant, form, package) does not change the copy either."""
    case = a_case()
    store.insert_case(case)
    read = store.case_to_change(case.case_no)
    claimed = _with(read.changed(domain.IN_REVIEW, "review opened", T0.isoformat()), form={"child_name": "别人"},
                    applicant={"id_number": "X", "name": "别人"}, package_code="OTHER")
    assert store.save(claimed, read.version)
    kept = store.recent(case.case_no)
    assert kept == store.case(case.case_no)
    assert kept.form == case.form and kept.applicant == case.applicant and kept.package_code == "XSECS"
    assert kept.status is domain.IN_REVIEW and kept.version == 2


def test_a_note_that_keeps_the_status_is_kept_as_one(store):
    case = a_case()
    store.insert_case(case)
    noted = case.changed(domain.SUBMITTED, "督办", "2026-11-26T04:00:00+00:00", note_only=True,
                         noted=["task_overdue:I1"])
    assert store.save(noted, 1)
    got = store.case(case.case_no)
    assert got.history[-1] == domain.HistoryEntry(domain.SUBMITTED, "2026-11-26T04:00:00+00:00", "督办", True)
    assert not got.history[0].note_only and got.noted == ["task_overdue:I1"]


def test_a_save_clears_the_rectification_and_changes_only_what_may_change(store):
    case = a_case(status=domain.RECTIFYING, rectification={"material_codes": ["M02"], "requests": [],
                                                           "resume_status": domain.SUBMITTED})
    store.insert_case(case)
    done = case.changed(domain.SUBMITTED, "supplemented M02", "t", rectification={},
                        materials=[{"material_code": "M02", "name": "户口簿"}])
    # what the submission fixed is not the save's to change
    done = _with(done, form={"child_name": "changed"}, applicant={"id_number": "X"}, package_code="OTHER")
    assert store.save(done, 1)
    got = store.case(case.case_no)
    assert got.rectification == {} and got.status is domain.SUBMITTED
    assert got.materials == [{"material_code": "M02", "name": "户口簿"}]
    assert got.form == case.form and got.applicant == case.applicant and got.package_code == "XSECS"


def test_the_departments_holding_a_task_are_saved_with_the_version_and_read_back(store):
    case = a_case()
    store.insert_case(case)
    first = store.case(case.case_no)
    assert first.task_holders == []
    gaj, wsjk = domain.TaskHolder("gaj", "440100"), domain.TaskHolder("wsjk", "440100")
    assert store.save(_with(first, task_holders=[gaj]), first.version)
    assert not store.save(_with(first, task_holders=[wsjk]), first.version)  # decided on a stale case
    second = store.case(case.case_no)
    assert second.task_holders == [gaj] and second.version == 2 and second.history == first.history
    assert store.save(_with(second, task_holders=[gaj, wsjk]), second.version)
    got = store.case(case.case_no)
    assert got.task_holders == [gaj, wsjk] and all(isinstance(h, domain.TaskHolder) for h in got.task_holders)
    assert store.cases_of(case.applicant["id_number"], 10)[0].task_holders == [gaj, wsjk]


# --- the outbox --------------------------------------------------------------------------------------


def test_the_events_of_a_save_are_published_after_it_and_removed(store, bus):
    case = a_case()
    assert store.insert_case(case, [submitted(case.case_no)])
    entry = withdrawn(case.case_no)
    assert store.save(case.changed(domain.WITHDRAWN, "withdrawn", "t"), 1, [entry])
    assert bus.types() == ["case_submitted", "case_withdrawn"]
    assert bus.published[1][2]["event_id"] == entry["id"] and bus.published[1][2]["case_no"] == case.case_no
    assert store.pending(case.case_no) == []
    store.sweep()
    assert len(sent(bus, case.case_no)) == 2  # nothing is sent twice


def test_a_refused_save_keeps_and_publishes_none_of_its_events(store, bus):
    case = a_case()
    store.insert_case(case)
    assert not store.save(case.changed(domain.WITHDRAWN, "withdrawn", "t"), 7, [withdrawn(case.case_no)])
    assert bus.published == [] and store.pending(case.case_no) == []


def test_an_event_the_bus_did_not_take_stays_pending_and_the_sweep_sends_it_when_due(store, bus, make_due):
    case = a_case()
    bus.away = True
    assert store.insert_case(case, [submitted(case.case_no)])  # committed all the same
    [left] = store.pending(case.case_no)
    assert left["event_type"] == "case_submitted" and left["attempts"] == 1 and bus.published == []
    bus.away = False
    store.sweep()
    assert sent(bus, case.case_no) == [] and len(store.pending(case.case_no)) == 1  # its retry time has not come
    make_due(case.case_no)
    assert store.sweep() >= 1
    assert sent(bus, case.case_no) == [("case_submitted", left["id"])]
    store.sweep()
    assert store.pending(case.case_no) == [] and len(sent(bus, case.case_no)) == 1


def test_what_a_writer_that_died_left_is_swept_after_its_grace(store, bus, make_due):
    case = a_case()
    store.insert_case(case)
    writer_bus, store.bus = store.bus, None  # the writer died between its commit and its publish
    assert store.save(case.changed(domain.WITHDRAWN, "withdrawn", "t"), 1, [withdrawn(case.case_no)])
    store.bus = writer_bus
    assert [e["event_type"] for e in store.pending(case.case_no)] == ["case_withdrawn"]
    store.sweep()
    assert sent(bus, case.case_no) == []  # a live writer might still publish it: not within the grace
    make_due(case.case_no)
    assert store.sweep() >= 1
    assert [t for t, _ in sent(bus, case.case_no)] == ["case_withdrawn"] and store.pending(case.case_no) == []


def test_an_unroutable_event_stays_pending_and_does_not_hold_the_next_back(store, bus):
    picky = FlakyBus("intake", unroutable={"case_submitted"})  # no queue is bound for case_submitted
    store.bus = picky
    case = a_case()
    store.insert_case(case)
    assert store.save(case.changed(domain.WITHDRAWN, "withdrawn", "t"), 1,
                      [submitted(case.case_no), withdrawn(case.case_no)])
    assert picky.types() == ["case_withdrawn"]
    [left] = store.pending(case.case_no)
    assert left["event_type"] == "case_submitted" and left["attempts"] == 1


# --- uploads, numbers, listing -------------------------------------------------------------------------


def test_an_upload_reads_back_as_it_was_saved(store):
    up = domain.Upload(upload_id=uuid.uuid4().hex, applicant_id="11010519491231002X", material_code="M01",
                       sha256="ab" * 32, size=12, object_key="content/sha256/" + "ab" * 32, file_name="a.pdf",
                       content_type="application/pdf", created_at=T0)
    store.save_upload(up)
    assert store.upload(up.upload_id) == up
    assert store.upload(uuid.uuid4().hex) is None



def test_uploads_are_read_together_and_a_missing_one_is_left_out(store):
    ups = [domain.Upload(upload_id=uuid.uuid4().hex, applicant_id="11010519491231002X", material_code=f"M0{i}",
                         sha256=f"{i}b" * 32, size=12 + i, object_key="content/sha256/" + f"{i}b" * 32,
                         file_name=f"{i}.pdf", content_type="application/pdf", created_at=T0) for i in range(3)]
    for up in ups:
        store.save_upload(up)
    missing = uuid.uuid4().hex
    found = store.uploads([ups[2].upload_id, missing, ups[0].upload_id, ups[0].upload_id, ""])
    assert found == {ups[2].upload_id: ups[2], ups[0].upload_id: ups[0]}
    assert store.uploads([]) == {} and store.uploads([missing]) == {}


def test_sequence_numbers_count_per_key(store):
    key, other = f"440100XSECS{uuid.uuid4().hex}", f"440100XSECS{uuid.uuid4().hex}"
    assert [store.next_sequence(key) for _ in range(3)] == [1, 2, 3]
    assert store.next_sequence(other) == 1


def test_an_applicants_cases_newest_first_in_pages_and_by_region(store):
    applicant = uuid.uuid4().hex
    made = [a_case(applicant_id=applicant, at=T0 + datetime.timedelta(minutes=n)) for n in range(3)]
    same_time = a_case(applicant_id=applicant, at=made[2].submitted_at)
    county = a_case(applicant_id=applicant, at=T0 - datetime.timedelta(days=1), region="440106")
    elsewhere = a_case(applicant_id=applicant, at=T0 - datetime.timedelta(days=2), region="110101")
    for case in (*made, same_time, county, elsewhere):
        store.insert_case(case)
    store.insert_case(a_case())  # another applicant's
    newest = sorted([made[2].case_no, same_time.case_no], reverse=True)
    everything = [c.case_no for c in store.cases_of(applicant, 10)]
    assert everything == [*newest, made[1].case_no, made[0].case_no, county.case_no, elsewhere.case_no]
    page = store.cases_of(applicant, 2)
    assert [c.case_no for c in page] == everything[:2]
    rest = store.cases_of(applicant, 10, after=(page[-1].submitted_at, page[-1].case_no))
    assert [c.case_no for c in rest] == everything[2:]
    assert [c.case_no for c in store.cases_of(applicant, 10, region_prefix="4401")] == everything[:5]
    assert store.cases_of(uuid.uuid4().hex, 10) == []


# --- the real store's own ---------------------------------------------------------------------------------


@pytest.mark.integration
def test_the_stored_case_carries_the_strings_cases_always_carried(own_database):
    from services.intake.store import CaseDoc, IntakeStore
    own_database("intake")
    store = IntakeStore()
    rect = {"material_codes": ["M02"], "requests": [], "resume_status": domain.SUBMITTED}
    case = a_case(status=domain.RECTIFYING, rectification=rect,
                  history=[domain.HistoryEntry(domain.SUBMITTED, "t0", "submitted"),
                           domain.HistoryEntry(domain.RECTIFYING, "t1", "rectification"),
                           domain.HistoryEntry(domain.RECTIFYING, "t2", "督办", note_only=True)])
    store.insert_case(case)
    raw = CaseDoc._get_collection().find_one({"_id": case.case_no})
    assert raw["status"] == "CASE_STATUS_RECTIFYING"
    assert raw["rectification"]["resume_status"] == "CASE_STATUS_SUBMITTED"
    assert raw["history"] == [{"status": "CASE_STATUS_SUBMITTED", "at": "t0", "note": "submitted"},
                              {"status": "CASE_STATUS_RECTIFYING", "at": "t1", "note": "rectification"},
                              {"status": "CASE_STATUS_RECTIFYING", "at": "t2", "note": "督办", "note_only": True}]
    assert "idempotency_key" not in raw and raw["version"] == 1  # no null in the sparse unique index
    store.save(case.changed(domain.SUBMITTED, "supplemented", "t3", rectification={}), 1)
    raw = CaseDoc._get_collection().find_one({"_id": case.case_no})
    assert "rectification" not in raw and raw["status"] == "CASE_STATUS_SUBMITTED" and raw["version"] == 2


@pytest.mark.integration
def test_task_holders_are_stored_as_department_and_region_and_older_cases_have_none(own_database):
    from services.intake.store import CaseDoc, IntakeStore
    own_database("intake")
    store = IntakeStore()
    case = a_case()
    store.insert_case(case)
    assert store.save(_with(case, task_holders=[domain.TaskHolder("gaj", "440100")]), 1)
    raw = CaseDoc._get_collection().find_one({"_id": case.case_no})
    assert raw["task_holders"] == [{"department_code": "gaj", "region_code": "440100"}]
    old_no = new_case_no()  # written before intake kept them: no task_holders at all
    CaseDoc._get_collection().insert_one({
        "_id": old_no, "package_code": "XSECS", "package_version": 3, "region_code": "440100",
        "applicant": {"id_number": "11010519491231002X"}, "status": "CASE_STATUS_IN_REVIEW", "submitted_at": T0,
        "history": [{"status": "CASE_STATUS_SUBMITTED", "at": "t0", "note": "submitted"}], "version": 4,
        "outbox": []})
    old = store.case(old_no)
    assert old.task_holders == [] and old.version == 4
    assert store.save(_with(old, task_holders=[domain.TaskHolder("wsjk", "440100")]), 4)
    assert store.case(old_no).task_holders == [domain.TaskHolder("wsjk", "440100")]


@pytest.mark.integration
def test_a_case_stored_before_versions_were_kept_reads_as_version_0_and_can_change(own_database):
    from services.intake.store import CaseDoc, IntakeStore
    own_database("intake")
    store = IntakeStore()
    case_no = new_case_no()
    CaseDoc._get_collection().insert_one({
        "_id": case_no, "package_code": "XSECS", "package_version": 3, "region_code": "440100",
        "applicant": {"id_number": "11010519491231002X"}, "status": "CASE_STATUS_IN_REVIEW", "submitted_at": T0,
        "history": [{"status": "CASE_STATUS_SUBMITTED", "at": "t0", "note": "submitted"},
                    {"status": "CASE_STATUS_IN_REVIEW", "at": "t1", "note": "review opened"}], "outbox": []})
    old = store.case_to_change(case_no)
    assert old == store.case(case_no) == store.recent(case_no)
    assert old.version == 0 and old.status is domain.IN_REVIEW and old.rectification == {} and old.noted == []
    assert store.save(old.changed(domain.APPROVED, "concluded", "t2", license_ids=["L1"]), 0)
    assert store.recent(case_no) == store.case(case_no)  # the copy the save left, as a read gives it
    assert not store.save(old.changed(domain.REJECTED, "concluded", "t2"), 0)  # now it has a version
    got = store.case(case_no)
    assert got.version == 1 and got.status is domain.APPROVED and got.license_ids == ["L1"]


@pytest.mark.integration
def test_an_entry_written_before_next_at_existed_is_swept_once_its_grace_has_passed(own_database, bus):
    """An outbox entry of an earlier version has only its `at`: a process's first sweep finds it (by
    reading the cases, until a sweep has found none) and sends it once it is older than the grace;
    the database is noted clean only when no such entry is left."""
    from services.common import mongo
    from services.intake.store import CaseDoc, IntakeStore
    own_database("intake")
    store = IntakeStore(bus)
    old, recent = a_case(), a_case()
    for case in (old, recent):
        store.insert_case(case)
    for case, age in ((old, 3600), (recent, 0)):
        entry = withdrawn(case.case_no)
        entry["at"] = entry["at"] - age
        del entry["next_at"]
        CaseDoc._get_collection().update_one({"_id": case.case_no}, {"$push": {"outbox": entry}})
    coll = CaseDoc._get_collection()
    mongo._started.discard(coll.full_name)  # as a process that just started
    assert store.sweep() == 1
    assert [t for t, _ in sent(bus, old.case_no)] == ["case_withdrawn"] and store.pending(old.case_no) == []
    assert sent(bus, recent.case_no) == [] and len(store.pending(recent.case_no)) == 1  # still in its grace
    assert coll.database["outbox_checks"].find_one({"_id": "cases"}) is None  # one is left: not clean
    assert store.sweep() == 0  # once a process: the next start looks again
    CaseDoc._get_collection().update_one({"_id": recent.case_no}, {"$set": {"outbox.0.at": time.time() - 3600}})
    mongo._started.discard(coll.full_name)
    assert store.sweep() == 1 and [t for t, _ in sent(bus, recent.case_no)] == ["case_withdrawn"]
    mongo._started.discard(coll.full_name)
    assert store.sweep() == 0  # none left: noted, and later starts do not read the cases for them
    assert coll.database["outbox_checks"].find_one({"_id": "cases"}) is not None


@pytest.mark.integration
def test_a_workers_first_sweep_drops_the_indexes_an_earlier_version_kept(own_database, bus):
    """Each index costs the local server about 1.3 ms on every write of a case, used or not: the
    single index on the applicant (the compound one answers that query) and the one on outbox.at
    (the sweep and the gauge use outbox.next_at) that an earlier version made are dropped by a
    worker's first sweep; the indexes still declared stay, and the applicant's cases are still
    found by the compound index."""
    from services.common import mongo
    from services.intake.store import CaseDoc, IntakeStore
    own_database("intake")
    store = IntakeStore(bus)
    case = a_case()
    store.insert_case(case)
    coll = CaseDoc._get_collection()
    coll.create_index("applicant.id_number")
    coll.create_index("outbox.at")
    keys = {tuple(i["key"].items()) for i in coll.list_indexes()}
    assert ((("applicant.id_number", 1),) in keys) and ((("outbox.at", 1),) in keys)
    mongo._started.discard(coll.full_name)  # as a worker that just started
    store.sweep()
    keys = {tuple(i["key"].items()) for i in coll.list_indexes()}
    assert (("applicant.id_number", 1),) not in keys and (("outbox.at", 1),) not in keys
    assert (("outbox.next_at", 1),) in keys and len(keys) == 4  # _id, next_at, the applicant's, idempotency
    plan = coll.find({"applicant.id_number": case.applicant["id_number"]}).explain()
    assert "applicant.id_number_1_submitted_at_-1__id_-1" in str(plan)
    assert mongo.retire_indexes(coll, [(("outbox.at", 1),)]) == []  # gone already: nothing to do


@pytest.mark.integration
def test_an_index_another_worker_dropped_first_is_no_error(own_database, bus):
    """Two workers of a service start together: both list the retired index, one drops it, and the
    other's drop finds it gone (IndexNotFound), which is what it wanted."""
    from services.common import mongo
    from services.intake.store import CaseDoc, IntakeStore
    own_database("intake")
    IntakeStore(bus).insert_case(a_case())
    coll = CaseDoc._get_collection()
    coll.create_index("outbox.at")

    class ListedBeforeTheOtherDropped:
        """The collection as the slower worker saw it: the index listed, then dropped by the other."""
        full_name = coll.full_name

        def list_indexes(self):
            listed = list(coll.list_indexes())
            coll.drop_index("outbox.at_1")
            return iter(listed)

        def drop_index(self, name):
            return coll.drop_index(name)

    assert mongo.retire_indexes(ListedBeforeTheOtherDropped(), [(("outbox.at", 1),)]) == ["outbox.at_1"]
    assert "outbox.at_1" not in {i["name"] for i in coll.list_indexes()}


@pytest.mark.integration
def test_a_sweep_that_may_not_drop_the_retired_indexes_still_sends_what_is_due(own_database, bus, monkeypatch, caplog):
    """Dropping the retired indexes is refused (a database user without dropIndex): the worker's
    first sweep says so and publishes what is due all the same, instead of failing every run."""
    from pymongo.errors import OperationFailure

    from services.common import mongo
    from services.intake.store import CaseDoc, IntakeStore

    def refused(coll, keys):
        raise OperationFailure("not authorized on onething_intake to execute command dropIndexes", 13)

    own_database("intake")
    store = IntakeStore(bus)
    case = a_case()
    store.insert_case(case)
    store.bus = None  # the writer died between its commit and its publish
    assert store.save(case.changed(domain.WITHDRAWN, "withdrawn", "t"), 1, [withdrawn(case.case_no)])
    store.bus = bus
    due_now(store, case.case_no)
    monkeypatch.setattr(mongo, "retire_indexes", refused)
    mongo._started.discard(CaseDoc._get_collection().full_name)
    with caplog.at_level("WARNING", logger="services.common.mongo"):
        assert store.sweep() == 1
    assert "could not drop the retired indexes" in caplog.text
    assert [t for t, _ in sent(bus, case.case_no)] == ["case_withdrawn"]
