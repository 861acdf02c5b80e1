"""Evaluation use cases over the in-memory store (services/evaluation/fakes.py) publishing on a
RecordingBus: a 差评 opens a rectification, the call-back, the closure and its on-time flag,
listing and statistics; every refusal changes nothing."""
import datetime as dt

import pytest

from services.common.audit import MemoryAuditLog
from services.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from services.evaluation import handlers
from services.evaluation.domain import Grade, Rateable, RectificationStatus, StatisticsGroup
from services.evaluation.wiring import build_evaluation

UTC = dt.UTC
APPLICANT = "11010519491231002X"
BAD = Grade.VERY_DISSATISFIED
OPEN, CLOSED = RectificationStatus.OPEN, RectificationStatus.CLOSED
REGION, DEPARTMENT, PACKAGE = StatisticsGroup.REGION, StatisticsGroup.DEPARTMENT, StatisticsGroup.PACKAGE


def delivered(evaluation, case_no="C1", region="440100", package="XSECS", lead="wsjk"):
    evaluation.case_delivered(Rateable(case_no, APPLICANT, region, package, lead))


def rate(evaluation, case_no="C1", grade=BAD, comment="材料退回两次没有说明", channel="online", department=""):
    return evaluation.submit(case_no, APPLICANT, channel, grade, {"整体满意度": 1} if channel == "online" else {},
                             comment, department)


def test_good_rating_opens_nothing(evaluation, bus):
    delivered(evaluation)
    body = rate(evaluation, grade=Grade.SATISFIED, comment="")
    assert "rectification" not in body and body["department_code"] == "wsjk"
    assert bus.types() == ["evaluation_received"]


def test_bad_rating_opens_a_rectification_for_the_lead_department(evaluation, store, bus):
    delivered(evaluation)
    body = rate(evaluation)
    rect = body["rectification"]
    assert rect["department_code"] == "wsjk" and rect["status"] is OPEN
    assert rect["deadline"] == "2024-03-11" and rect["deadline_provisional"] is False
    assert (rect["region_code"], rect["package_code"]) == ("440100", "XSECS")
    assert bus.types() == ["evaluation_received", "bad_review_opened"]
    opened = bus.published[1][1]
    # the event's deadline is a google.type.Date, its moment a Timestamp, its channel the Channel enum
    assert opened["department_code"] == "wsjk" and opened["deadline"] == {"year": 2024, "month": 3, "day": 11}
    assert opened["opened_at"] == "2024-03-04T02:00:00Z" and opened["channel"] == "CHANNEL_ONLINE"
    assert opened["grade"] == "GRADE_VERY_DISSATISFIED" and bus.published[1][2]["case_no"] == "C1"
    # what a province needs to count the rating as it counts its own (issue 11: statistics roll up)
    assert bus.published[0][1] == {"case_no": "C1", "grade": "GRADE_VERY_DISSATISFIED", "bad_review": True,
                                   "acted_by": "applicant", "channel": "CHANNEL_ONLINE", "department_code": "wsjk",
                                   "region_code": "440100", "package_code": "XSECS",
                                   "rated_at": "2024-03-04T02:00:00Z"}
    assert store.pending(1) == []  # published, so no longer kept


def test_the_named_department_takes_the_rectification(evaluation):
    delivered(evaluation)
    assert rate(evaluation, department="gaj")["rectification"]["department_code"] == "gaj"


def test_bad_rating_without_any_department_is_refused(evaluation, store, bus):
    delivered(evaluation, lead="")
    with pytest.raises(InvalidArgument, match="department_code"):
        rate(evaluation)
    assert store.ratings == {} and bus.published == []
    assert rate(evaluation, department="gaj")["rectification"]["department_code"] == "gaj"


def test_existing_refusals_still_hold(evaluation, store):
    with pytest.raises(FailedPrecondition, match="once its results have been delivered; if it shows DELIVERED already, try again"):
        rate(evaluation)
    delivered(evaluation)
    with pytest.raises(PermissionDenied):
        evaluation.submit("C1", "440106199001011234", "online", BAD, {}, "x", "")
    rate(evaluation)
    with pytest.raises(AlreadyExists):
        rate(evaluation)
    with pytest.raises(InvalidArgument, match="department code"):
        rate(evaluation, channel="window", department="GA J")
    assert len(store.ratings) == 1


