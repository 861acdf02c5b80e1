"""The evaluation api over real gRPC (an in-process server on a free port, the in-memory store):
proto enums are decoded into the domain's once on the way in and encoded back once on the way out,
so a caller sees exactly the grades and states it did before the domain had enums."""

import grpc
import pytest

from onething.evaluation.v1 import evaluation_pb2 as pb
from onething.evaluation.v1 import evaluation_pb2_grpc as pb_grpc
from services.common.audit import MemoryAuditLog
from services.common.bus import RecordingBus
from services.common.grpc_server import ApiServer
from services.evaluation.api import EvaluationApi
from services.evaluation.domain import Rateable
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
        case_no="C1", channel="online", grade=pb.GRADE_UNSPECIFIED), metadata=applicant, timeout=5)

    rating = stub.SubmitEvaluation(pb.SubmitEvaluationRequest(
        case_no="C1", channel="online", grade=pb.GRADE_DISSATISFIED, dimensions={"办事效率": 2},
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
    stub.SubmitEvaluation(pb.SubmitEvaluationRequest(case_no="C1", channel="window", grade=pb.GRADE_VERY_DISSATISFIED,
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
