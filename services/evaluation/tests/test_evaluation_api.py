"""The evaluation api over real gRPC (an in-process server on a free port, the in-memory store):
proto enums are decoded into the domain's once on the way in and encoded back once on the way out,
so a caller sees exactly the grades and states it did before the domain had enums."""
import datetime as dt

import grpc
import pytest
from google.type import date_pb2

from onething.evaluation.v1 import evaluation_pb2 as pb
from onething.evaluation.v1 import evaluation_pb2_grpc as pb_grpc
from services.common.audit import MemoryAuditLog
from services.common.bus import RecordingBus
from services.common.grpc_server import ApiServer
from services.evaluation.api import EvaluationApi
from services.evaluation.domain import Grade, Origin, Rateable, RatingReport, ReportKind
from services.evaluation.fakes import FakeEvaluationStore
from services.evaluation.wiring import build_evaluation

APPLICANT = "11010519491231002X"


@pytest.fixture
def served(local_idp):
    bus = RecordingBus("evaluation")
    evaluation = build_evaluation(store=FakeEvaluationStore(bus), audit=MemoryAuditLog("evaluation"),
                                  bad_review_days=5)
    evaluation.case_delivered(Rateable("C1", APPLICANT, "440100", "XSECS", "wsjk"))
    name = pb.DESCRIPTOR.services_by_name["EvaluationService"].full_name
    srv = ApiServer(0, [(pb_grpc.add_EvaluationServiceServicer_to_server, EvaluationApi(evaluation))], [name]).start()
    with grpc.insecure_channel(f"127.0.0.1:{srv.port}") as channel:
        yield pb_grpc.EvaluationServiceStub(channel), local_idp, bus
    srv.stop(0)


def _refused(code, call, *args, **kwargs):
    with pytest.raises(grpc.RpcError) as err:
        call(*args, **kwargs)
    assert err.value.code() == code, err.value.details()
    return err.value.details()


def test_a_bad_review_through_the_api_keeps_its_proto_enums(served):
    stub, idp, bus = served
    applicant = idp.metadata(APPLICANT, "applicant")
    officer = idp.metadata("officer-5", "officer", "wsjk", "440100")
    assert "choose a grade" in _refused(grpc.StatusCode.INVALID_ARGUMENT, stub.SubmitEvaluation, pb.SubmitEvaluationRequest(
        case_no="C1", channel=pb.CHANNEL_ONLINE, grade=pb.GRADE_UNSPECIFIED), metadata=applicant, timeout=5)

    rating = stub.SubmitEvaluation(pb.SubmitEvaluationRequest(
        case_no="C1", channel=pb.CHANNEL_ONLINE, grade=pb.GRADE_DISSATISFIED, dimensions={"办事效率": 2},
        comment="材料退回两次没有说明"), metadata=applicant, timeout=5)
    assert rating.grade == pb.GRADE_DISSATISFIED and rating.bad_review and rating.department_code == "wsjk"
    assert rating.rectification.grade == pb.GRADE_DISSATISFIED
    assert rating.rectification.status == pb.RECTIFICATION_STATUS_OPEN and rating.rectification.deadline
    assert dict(rating.dimensions) == {"办事效率": 2}
    assert bus.published[0][1]["grade"] == "GRADE_DISSATISFIED"  # the event's payload, as before
    again = stub.GetEvaluation(pb.GetEvaluationRequest(case_no="C1"), metadata=applicant, timeout=5)
    assert again == rating

    rect = stub.RecordCallback(pb.RecordCallbackRequest(case_no="C1", note="已电话回访"), metadata=officer, timeout=5)
    assert rect.status == pb.RECTIFICATION_STATUS_OPEN and [c.by for c in rect.callbacks] == ["officer-5"]
    rect = stub.CloseRectification(pb.CloseRectificationRequest(case_no="C1", result="已改进告知清单"),
                                   metadata=officer, timeout=5)
    assert rect.status == pb.RECTIFICATION_STATUS_CLOSED and rect.on_time and rect.grade == pb.GRADE_DISSATISFIED
    [listed] = stub.ListBadReviews(pb.ListBadReviewsRequest(), metadata=officer, timeout=5).rectifications
    assert listed == rect


