"""The evaluation store's contract, held by the in-memory fake (services/evaluation/fakes.py) and by
the MongoDB store (integration: the real local server): rateable cases, ratings unique per case and
channel, saves refused when the rating changed since it was read, events published after the save
and removed, an event a failed publish left pending published by the sweep; a province's rolled-up
ratings of its cities, saved with the version they were read at and counted once they are known."""
import time
import uuid

import pytest

from services.common.bus import RecordingBus, outbox_entry
from services.common.testing import FlakyBus
from services.evaluation import domain
from services.evaluation.domain import Grade, Rateable, RectificationStatus, RolledUpRating

OPEN, CLOSED = RectificationStatus.OPEN, RectificationStatus.CLOSED


@pytest.fixture(params=["fake", pytest.param("mongo", marks=pytest.mark.integration)])
def make_store(request):
    """A function bus -> a store of the kind under test, publishing on that bus."""
    if request.param == "fake":
        from services.evaluation.fakes import FakeEvaluationStore
        return FakeEvaluationStore
    from services.evaluation.store import EvaluationStore
    request.getfixturevalue("own_database")("evaluation")
    return EvaluationStore


@pytest.fixture
def bus():
    return RecordingBus("evaluation")


@pytest.fixture
def store(make_store, bus):
    return make_store(bus)


def _unique(prefix="K"):
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def body(case_no, channel="online", grade=Grade.VERY_DISSATISFIED, region="440100", department="wsjk",
         package="XSECS", rated_on="2024-03-04", status=OPEN):
    bad = grade.bad
    out = {"case_no": case_no, "applicant_id": "11010519491231002X", "channel": channel, "grade": grade,
           "dimensions": {"整体满意度": 1} if channel == "online" else {}, "comment": "材料退回两次" if bad else "",
           "bad_review": bad, "satisfied": grade.satisfied, "rated_at": "2024-03-04T02:00:00+00:00",
           "rated_on": rated_on, "department_code": department, "region_code": region, "package_code": package}
    if bad:
        out["rectification"] = {
            "case_no": case_no, "channel": channel, "department_code": department, "region_code": region,
            "package_code": package, "grade": grade, "comment": out["comment"],
            "opened_at": "2024-03-04T02:00:00+00:00", "deadline": "2024-03-11", "deadline_provisional": False,
            "status": status, "callbacks": []}
    return out


def event(case_no, kind="evaluation_received"):
    from onething.evaluation.v1 import events_pb2
    return outbox_entry(kind, events_pb2.EvaluationReceived(case_no=case_no, grade=5, bad_review=True), case_no)


def test_a_rateable_case_is_kept_and_adding_it_again_changes_nothing(store):
    case_no = _unique()
    assert store.rateable(case_no) is None
    case = Rateable(case_no, "11010519491231002X", "440100", "XSECS", "wsjk")
    store.add_rateable(case)
    store.add_rateable(case)
    assert store.rateable(case_no) == case


def test_a_withdrawal_stays_whichever_report_comes_first(store):
    first, later = _unique(), _unique()
    store.add_rateable(Rateable(first, "A", "440100", "XSECS", "wsjk"))
    store.mark_withdrawn(first)
    store.mark_withdrawn(first)
    assert store.rateable(first) == Rateable(first, "A", "440100", "XSECS", "wsjk", withdrawn=True)
    store.mark_withdrawn(later)
    store.add_rateable(Rateable(later, "B", "440300", "KBQY", "gaj"))
    assert store.rateable(later) == Rateable(later, "B", "440300", "KBQY", "gaj", withdrawn=True)


def test_a_rating_reads_back_with_its_enums_and_is_unique_per_channel(store):
    case_no = _unique()
    rated = body(case_no)
    assert store.add_rating(rated, [event(case_no)]) is not None
    assert store.rating(case_no) == rated
    got = store.rating(case_no)
    assert got["grade"] is Grade.VERY_DISSATISFIED and got["rectification"]["status"] is OPEN
    assert store.add_rating(body(case_no, grade=Grade.SATISFIED), [event(case_no)]) is None  # same channel
    assert store.rating(case_no) == rated
    assert store.add_rating(body(case_no, channel="window", grade=Grade.SATISFIED), []) is not None
    assert store.rating(_unique()) is None