def test_callback_then_close_on_time(evaluation, bus, clock):
    delivered(evaluation)
    rate(evaluation)
    clock.now = dt.datetime(2024, 3, 6, 3, 0, tzinfo=UTC)
    rect = evaluation.record_callback("C1", "已电话回访，解释补正原因", "staff-1")
    assert rect["callbacks"] == [{"at": clock.now.isoformat(), "by": "staff-1", "note": "已电话回访，解释补正原因"}]
    clock.now = dt.datetime(2024, 3, 11, 15, 0, tzinfo=UTC)  # 23:00 on the deadline day in Shanghai
    rect = evaluation.close("C1", "已改进一次告知清单", "chief-1")
    assert rect["status"] is CLOSED and rect["on_time"] is True
    assert rect["closed_by"] == "chief-1" and rect["result"] == "已改进一次告知清单"
    assert bus.types() == ["evaluation_received", "bad_review_opened", "bad_review_closed"]
    closed = bus.published[-1][1]
    assert closed["on_time"] is True and closed["department_code"] == "wsjk" and closed["result"]
    assert closed["deadline"] == {"year": 2024, "month": 3, "day": 11} and closed["closed_at"] == "2024-03-11T15:00:00Z"
    assert closed["channel"] == "CHANNEL_ONLINE" and rect["closed_at"] == "2024-03-11T15:00:00+00:00"  # kept as before


def test_close_after_the_deadline_day_is_late(evaluation, clock):
    delivered(evaluation)
    rate(evaluation)
    evaluation.record_callback("C1", "回访", "staff-1")
    clock.now = dt.datetime(2024, 3, 11, 16, 0, tzinfo=UTC)  # 00:00 the day after, Shanghai
    assert evaluation.close("C1", "done", "chief-1")["on_time"] is False
    [row] = evaluation.statistics(DEPARTMENT)
    assert (row["rectifications_closed"], row["closed_on_time"]) == (1, 0)


def test_close_needs_a_callback_first(evaluation, store, bus):
    delivered(evaluation)
    rate(evaluation)
    before = store.rectifications("C1")
    with pytest.raises(FailedPrecondition, match="RecordCallback"):
        evaluation.close("C1", "done", "chief-1")
    assert store.rectifications("C1") == before and "bad_review_closed" not in bus.types()


def test_nothing_after_closing(evaluation, bus):
    delivered(evaluation)
    rate(evaluation)
    evaluation.record_callback("C1", "回访", "staff-1")
    evaluation.close("C1", "done", "chief-1")
    with pytest.raises(FailedPrecondition, match="already closed"):
        evaluation.close("C1", "again", "chief-1")
    with pytest.raises(FailedPrecondition, match="already closed"):
        evaluation.record_callback("C1", "again", "staff-1")
    assert bus.types().count("bad_review_closed") == 1


def test_no_rectification_to_act_on(evaluation):
    with pytest.raises(NotFound):
        evaluation.record_callback("NOPE", "note", "staff-1")
    delivered(evaluation)
    rate(evaluation, grade=Grade.SATISFIED, comment="")
    with pytest.raises(NotFound, match="no 差评"):
        evaluation.close("C1", "done", "chief-1")
    with pytest.raises(InvalidArgument, match="case_no"):
        evaluation.record_callback("", "note", "staff-1")


@pytest.mark.parametrize("note, by", [("", "staff-1"), ("回访", ""), ("  ", "staff-1")])
def test_callback_needs_note_and_who(evaluation, store, note, by):
    delivered(evaluation)
    rate(evaluation)
    with pytest.raises(InvalidArgument):
        evaluation.record_callback("C1", note, by)
    assert store.rating("C1")["rectification"]["callbacks"] == []


@pytest.mark.parametrize("result, by", [("", "chief-1"), ("done", "")])
def test_close_needs_result_and_who(evaluation, store, result, by):
    delivered(evaluation)
    rate(evaluation)
    evaluation.record_callback("C1", "回访", "staff-1")
    with pytest.raises(InvalidArgument):
        evaluation.close("C1", result, by)
    assert store.rating("C1")["rectification"]["status"] is OPEN


