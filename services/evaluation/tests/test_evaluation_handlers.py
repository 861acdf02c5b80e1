"""Evaluation use cases over an in-memory store and a RecordingBus: a 差评 opens a rectification,
the call-back, the closure and its on-time flag, listing and statistics; every refusal changes
nothing."""
import copy
import datetime as dt
import types

import pytest

from onething.delivery.v1 import events_pb2 as delivery_events
from services.common.bus import RecordingBus
from services.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from services.common.events import from_payload
from services.evaluation import handlers
from services.evaluation.store import EvaluationDoc, copies

UTC = dt.timezone.utc
APPLICANT = "11010519491231002X"
BAD = "GRADE_VERY_DISSATISFIED"


class FakeEvaluationStore:
    def __init__(self):
        self.cases, self.docs, self.next = {}, {}, 0

    def add_rateable(self, case_no, applicant_id, region_code, package_code, lead_department=""):
        withdrawn = getattr(self.cases.get(case_no), "withdrawn", False)
        self.cases[case_no] = types.SimpleNamespace(case_no=case_no, applicant_id=applicant_id,
                                                    region_code=region_code, package_code=package_code,
                                                    lead_department=lead_department, withdrawn=withdrawn)

    def mark_withdrawn(self, case_no):
        case = self.cases.setdefault(case_no, types.SimpleNamespace(
            case_no=case_no, applicant_id=None, region_code=None, package_code=None, lead_department=None))
        case.withdrawn = True

    def rateable(self, case_no):
        return self.cases.get(case_no)

    def insert(self, body, outbox):
        if any((d["body"]["case_no"], d["body"]["channel"]) == (body["case_no"], body["channel"])
               for d in self.docs.values()):
            return None
        self.next += 1
        self.docs[self.next] = {"body": copy.deepcopy(body), "outbox": copy.deepcopy(outbox), **copies(body)}
        return self.next

    def get(self, case_no):
        return next((copy.deepcopy(d["body"]) for d in self.docs.values() if d["body"]["case_no"] == case_no), None)

    def rectifications(self, case_no, channel=""):
        return [(pk, copy.deepcopy(d["body"])) for pk, d in self.docs.items()
                if d["body"]["case_no"] == case_no and d["n_bad"] and (not channel or d["body"]["channel"] == channel)]

    def update_rectification(self, pk, expected_status, body, outbox):
        doc = self.docs.get(pk)
        if doc is None or doc["rect_status"] != expected_status:
            return False
        doc.update(body=copy.deepcopy(body), **copies(body))
        doc["outbox"].extend(copy.deepcopy(outbox))
        return True

    def bad_reviews(self, department_code="", region_code="", open_only=False):
        return [copy.deepcopy(d["body"]) for d in self.docs.values()
                if d["n_bad"] and (not department_code or d["department_code"] == department_code)
                and (not region_code or d["region_code"] == region_code)
                and (not open_only or d["rect_status"] == "RECTIFICATION_STATUS_OPEN")]

    def statistics(self, field, region_code="", department_code="", package_code="", rated_from="", rated_to=""):
        rows = {}
        for d in self.docs.values():
            if (region_code and d["region_code"] != region_code) or (
                    department_code and d["department_code"] != department_code) or (
                    package_code and d["package_code"] != package_code) or (
                    rated_from and d["rated_on"] < rated_from) or (rated_to and d["rated_on"] > rated_to):
                continue
            row = rows.setdefault(d[field], {"key": d[field], "ratings": 0, "satisfied": 0, "bad": 0, "closed": 0,
                                             "on_time": 0, "open": 0})
            row["ratings"] += 1
            for k, f in (("satisfied", "n_satisfied"), ("bad", "n_bad"), ("closed", "n_closed"),
                         ("on_time", "n_on_time"), ("open", "n_open")):
                row[k] += d[f]
        return list(rows.values())


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def store():
    return FakeEvaluationStore()