def test_statistics_groups_are_decoded_from_the_proto(served):
    stub, idp, _ = served
    operator = idp.metadata("operator-1", "operator", "", "440100")
    stub.SubmitEvaluation(pb.SubmitEvaluationRequest(case_no="C1", channel=pb.CHANNEL_WINDOW, grade=pb.GRADE_VERY_DISSATISFIED,
                                                     comment="态度差"), metadata=idp.metadata(APPLICANT, "applicant"),
                          timeout=5)
    rows = stub.GetStatistics(pb.GetStatisticsRequest(group_by=pb.STATISTICS_GROUP_DEPARTMENT), metadata=operator,
                              timeout=5).rows
    assert [(r.key, r.ratings, r.bad_reviews) for r in rows] == [("wsjk", 1, 1)]
    assert [r.key for r in stub.GetStatistics(pb.GetStatisticsRequest(group_by=pb.STATISTICS_GROUP_PACKAGE),
                                              metadata=operator, timeout=5).rows] == ["XSECS"]
    assert "REGION, DEPARTMENT or PACKAGE" in _refused(
        grpc.StatusCode.INVALID_ARGUMENT, stub.GetStatistics,
        pb.GetStatisticsRequest(group_by=pb.STATISTICS_GROUP_UNSPECIFIED), metadata=operator, timeout=5)


class _Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def served_at(local_idp):
    """The api over handlers with a clock the test moves (Mon 2024-03-04 10:00 in Shanghai)."""
    clock = _Clock(dt.datetime(2024, 3, 4, 2, 0, tzinfo=dt.UTC))
    evaluation = build_evaluation(store=FakeEvaluationStore(RecordingBus("evaluation")),
                                  audit=MemoryAuditLog("evaluation"), clock=clock, bad_review_days=5)
    evaluation.case_delivered(Rateable("C1", APPLICANT, "440100", "XSECS", "wsjk"))
    name = pb.DESCRIPTOR.services_by_name["EvaluationService"].full_name
    srv = ApiServer(0, [(pb_grpc.add_EvaluationServiceServicer_to_server, EvaluationApi(evaluation))], [name]).start()
    with grpc.insecure_channel(f"127.0.0.1:{srv.port}") as channel:
        yield pb_grpc.EvaluationServiceStub(channel), local_idp, clock
    srv.stop(0)


def test_moments_days_and_the_channel_are_typed_on_the_wire(served_at):
    stub, idp, clock = served_at
    applicant = idp.metadata(APPLICANT, "applicant")
    officer = idp.metadata("officer-5", "officer", "wsjk", "440100")
    rating = stub.SubmitEvaluation(pb.SubmitEvaluationRequest(
        case_no="C1", channel=pb.CHANNEL_WINDOW, grade=pb.GRADE_VERY_DISSATISFIED, comment="态度差"),
        metadata=applicant, timeout=5)
    assert rating.channel == pb.CHANNEL_WINDOW and rating.rectification.channel == pb.CHANNEL_WINDOW
    assert rating.rated_at.ToDatetime(tzinfo=dt.UTC) == clock.now
    rect = rating.rectification
    assert rect.opened_at == rating.rated_at and not rect.HasField("closed_at")
    assert (rect.deadline.year, rect.deadline.month, rect.deadline.day) == (2024, 3, 11)  # 5 working days on

    clock.now = dt.datetime(2024, 3, 6, 3, 0, 0, 250000, tzinfo=dt.UTC)
    called = stub.RecordCallback(pb.RecordCallbackRequest(case_no="C1", note="已回访", channel=pb.CHANNEL_WINDOW),
                                 metadata=officer, timeout=5)
    assert called.callbacks[0].at.ToJsonString() == "2024-03-06T03:00:00.250Z"
    assert "no 差评 to put right on the online channel" in _refused(
        grpc.StatusCode.NOT_FOUND, stub.CloseRectification,
        pb.CloseRectificationRequest(case_no="C1", result="已整改", channel=pb.CHANNEL_ONLINE), metadata=officer,
        timeout=5)
    clock.now = dt.datetime(2024, 3, 11, 15, 0, tzinfo=dt.UTC)  # 23:00 on the deadline day in Shanghai
    closed = stub.CloseRectification(pb.CloseRectificationRequest(case_no="C1", result="已整改"), metadata=officer,
                                     timeout=5)
    assert closed.closed_at.ToJsonString() == "2024-03-11T15:00:00Z" and closed.on_time
    assert stub.GetEvaluation(pb.GetEvaluationRequest(case_no="C1"), metadata=applicant,
                              timeout=5).rectification == closed


def test_an_unknown_channel_number_is_refused(served_at):
    stub, idp, _ = served_at
    details = _refused(grpc.StatusCode.INVALID_ARGUMENT, stub.SubmitEvaluation, pb.SubmitEvaluationRequest(
        case_no="C1", channel=9, grade=pb.GRADE_SATISFIED), metadata=idp.metadata(APPLICANT, "applicant"), timeout=5)
    assert "channel" in details