def test_rectifications_are_the_bad_ratings_of_a_case(store):
    case_no = _unique()
    store.add_rating(body(case_no, channel="online"), [])
    store.add_rating(body(case_no, channel="window", grade=Grade.SATISFIED), [])
    [(_, found)] = store.rectifications(case_no)
    assert found["channel"] == "online" and found["rectification"]["status"] is OPEN
    assert store.rectifications(case_no, "window") == [] and len(store.rectifications(case_no, "online")) == 1


def test_a_save_is_refused_when_the_rating_changed_since_it_was_read(store):
    case_no = _unique()
    store.add_rating(body(case_no), [])
    [(revision, found)] = store.rectifications(case_no)
    first = dict(found, rectification=dict(found["rectification"], callbacks=[{"at": "t1", "by": "a", "note": "n"}]))
    assert store.save_rectification(revision, OPEN, first, [])
    second = dict(found, rectification=dict(found["rectification"], callbacks=[{"at": "t2", "by": "b", "note": "n"}]))
    assert not store.save_rectification(revision, OPEN, second, [])  # the version read is stale
    assert store.rating(case_no)["rectification"]["callbacks"] == [{"at": "t1", "by": "a", "note": "n"}]
    [(fresh, _)] = store.rectifications(case_no)
    closed = dict(first, rectification=dict(first["rectification"], status=CLOSED, on_time=True))
    assert not store.save_rectification(fresh, CLOSED, closed, [])  # not in the state expected
    assert store.save_rectification(fresh, OPEN, closed, [])
    assert store.rating(case_no)["rectification"]["status"] is CLOSED


def test_events_are_published_after_the_save_then_removed(store, bus):
    case_no = _unique()
    entries = [event(case_no), event(case_no, "bad_review_opened")]
    key = store.add_rating(body(case_no), entries)
    assert [(t, h["event_id"], h["case_no"]) for t, _, h in bus.published] == [
        ("evaluation_received", entries[0]["id"], case_no), ("bad_review_opened", entries[1]["id"], case_no)]
    assert bus.published[0][1] == entries[0]["payload"]
    assert store.pending(key) == []
    [(revision, found)] = store.rectifications(case_no)
    closed = dict(found, rectification=dict(found["rectification"], status=CLOSED))
    closing = event(case_no, "bad_review_closed")
    assert store.save_rectification(revision, OPEN, closed, [closing])
    assert bus.types()[-1] == "bad_review_closed" and bus.published[-1][2]["event_id"] == closing["id"]
    assert store.pending(key) == []


def test_a_refused_save_publishes_nothing(store, bus):
    case_no = _unique()
    key = store.add_rating(body(case_no), [])
    [(revision, found)] = store.rectifications(case_no)
    assert store.save_rectification(revision, OPEN, found, [])
    assert not store.save_rectification(revision, OPEN, found, [event(case_no, "bad_review_closed")])
    assert bus.published == [] and store.pending(key) == []


def test_the_sweep_publishes_what_a_failed_publish_left(make_store):
    failing = FlakyBus("evaluation", away=True)
    store = make_store(failing)
    case_no = _unique()
    entry = event(case_no)
    key = store.add_rating(body(case_no), [entry])  # committed; the publish failed
    assert key is not None and failing.tries == 1
    assert [e["id"] for e in store.pending(key)] == [entry["id"]]
    assert store.pending(key)[0]["attempts"] == 1
    recording = RecordingBus("evaluation")
    store.bus = recording  # the broker is back
    deadline = time.time() + 15  # the real store tries a failed entry again after its backoff
    while time.time() < deadline and store.pending(key):
        store.sweep()
        time.sleep(0.2)
    assert store.pending(key) == []
    assert [h["event_id"] for _, _, h in recording.published if h["case_no"] == case_no] == [entry["id"]]