@pytest.fixture
def bus():
    return RecordingBus("evaluation")


@pytest.fixture
def clock():
    return Clock(dt.datetime(2024, 3, 4, 2, 0, tzinfo=UTC))  # Mon 10:00 in Shanghai


@pytest.fixture
def evaluation(store, bus, clock, monkeypatch):
    def fake_flush(doc_cls, pk, to_bus, entries=None):
        assert doc_cls is EvaluationDoc
        doc = store.docs[pk]
        entries = list(doc["outbox"]) if entries is None else entries
        for entry in entries:
            to_bus.publish_raw(entry["event_type"], entry["payload"], {"case_no": entry.get("case_no", "")})
            doc["outbox"] = [e for e in doc["outbox"] if e["id"] != entry["id"]]
        return len(entries)

    monkeypatch.setattr(handlers, "flush_outbox", fake_flush)
    return handlers.Evaluation(store, bus, bad_review_days=5, clock=clock)


def delivered(evaluation, case_no="C1", region="440100", package="XSECS", lead="wsjk"):
    evaluation.on_delivery_completed(from_payload(delivery_events.DeliveryCompleted, {
        "case_no": case_no, "channel": "DELIVERY_CHANNEL_MAIL", "applicant_id": APPLICANT, "region_code": region,
        "package_code": package, "lead_department": lead}))


def rate(evaluation, case_no="C1", grade=BAD, comment="材料退回两次没有说明", channel="online", department=""):
    return evaluation.submit(case_no, APPLICANT, channel, grade, {"整体满意度": 1} if channel == "online" else {},
                             comment, department)


def test_good_rating_opens_nothing(evaluation, bus):
    delivered(evaluation)
    body = rate(evaluation, grade="GRADE_SATISFIED", comment="")
    assert "rectification" not in body and body["department_code"] == "wsjk"
    assert bus.types() == ["evaluation_received"]


def test_bad_rating_opens_a_rectification_for_the_lead_department(evaluation, bus):
    delivered(evaluation)
    body = rate(evaluation)
    rect = body["rectification"]
    assert rect["department_code"] == "wsjk" and rect["status"] == "RECTIFICATION_STATUS_OPEN"
    assert rect["deadline"] == "2024-03-11" and rect["deadline_provisional"] is False
    assert (rect["region_code"], rect["package_code"]) == ("440100", "XSECS")
    assert bus.types() == ["evaluation_received", "bad_review_opened"]
    opened = bus.published[1][1]
    assert opened["department_code"] == "wsjk" and opened["deadline"] == "2024-03-11"
    assert opened["grade"] == BAD and bus.published[1][2]["case_no"] == "C1"


def test_the_named_department_takes_the_rectification(evaluation):
    delivered(evaluation)
    assert rate(evaluation, department="gaj")["rectification"]["department_code"] == "gaj"


def test_bad_rating_without_any_department_is_refused(evaluation, store, bus):
    delivered(evaluation, lead="")
    with pytest.raises(InvalidArgument, match="department_code"):
        rate(evaluation)
    assert store.docs == {} and bus.published == []
    assert rate(evaluation, department="gaj")["rectification"]["department_code"] == "gaj"


def test_existing_refusals_still_hold(evaluation, store):
    with pytest.raises(FailedPrecondition, match="delivered"):
        rate(evaluation)
    delivered(evaluation)
    with pytest.raises(PermissionDenied):
        evaluation.submit("C1", "440106199001011234", "online", BAD, {}, "x", "")
    rate(evaluation)
    with pytest.raises(AlreadyExists):
        rate(evaluation)
    with pytest.raises(InvalidArgument, match="department code"):
        rate(evaluation, channel="window", department="GA J")
    assert len(store.docs) == 1