def test_statistics_filter_by_rating_days_as_dates(served_at):
    stub, idp, _ = served_at
    operator = idp.metadata("operator-1", "operator", "", "440100")
    stub.SubmitEvaluation(pb.SubmitEvaluationRequest(case_no="C1", channel=pb.CHANNEL_ONLINE,
                                                     grade=pb.GRADE_SATISFIED),
                          metadata=idp.metadata(APPLICANT, "applicant"), timeout=5)

    def ratings(**days):
        rows = stub.GetStatistics(pb.GetStatisticsRequest(group_by=pb.STATISTICS_GROUP_REGION, **days),
                                  metadata=operator, timeout=5).rows
        return sum(r.ratings for r in rows)
    rated_on = date_pb2.Date(year=2024, month=3, day=4)
    assert ratings() == 1 and ratings(rated_from=rated_on, rated_to=rated_on) == 1
    assert ratings(rated_from=date_pb2.Date(year=2024, month=3, day=5)) == 0
    assert ratings(rated_to=date_pb2.Date(year=2024, month=3, day=3)) == 0
    assert ratings(rated_from=date_pb2.Date()) == 1  # an empty date is no filter


@pytest.mark.parametrize("days, says", [
    ({"rated_from": date_pb2.Date(year=2024, month=13, day=1)}, "rated_from must be a whole date: month 1 to 12"),
    ({"rated_to": date_pb2.Date(year=2024, month=2, day=30)}, "rated_to 2024-02-30 is not a real date"),
    ({"rated_to": date_pb2.Date(year=0, month=2, day=3)}, "rated_to must be a whole date: year 1 to 9999"),
    ({"rated_from": date_pb2.Date(year=2024, month=3, day=5), "rated_to": date_pb2.Date(year=2024, month=3, day=4)},
     "rated_from 2024-03-05 is after rated_to 2024-03-04"),
])
def test_statistics_refuse_a_date_out_of_range(served_at, days, says):
    stub, idp, _ = served_at
    assert says in _refused(grpc.StatusCode.INVALID_ARGUMENT, stub.GetStatistics, pb.GetStatisticsRequest(
        group_by=pb.STATISTICS_GROUP_REGION, **days), metadata=idp.metadata("operator-1", "operator", "", "440100"),
        timeout=5)


def test_statistics_at_the_province_show_its_cities_beside_its_own(local_idp):
    """GetStatistics at the province (issue 11): its own ratings and those rolled up from its cities'
    events, grouped by region one row each; a region filter gives one city's. Who may read: as before."""
    province = build_evaluation(store=FakeEvaluationStore(RecordingBus("evaluation")),
                                audit=MemoryAuditLog("evaluation"), bad_review_days=5, site="440000")
    province.case_delivered(Rateable("P1", APPLICANT, "440000", "XSECS", "sjyj"))
    province.submit("P1", APPLICANT, "online", Grade.SATISFIED, {}, "")
    for i, (site, grade) in enumerate((("440300", Grade.VERY_DISSATISFIED), ("440100", Grade.VERY_SATISFIED))):
        assert province.city_report(RatingReport(ReportKind.RATED, Origin(site, f"e{i}"), f"C{i}", "online", grade,
                                                 "gaj", site, "KBQY", "2024-03-04"))
    name = pb.DESCRIPTOR.services_by_name["EvaluationService"].full_name
    srv = ApiServer(0, [(pb_grpc.add_EvaluationServiceServicer_to_server, EvaluationApi(province))], [name]).start()
    operator = local_idp.metadata("operator-1", "operator", "", "440000")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{srv.port}") as channel:
            stub = pb_grpc.EvaluationServiceStub(channel)
            rows = stub.GetStatistics(pb.GetStatisticsRequest(group_by=pb.STATISTICS_GROUP_REGION), metadata=operator,
                                      timeout=5).rows
            assert [(r.key, r.ratings, r.satisfied, r.bad_reviews, r.rectifications_open) for r in rows] == [
                ("440000", 1, 1, 0, 0), ("440100", 1, 1, 0, 0), ("440300", 1, 0, 1, 1)]
            [shenzhen] = stub.GetStatistics(pb.GetStatisticsRequest(group_by=pb.STATISTICS_GROUP_DEPARTMENT,
                                                                    region_code="440300"),
                                            metadata=operator, timeout=5).rows
            assert (shenzhen.key, shenzhen.ratings, shenzhen.bad_reviews) == ("gaj", 1, 1)
            _refused(grpc.StatusCode.PERMISSION_DENIED, stub.GetStatistics,
                     pb.GetStatisticsRequest(group_by=pb.STATISTICS_GROUP_REGION),
                     metadata=local_idp.metadata(APPLICANT, "applicant"), timeout=5)
    finally:
        srv.stop(0)