def test_two_bad_channels_need_the_channel_named(evaluation):
    delivered(evaluation)
    rate(evaluation, channel="online")
    rate(evaluation, channel="window")
    with pytest.raises(InvalidArgument, match="online, window"):
        evaluation.record_callback("C1", "回访", "staff-1")
    rect = evaluation.record_callback("C1", "回访", "staff-1", channel="window")
    assert rect["channel"] == "window"
    with pytest.raises(FailedPrecondition, match="RecordCallback"):
        evaluation.close("C1", "done", "chief-1", channel="online")


def test_a_concurrent_close_is_refused(evaluation, store, bus):
    delivered(evaluation)
    rate(evaluation)
    evaluation.record_callback("C1", "回访", "staff-1")
    real = store.rectifications

    def stale(case_no, channel=""):
        found = real(case_no, channel)
        [(revision, body)] = real(case_no, channel)
        body["rectification"]["status"] = CLOSED
        assert store.save_rectification(revision, OPEN, body, [])  # closed by someone else meanwhile
        return found

    store.rectifications = stale
    with pytest.raises(FailedPrecondition, match="changed meanwhile"):
        evaluation.close("C1", "done", "chief-1")
    assert "bad_review_closed" not in bus.types()


def test_a_concurrent_callback_is_refused_not_lost(evaluation, store):
    delivered(evaluation)
    rate(evaluation)
    real = store.rectifications

    def stale(case_no, channel=""):
        found = real(case_no, channel)
        [(revision, body)] = real(case_no, channel)
        body["rectification"]["callbacks"].append({"at": "2024-03-04T03:00:00+00:00", "by": "staff-2", "note": "x"})
        assert store.save_rectification(revision, OPEN, body, [])  # another officer's call-back meanwhile
        return found

    store.rectifications = stale
    with pytest.raises(FailedPrecondition, match="changed meanwhile"):
        evaluation.record_callback("C1", "回访", "staff-1")
    store.rectifications = real
    assert [c["by"] for c in store.rating("C1")["rectification"]["callbacks"]] == ["staff-2"]
    evaluation.record_callback("C1", "回访", "staff-1")  # looking again works
    assert [c["by"] for c in store.rating("C1")["rectification"]["callbacks"]] == ["staff-2", "staff-1"]


def test_list_bad_reviews_by_department_region_and_openness(evaluation, clock):
    for case_no, region, lead in (("C1", "440100", "wsjk"), ("C2", "440100", "gaj"), ("C3", "440300", "wsjk")):
        delivered(evaluation, case_no, region=region, lead=lead)
        rate(evaluation, case_no)
    rate(evaluation, "C1", channel="window", grade=Grade.SATISFIED, comment="")
    evaluation.record_callback("C3", "回访", "staff-1")
    evaluation.close("C3", "done", "chief-1")
    def listed(**filters):
        found, token = evaluation.bad_reviews(**filters)
        assert token == ""  # one page
        return [r["case_no"] for r in found]
    assert listed() == ["C1", "C2", "C3"]
    assert listed(department_code="wsjk") == ["C1", "C3"]
    assert listed(department_code="wsjk", region_code="440100") == ["C1"]
    assert listed(department_code="wsjk", open_only=True) == ["C1"]


def test_bad_reviews_come_a_page_at_a_time(evaluation):
    cases = [f"C{n}" for n in range(1, 6)]
    for case_no in cases:
        delivered(evaluation, case_no)
        rate(evaluation, case_no)
    seen, token, pages = [], "", 0
    while True:
        found, token = evaluation.bad_reviews(page_size=2, page_token=token)
        seen, pages = seen + [r["case_no"] for r in found], pages + 1
        if not token:
            break
    assert (seen, pages) == (cases, 3)
    assert [r["case_no"] for r in evaluation.bad_reviews(page_size=5)[0]] == cases
    assert evaluation.bad_reviews(page_size=5)[1] == ""  # exactly one page: no token for an empty next one
    # a page the access rule thins out still moves on from what it read
    first, token = evaluation.bad_reviews(page_size=2, allow=lambda r: r["case_no"] != "C2")
    assert [r["case_no"] for r in first] == ["C1"] and token
    assert [r["case_no"] for r in evaluation.bad_reviews(page_size=2, page_token=token)[0]] == ["C3", "C4"]
    records = len(evaluation.audit.records)
    for kwargs, words in (({"page_size": -1}, "page_size cannot be negative"),
                          ({"page_token": "not-a-token"}, "page_token is not one"),
                          ({"page_token": "eyJhZnRlciI6IDF9"}, "page_token is not one")):  # {"after": 1}
        with pytest.raises(InvalidArgument, match=words):
            evaluation.bad_reviews(**kwargs)
    assert len(evaluation.audit.records) == records  # a refused list reads nothing