def test_callback_then_close_on_time(evaluation, bus, clock):
    delivered(evaluation)
    rate(evaluation)
    clock.now = dt.datetime(2024, 3, 6, 3, 0, tzinfo=UTC)
    rect = evaluation.record_callback("C1", "已电话回访，解释补正原因", "staff-1")
    assert rect["callbacks"] == [{"at": clock.now.isoformat(), "by": "staff-1", "note": "已电话回访，解释补正原因"}]
    clock.now = dt.datetime(2024, 3, 11, 15, 0, tzinfo=UTC)  # 23:00 on the deadline day in Shanghai
    rect = evaluation.close("C1", "已改进一次告知清单", "chief-1")
    assert rect["status"] == "RECTIFICATION_STATUS_CLOSED" and rect["on_time"] is True
    assert rect["closed_by"] == "chief-1" and rect["result"] == "已改进一次告知清单"
    assert bus.types() == ["evaluation_received", "bad_review_opened", "bad_review_closed"]
    closed = bus.published[-1][1]
    assert closed["on_time"] is True and closed["department_code"] == "wsjk" and closed["result"]


def test_close_after_the_deadline_day_is_late(evaluation, clock):
    delivered(evaluation)
    rate(evaluation)
    evaluation.record_callback("C1", "回访", "staff-1")
    clock.now = dt.datetime(2024, 3, 11, 16, 0, tzinfo=UTC)  # 00:00 the day after, Shanghai
    assert evaluation.close("C1", "done", "chief-1")["on_time"] is False
    [row] = evaluation.statistics("STATISTICS_GROUP_DEPARTMENT")
    assert (row["rectifications_closed"], row["closed_on_time"]) == (1, 0)


def test_close_needs_a_callback_first(evaluation, store, bus):
    delivered(evaluation)
    rate(evaluation)
    before = copy.deepcopy(store.docs)
    with pytest.raises(FailedPrecondition, match="RecordCallback"):
        evaluation.close("C1", "done", "chief-1")
    assert store.docs == before and "bad_review_closed" not in bus.types()


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
    rate(evaluation, grade="GRADE_SATISFIED", comment="")
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
    assert store.docs[1]["body"]["rectification"]["callbacks"] == []


@pytest.mark.parametrize("result, by", [("", "chief-1"), ("done", "")])
def test_close_needs_result_and_who(evaluation, store, result, by):
    delivered(evaluation)
    rate(evaluation)
    evaluation.record_callback("C1", "回访", "staff-1")
    with pytest.raises(InvalidArgument):
        evaluation.close("C1", result, by)
    assert store.docs[1]["rect_status"] == "RECTIFICATION_STATUS_OPEN"


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
        store.docs[1]["rect_status"] = "RECTIFICATION_STATUS_CLOSED"  # closed by someone else meanwhile
        return found

    store.rectifications = stale
    with pytest.raises(FailedPrecondition, match="changed meanwhile"):
        evaluation.close("C1", "done", "chief-1")
    assert "bad_review_closed" not in bus.types()


def test_list_bad_reviews_by_department_region_and_openness(evaluation, clock):
    for case_no, region, lead in (("C1", "440100", "wsjk"), ("C2", "440100", "gaj"), ("C3", "440300", "wsjk")):
        delivered(evaluation, case_no, region=region, lead=lead)
        rate(evaluation, case_no)
    rate(evaluation, "C1", channel="window", grade="GRADE_SATISFIED", comment="")
    evaluation.record_callback("C3", "回访", "staff-1")
    evaluation.close("C3", "done", "chief-1")
    assert [r["case_no"] for r in evaluation.bad_reviews()] == ["C1", "C2", "C3"]
    assert [r["case_no"] for r in evaluation.bad_reviews(department_code="wsjk")] == ["C1", "C3"]
    assert [r["case_no"] for r in evaluation.bad_reviews(department_code="wsjk", region_code="440100")] == ["C1"]
    assert [r["case_no"] for r in evaluation.bad_reviews(department_code="wsjk", open_only=True)] == ["C1"]