def test_bad_reviews_filter_by_department_region_and_openness(store):
    region = f"9{uuid.uuid4().int % 100000:05d}"
    a, b, c = _unique("A"), _unique("B"), _unique("C")
    store.add_rating(body(a, region=region, department="wsjk"), [])
    store.add_rating(body(b, region=region, department="gaj", status=CLOSED), [])
    store.add_rating(body(c, region=region, department="wsjk", grade=Grade.SATISFIED), [])
    assert sorted(r["case_no"] for r in store.bad_reviews(region_code=region)) == sorted([a, b])
    assert [r["case_no"] for r in store.bad_reviews("wsjk", region)] == [a]
    assert [r["case_no"] for r in store.bad_reviews(region_code=region, open_only=True)] == [a]
    assert store.bad_reviews(region_code=region, open_only=True)[0]["rectification"]["status"] is OPEN


def test_bad_reviews_come_in_list_order_after_a_place_and_up_to_a_limit(store):
    """By deadline, then case number (a shorter one first, as it sorts alone), then channel."""
    region = f"9{uuid.uuid4().int % 100000:05d}"
    stem = _unique("L")
    rows = [(stem + "B", "online", "2024-03-08"), (stem + "A", "window", "2024-03-11"),
            (stem + "A", "online", "2024-03-11"), (stem + "AA", "online", "2024-03-11"),
            (stem + "A0", "online", "2024-03-12")]
    for case_no, channel, deadline in rows:
        rated = body(case_no, channel, region=region)
        rated["rectification"]["deadline"] = deadline
        store.add_rating(rated, [])
    store.add_rating(body(_unique(), region=region, grade=Grade.SATISFIED), [])
    order = [(stem + "B", "online"), (stem + "A", "online"), (stem + "A", "window"), (stem + "AA", "online"),
             (stem + "A0", "online")]

    def listed(**more):
        return [(r["case_no"], r["channel"]) for r in store.bad_reviews(region_code=region, **more)]
    assert listed() == order
    assert listed(limit=2) == order[:2]
    place = domain.bad_review_order(store.bad_reviews(region_code=region)[1]["rectification"])
    assert listed(after=place) == order[2:]
    assert listed(after=place, limit=1) == order[2:3]
    assert listed(after=domain.bad_review_order(store.bad_reviews(region_code=region)[-1]["rectification"])) == []


@pytest.mark.integration
def test_bad_reviews_are_read_through_their_own_index(request, bus):
    """The bad reviews of a department or a region are a small part of its ratings: the query
    walks the index that starts with n_bad, in the list's order, not every rating of the department
    or region; the index on n_bad alone that came before is dropped by the first sweep."""
    from services.common import mongo
    from services.evaluation.store import EvaluationDoc, EvaluationStore
    request.getfixturevalue("own_database")("evaluation")
    store = EvaluationStore(bus)
    store.add_rating(body(_unique(), region="440100", department="wsjk"), [])
    coll = EvaluationDoc._get_collection()
    coll.create_index([("n_bad", 1)])  # as an earlier version made it
    mongo._started.discard(coll.full_name)  # as a process that just started
    store.sweep()
    keys = {tuple(i["key"].items()) for i in coll.list_indexes()}
    assert (("n_bad", 1), ("bad_order", 1)) in keys and (("n_bad", 1),) not in keys
    plan = str(coll.find({"n_bad": 1, "bad_order": {"$gt": "", "$lt": "~"}}).sort("bad_order", 1).explain()[
        "queryPlanner"])
    assert "'indexName': 'n_bad_1_bad_order_1'" in plan