def test_statistics_by_region_department_and_package(evaluation, clock):
    delivered(evaluation, "C1", lead="wsjk")
    delivered(evaluation, "C2", lead="gaj")
    delivered(evaluation, "C3", region="440300", package="KBQY", lead="scjg")
    rate(evaluation, "C1", grade=Grade.VERY_SATISFIED, comment="")
    rate(evaluation, "C1", channel="window", grade=Grade.BASICALLY_SATISFIED, comment="")
    rate(evaluation, "C2")
    rate(evaluation, "C3", grade=Grade.DISSATISFIED)
    evaluation.record_callback("C2", "回访", "staff-1")
    evaluation.close("C2", "done", "chief-1")
    by_region = evaluation.statistics(REGION)
    assert by_region == [
        {"key": "440100", "ratings": 3, "satisfied": 2, "satisfaction_rate": 0.6667, "bad_reviews": 1,
         "rectifications_closed": 1, "closed_on_time": 1, "rectifications_open": 0},
        {"key": "440300", "ratings": 1, "satisfied": 0, "satisfaction_rate": 0.0, "bad_reviews": 1,
         "rectifications_closed": 0, "closed_on_time": 0, "rectifications_open": 1}]
    by_dept = {r["key"]: r for r in evaluation.statistics(DEPARTMENT)}
    assert sorted(by_dept) == ["gaj", "scjg", "wsjk"]
    assert by_dept["wsjk"]["ratings"] == 2 and by_dept["wsjk"]["satisfaction_rate"] == 1.0
    assert by_dept["gaj"]["closed_on_time"] == 1
    by_pkg = evaluation.statistics(PACKAGE, region_code="440100")
    assert [(r["key"], r["ratings"]) for r in by_pkg] == [("XSECS", 3)]
    assert evaluation.statistics(REGION, rated_from="2024-03-05") == []
    assert len(evaluation.statistics(REGION, rated_from="2024-03-04", rated_to="2024-03-04")) == 2


@pytest.mark.parametrize("kwargs, words", [({"group_by": None}, "REGION"),
                                           ({"rated_from": "yesterday"}, "YYYY-MM-DD"),
                                           ({"rated_from": "2024-03-05", "rated_to": "2024-03-04"}, "after")])
def test_statistics_refusals(evaluation, kwargs, words):
    kwargs = {"group_by": REGION, **kwargs}
    with pytest.raises(InvalidArgument, match=words):
        evaluation.statistics(**kwargs)


def test_bad_review_days_must_be_positive(store):
    with pytest.raises(ValueError):
        handlers.Evaluation(store, bad_review_days=0)


def test_wiring_takes_the_working_days_from_the_settings(store, clock, monkeypatch):
    monkeypatch.setenv("ONETHING_BAD_REVIEW_DAYS", "15")
    evaluation = build_evaluation(store=store, clock=clock, audit=MemoryAuditLog("evaluation"))
    assert evaluation.bad_review_days == 15 and evaluation.store is store and evaluation.clock is clock
    delivered(evaluation)
    assert rate(evaluation)["rectification"]["deadline"] == "2024-03-25"  # 15 working days after Mon 03-04


def _withdrawn(case_no="C1", after=True):
    return {"case_no": case_no, "after_conclusion": after}


@pytest.mark.parametrize("delivery_first", [True, False])
def test_a_case_withdrawn_after_its_conclusion_cannot_be_rated(evaluation, store, bus, delivery_first):
    if delivery_first:
        delivered(evaluation)
    assert evaluation.case_withdrawn(**_withdrawn()) and evaluation.case_withdrawn(**_withdrawn())
    if not delivery_first:
        delivered(evaluation)  # the delivery's report arriving after the withdrawal does not undo it
    with pytest.raises(FailedPrecondition, match="withdrawn"):
        rate(evaluation, grade=Grade.SATISFIED, comment="")
    assert store.ratings == {} and bus.published == []


def test_a_withdrawal_before_the_conclusion_needs_nothing_from_evaluation(evaluation, store):
    assert not evaluation.case_withdrawn(**_withdrawn(after=False))
    assert store.cases == {}