def test_statistics_by_region_department_and_package(evaluation, clock):
    delivered(evaluation, "C1", lead="wsjk")
    delivered(evaluation, "C2", lead="gaj")
    delivered(evaluation, "C3", region="440300", package="KBQY", lead="scjg")
    rate(evaluation, "C1", grade="GRADE_VERY_SATISFIED", comment="")
    rate(evaluation, "C1", channel="window", grade="GRADE_BASICALLY_SATISFIED", comment="")
    rate(evaluation, "C2")
    rate(evaluation, "C3", grade="GRADE_DISSATISFIED")
    evaluation.record_callback("C2", "回访", "staff-1")
    evaluation.close("C2", "done", "chief-1")
    by_region = evaluation.statistics("STATISTICS_GROUP_REGION")
    assert by_region == [
        {"key": "440100", "ratings": 3, "satisfied": 2, "satisfaction_rate": 0.6667, "bad_reviews": 1,
         "rectifications_closed": 1, "closed_on_time": 1, "rectifications_open": 0},
        {"key": "440300", "ratings": 1, "satisfied": 0, "satisfaction_rate": 0.0, "bad_reviews": 1,
         "rectifications_closed": 0, "closed_on_time": 0, "rectifications_open": 1}]
    by_dept = {r["key"]: r for r in evaluation.statistics("STATISTICS_GROUP_DEPARTMENT")}
    assert sorted(by_dept) == ["gaj", "scjg", "wsjk"]
    assert by_dept["wsjk"]["ratings"] == 2 and by_dept["wsjk"]["satisfaction_rate"] == 1.0
    assert by_dept["gaj"]["closed_on_time"] == 1
    by_pkg = evaluation.statistics("STATISTICS_GROUP_PACKAGE", region_code="440100")
    assert [(r["key"], r["ratings"]) for r in by_pkg] == [("XSECS", 3)]
    assert evaluation.statistics("STATISTICS_GROUP_REGION", rated_from="2024-03-05") == []
    assert len(evaluation.statistics("STATISTICS_GROUP_REGION", rated_from="2024-03-04", rated_to="2024-03-04")) == 2


@pytest.mark.parametrize("kwargs, words", [({"group_by": "STATISTICS_GROUP_UNSPECIFIED"}, "REGION"),
                                           ({"rated_from": "yesterday"}, "YYYY-MM-DD"),
                                           ({"rated_from": "2024-03-05", "rated_to": "2024-03-04"}, "after")])
def test_statistics_refusals(evaluation, kwargs, words):
    kwargs = {"group_by": "STATISTICS_GROUP_REGION", **kwargs}
    with pytest.raises(InvalidArgument, match=words):
        evaluation.statistics(**kwargs)


def test_bad_review_days_must_be_positive(store, bus):
    with pytest.raises(ValueError):
        handlers.Evaluation(store, bus, bad_review_days=0)


def _withdrawn(case_no="C1", after=True):
    from onething.joint_review.v1 import events_pb2 as review_events
    return review_events.SessionWithdrawn(case_no=case_no, after_conclusion=after,
                                          overridden="SESSION_STATUS_APPROVED" if after else "")


@pytest.mark.parametrize("delivery_first", [True, False])
def test_a_case_withdrawn_after_its_conclusion_cannot_be_rated(evaluation, store, bus, delivery_first):
    if delivery_first:
        delivered(evaluation)
    assert evaluation.on_session_withdrawn(_withdrawn()) and evaluation.on_session_withdrawn(_withdrawn())
    if not delivery_first:
        delivered(evaluation)  # the delivery's report arriving after the withdrawal does not undo it
    with pytest.raises(FailedPrecondition, match="withdrawn"):
        rate(evaluation, grade="GRADE_SATISFIED", comment="")
    assert store.docs == {} and bus.published == []


def test_a_withdrawal_before_the_conclusion_needs_nothing_from_evaluation(evaluation, store):
    assert not evaluation.on_session_withdrawn(_withdrawn(after=False))
    assert store.cases == {}