@pytest.mark.integration
def test_bad_reviews_stored_before_they_kept_their_place_get_it_on_a_sweep(request, bus):
    """A 差评 an earlier version stored has no `bad_order` and is in no list until the worker's
    sweep gives it one; the database then notes that none is left and later sweeps do not look."""
    from services.evaluation.store import EvaluationDoc, EvaluationStore
    request.getfixturevalue("own_database")("evaluation")
    store = EvaluationStore(bus)
    region = f"9{uuid.uuid4().int % 100000:05d}"
    old, good = _unique("O"), _unique("G")
    store.add_rating(body(old, region=region), [])
    store.add_rating(body(good, region=region, grade=Grade.SATISFIED), [])
    coll = EvaluationDoc._get_collection()
    coll.update_many({"case_no": {"$in": [old, good]}}, {"$unset": {"bad_order": ""}})
    assert store.bad_reviews(region_code=region) == []  # found by no place
    assert store.give_bad_order() is False  # one given: looked at once more
    assert coll.find_one({"case_no": old})["bad_order"] == f"2024-03-11 {old} online"
    assert "bad_order" not in coll.find_one({"case_no": good})  # not a 差评: not in the list, not looked for
    assert [r["case_no"] for r in store.bad_reviews(region_code=region)] == [old]
    assert store.give_bad_order() is True and coll.database["outbox_checks"].find_one({"_id": "evaluations.bad_order"})
    store.backfilled = set()
    store.sweep()
    assert "give_bad_order" in store.backfilled


def test_statistics_group_by_a_field_within_the_filters(store):
    region = f"9{uuid.uuid4().int % 100000:05d}"
    package = _unique("P")
    store.add_rating(body(_unique(), region=region, package=package, grade=Grade.SATISFIED), [])
    closed = body(_unique(), region=region, package=package, department="gaj", status=CLOSED)
    closed["rectification"]["on_time"] = True
    store.add_rating(closed, [])
    store.add_rating(body(_unique(), region=region, package=package, rated_on="2024-03-06"), [])
    rows = sorted(store.statistics("department_code", region_code=region), key=lambda r: r["key"])
    assert rows == [{"key": "gaj", "ratings": 1, "satisfied": 0, "bad": 1, "closed": 1, "on_time": 1, "open": 0},
                    {"key": "wsjk", "ratings": 2, "satisfied": 1, "bad": 1, "closed": 0, "on_time": 0, "open": 1}]
    assert store.statistics("package_code", package_code=package, rated_from="2024-03-05") == [
        {"key": package, "ratings": 1, "satisfied": 0, "bad": 1, "closed": 0, "on_time": 0, "open": 1}]
    assert store.statistics("region_code", region_code=region, rated_to="2024-03-03") == []


def _close(store, case_no, on_time=True):
    [(revision, found)] = store.rectifications(case_no)
    found["rectification"].update(status=CLOSED, on_time=on_time)
    assert store.save_rectification(revision, OPEN, found, [])


def test_statistics_are_exact_before_and_after_the_ratings_are_counted(store):
    """Whether a change of a rating is in the daily figures yet or not, the statistics count it once."""
    region = f"9{uuid.uuid4().int % 100000:05d}"
    bad, later = _unique("B"), _unique("L")
    store.add_rating(body(bad, region=region), [])
    store.add_rating(body(_unique(), region=region, grade=Grade.SATISFIED), [])
    store.add_rating(body(_unique(), region=region, rated_on="2024-03-05", department="gaj"), [])
    expected = [{"key": region, "ratings": 3, "satisfied": 1, "bad": 2, "closed": 0, "on_time": 0, "open": 2}]
    assert store.statistics("region_code", region_code=region) == expected
    store.count_figures()
    assert store.statistics("region_code", region_code=region) == expected
    _close(store, bad)  # after it was counted as open
    expected[0].update(closed=1, on_time=1, open=1)
    assert store.statistics("region_code", region_code=region) == expected
    store.add_rating(body(later, region=region, rated_on="2024-03-05"), [])
    store.count_figures()
    expected[0].update(ratings=4, bad=3, open=2)
    assert store.statistics("region_code", region_code=region) == expected
    assert store.statistics("department_code", region_code=region, rated_from="2024-03-05") == [
        {"key": "gaj", "ratings": 1, "satisfied": 0, "bad": 1, "closed": 0, "on_time": 0, "open": 1},
        {"key": "wsjk", "ratings": 1, "satisfied": 0, "bad": 1, "closed": 0, "on_time": 0, "open": 1}]


def test_codes_that_would_run_together_count_apart(store):
    """The daily figures of ("x|y", "z") and ("x", "y|z") are two, whatever the codes hold."""
    region = f"9{uuid.uuid4().int % 100000:05d}"
    store.add_rating(body(_unique(), region=region, department="x|y", package="z"), [])
    store.add_rating(body(_unique(), region=region, department="x", package="y|z"), [])
    for _ in ("before the count", "after it"):
        assert sorted((r["key"], r["ratings"]) for r in store.statistics("department_code", region_code=region)) == [
            ("x", 1), ("x|y", 1)]
        assert sorted((r["key"], r["ratings"]) for r in store.statistics("package_code", region_code=region)) == [
            ("y|z", 1), ("z", 1)]
        store.count_figures()


def _day_key(day, region, department="wsjk", package="XSECS"):
    from services.evaluation.daily import day_of
    return day_of({"rated_on": day, "region_code": region, "department_code": department, "package_code": package})


def _counted_store(request, bus):
    from services.evaluation.store import EvaluationStore
    request.getfixturevalue("own_database")("evaluation")
    return EvaluationStore(bus)


@pytest.mark.integration
def test_counting_keeps_daily_figures_and_marks_the_ratings_counted(request, bus):
    from services.evaluation.store import DailyFiguresDoc, EvaluationDoc
    store = _counted_store(request, bus)
    region = f"9{uuid.uuid4().int % 100000:05d}"
    cases = [_unique() for _ in range(3)]
    for case_no in cases:
        store.add_rating(body(case_no, region=region), [])
    ratings, days = EvaluationDoc._get_collection(), DailyFiguresDoc._get_collection()
    assert ratings.count_documents({"case_no": {"$in": cases}, "uncounted": 1}) == 3
    assert store.count_figures() >= 3
    day = days.find_one({"_id": _day_key("2024-03-04", region)})
    assert (day["n_ratings"], day["n_bad"], day["n_open"], day["version"]) == (3, 3, 3, 1)
    assert ratings.count_documents({"case_no": {"$in": cases}, "uncounted": 1}) == 0
    assert store.count_figures() == 0  # nothing new: nothing read twice
    _close(store, cases[0])
    bus_sweeps = store.sweep()  # the worker's sweep counts too
    assert bus_sweeps >= 0
    day = days.find_one({"_id": _day_key("2024-03-04", region)})
    assert (day["n_ratings"], day["n_open"], day["n_closed"], day["n_on_time"], day["version"]) == (3, 2, 1, 1, 2)


@pytest.mark.integration
def test_a_count_cut_off_before_the_ratings_noted_it_counts_nothing_twice(request, bus, monkeypatch):
    """The worker stopped after saving a day's figures and before its ratings noted that they are
    counted: the statistics, the next count, and a rating saved again meanwhile each count once."""
    from services.evaluation.daily import DailyFigures
    from services.evaluation.store import DailyFiguresDoc
    store = _counted_store(request, bus)
    region = f"9{uuid.uuid4().int % 100000:05d}"
    first, second = _unique(), _unique()
    for case_no in (first, second):
        store.add_rating(body(case_no, region=region), [])

    def stopped(entries):
        raise ConnectionError("the worker stopped here")
    monkeypatch.setattr(DailyFigures, "note_counted", lambda self, entries: stopped(entries))
    with pytest.raises(ConnectionError):
        store.count_figures()
    monkeypatch.undo()
    day = DailyFiguresDoc._get_collection().find_one({"_id": _day_key("2024-03-04", region)})
    assert day["n_ratings"] == 2 and len(day["last_batch"]) == 2  # saved, but no rating noted it
    expected = [{"key": region, "ratings": 2, "satisfied": 0, "bad": 2, "closed": 0, "on_time": 0, "open": 2}]
    assert store.statistics("region_code", region_code=region) == expected
    _close(store, first, on_time=False)  # saved again before any count noted it
    expected[0].update(closed=1, open=1)
    assert store.statistics("region_code", region_code=region) == expected
    store.count_figures()
    assert store.statistics("region_code", region_code=region) == expected
    day = DailyFiguresDoc._get_collection().find_one({"_id": _day_key("2024-03-04", region)})
    assert (day["n_ratings"], day["n_open"], day["n_closed"]) == (2, 1, 1)


@pytest.mark.integration
def test_counts_running_side_by_side_count_each_rating_once(request, bus):
    """Workers counting different ratings of the same day at once: the day's figures are saved with
    the version read, so neither count overwrites the other's."""
    import threading

    from services.evaluation.store import OWN_DAYS, DailyFiguresDoc, EvaluationDoc
    store = _counted_store(request, bus)
    region = f"9{uuid.uuid4().int % 100000:05d}"
    for n in range(80):
        store.add_rating(body(_unique(), region=region, grade=Grade.SATISFIED if n % 4 else Grade.VERY_DISSATISFIED),
                         [])
    ids = [d["_id"] for d in EvaluationDoc._get_collection().find({"region_code": region}, {"_id": 1})]
    key = _day_key("2024-03-04", region)
    start = threading.Barrier(8)

    def count(group):
        start.wait()
        for n in range(0, len(group), 2):
            OWN_DAYS.count_into(key, group[n:n + 2])
    threads = [threading.Thread(target=count, args=(ids[n::8],)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    while store.count_figures():  # those that lost every try to the others, as a later sweep would
        pass
    day = DailyFiguresDoc._get_collection().find_one({"_id": key})
    assert (day["n_ratings"], day["n_satisfied"], day["n_bad"]) == (80, 60, 20)
    assert store.statistics("region_code", region_code=region) == [
        {"key": region, "ratings": 80, "satisfied": 60, "bad": 20, "closed": 0, "on_time": 0, "open": 20}]


@pytest.mark.integration
def test_ratings_stored_before_the_daily_figures_are_counted_by_the_sweeps(request, bus):
    from services.evaluation.store import EvaluationDoc
    store = _counted_store(request, bus)
    region = f"9{uuid.uuid4().int % 100000:05d}"
    old = _unique("O")
    store.add_rating(body(old, region=region), [])
    EvaluationDoc._get_collection().update_one({"case_no": old}, {"$unset": {"uncounted": "", "counted_version": ""}})
    assert store.statistics("region_code", region_code=region) == []  # in neither the figures nor the uncounted
    from services.evaluation.store import RolledUpRatingDoc
    rolled_up = RolledUpRatingDoc._get_collection()
    rolled_up.create_index([("region_code", 1)])  # as an earlier version made it for the aggregation
    assert store.mark_uncounted() is False
    assert (("region_code", 1),) not in {tuple(i["key"].items()) for i in rolled_up.list_indexes()}
    assert store.statistics("region_code", region_code=region)[0]["ratings"] == 1
    store.count_figures()
    assert store.statistics("region_code", region_code=region)[0]["ratings"] == 1
    assert store.mark_uncounted() is True


# -- a province's rolled-up ratings of its cities --------------------------------------------------


def rolled(case_no, site="440300", channel="online", grade=Grade.VERY_DISSATISFIED, region="440300",
           department="gaj", package="KBQY", rated_on="2024-03-04", rated=True, closed=False, on_time=False,
           events=("e1",)):
    return RolledUpRating(site=site, case_no=case_no, channel=channel, grade=grade if rated else None,
                          department_code=department, region_code=region, package_code=package, rated_on=rated_on,
                          rated=rated, bad_review=bool(grade.bad or closed), closed=closed, on_time=on_time,
                          events=tuple(events))


def test_a_rolled_up_rating_is_kept_per_site_case_and_channel(store):
    case_no = _unique()
    assert store.rolled_up("440300", case_no, "online") is None
    first = rolled(case_no)
    assert store.save_rolled_up(None, first)
    _, found = store.rolled_up("440300", case_no, "online")
    assert found == first and found.grade is Grade.VERY_DISSATISFIED
    assert store.rolled_up("440100", case_no, "online") is None  # another city's case of that number
    assert store.rolled_up("440300", case_no, "window") is None
    other = rolled(case_no, site="440100", region="440100", events=("e9",))
    assert store.save_rolled_up(None, other) and store.rolled_up("440100", case_no, "online")[1] == other
    assert store.rolled_up("440300", case_no, "online")[1] == first


def test_a_rolled_up_rating_is_saved_only_as_the_version_it_was_read_at(store):
    case_no = _unique()
    store.save_rolled_up(None, rolled(case_no))
    assert not store.save_rolled_up(None, rolled(case_no, events=("e2",)))  # it exists already
    revision, found = store.rolled_up("440300", case_no, "online")
    closed = rolled(case_no, closed=True, on_time=True, events=("e1", "e3"))
    assert store.save_rolled_up(revision, closed)
    assert not store.save_rolled_up(revision, rolled(case_no, events=("e1", "e4")))  # stale: changed since
    fresh, found = store.rolled_up("440300", case_no, "online")
    assert found == closed and fresh.version != revision.version


def test_rolled_up_statistics_count_a_rating_once_it_is_known_within_the_filters(store):
    region = f"9{uuid.uuid4().int % 100000:05d}"
    package = _unique("P")
    store.save_rolled_up(None, rolled(_unique(), region=region, package=package, grade=Grade.SATISFIED,
                                      department="wsjk"))
    store.save_rolled_up(None, rolled(_unique(), region=region, package=package, closed=True, on_time=True))
    store.save_rolled_up(None, rolled(_unique(), region=region, package=package, rated_on="2024-03-06"))
    # only its closing came so far: not counted, not even as closed
    unknown = _unique()
    store.save_rolled_up(None, rolled(unknown, region=region, package=package, rated=False, rated_on="",
                                      closed=True))
    for _ in ("before the count", "after it"):  # the province's daily figures of its cities' ratings
        rows = sorted(store.rolled_up_statistics("department_code", region_code=region), key=lambda r: r["key"])
        assert rows == [{"key": "gaj", "ratings": 2, "satisfied": 0, "bad": 2, "closed": 1, "on_time": 1, "open": 1},
                        {"key": "wsjk", "ratings": 1, "satisfied": 1, "bad": 0, "closed": 0, "on_time": 0, "open": 0}]
        assert store.rolled_up_statistics("package_code", package_code=package, rated_from="2024-03-05") == [
            {"key": package, "ratings": 1, "satisfied": 0, "bad": 1, "closed": 0, "on_time": 0, "open": 1}]
        assert store.rolled_up_statistics("region_code", region_code=region, department_code="wsjk") == [
            {"key": region, "ratings": 1, "satisfied": 1, "bad": 0, "closed": 0, "on_time": 0, "open": 0}]
        assert store.rolled_up_statistics("region_code", region_code=region, rated_to="2024-03-03") == []
        assert store.statistics("region_code", region_code=region) == []  # not the site's own ratings
        store.count_figures()
    # its rating comes after it was counted as nothing: it counts now, before and after the next count
    revision, _ = store.rolled_up("440300", unknown, "online")
    assert store.save_rolled_up(revision, rolled(unknown, region=region, package=package, closed=True))
    for _ in ("before the count", "after it"):
        assert store.rolled_up_statistics("region_code", region_code=region, department_code="gaj") == [
            {"key": region, "ratings": 3, "satisfied": 0, "bad": 3, "closed": 2, "on_time": 1, "open": 1}]
        store.count_figures()


def test_own_statistics_leave_the_rolled_up_ratings_out(store):
    region = f"9{uuid.uuid4().int % 100000:05d}"
    store.add_rating(body(_unique(), region=region, grade=Grade.SATISFIED), [])
    store.save_rolled_up(None, rolled(_unique(), region=region))
    assert store.statistics("region_code", region_code=region) == [
        {"key": region, "ratings": 1, "satisfied": 1, "bad": 0, "closed": 0, "on_time": 0, "open": 0}]
    assert store.rolled_up_statistics("region_code", region_code=region) == [
        {"key": region, "ratings": 1, "satisfied": 0, "bad": 1, "closed": 0, "on_time": 0, "open": 1}]
