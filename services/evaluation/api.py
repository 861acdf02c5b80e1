"""evaluation api role: native grpcio server."""
from google.protobuf import json_format

from onething.evaluation.v1 import evaluation_pb2 as pb, evaluation_pb2_grpc as pb_grpc
from services.common import telemetry
from services.common.config import settings
from services.common.grpc_server import ApiServer
from services.evaluation.wiring import build_evaluation


def to_proto(body):
    return json_format.ParseDict(body, pb.Evaluation(), ignore_unknown_fields=True)


def rectification(body):
    return json_format.ParseDict(body, pb.Rectification(), ignore_unknown_fields=True)


class EvaluationApi(pb_grpc.EvaluationServiceServicer):
    def __init__(self, evaluation):
        self.evaluation = evaluation

    def SubmitEvaluation(self, request, context):
        return to_proto(self.evaluation.submit(request.case_no, request.applicant_id, request.channel,
                                               pb.Grade.Name(request.grade), dict(request.dimensions),
                                               request.comment, request.department_code))

    def GetEvaluation(self, request, context):
        return to_proto(self.evaluation.get(request.case_no))

    def RecordCallback(self, request, context):
        return rectification(self.evaluation.record_callback(request.case_no, request.note, request.by,
                                                             request.channel))

    def CloseRectification(self, request, context):
        return rectification(self.evaluation.close(request.case_no, request.result, request.by, request.channel))

    def ListBadReviews(self, request, context):
        found = self.evaluation.bad_reviews(request.department_code, request.region_code, request.open_only)
        return pb.ListBadReviewsResponse(rectifications=[rectification(r) for r in found])

    def GetStatistics(self, request, context):
        rows = self.evaluation.statistics(pb.StatisticsGroup.Name(request.group_by), request.region_code,
                                          request.department_code, request.package_code, request.rated_from,
                                          request.rated_to)
        return pb.GetStatisticsResponse(rows=[pb.StatisticsRow(**r) for r in rows])


def build(port=None):
    telemetry.setup("evaluation")
    evaluation = build_evaluation()
    name = pb.DESCRIPTOR.services_by_name["EvaluationService"].full_name
    return ApiServer(port or settings().port("evaluation"),
                     [(pb_grpc.add_EvaluationServiceServicer_to_server, EvaluationApi(evaluation))], [name])


if __name__ == "__main__":
    import logging
    logging.basicConfig(level=logging.INFO)
    build().serve_forever()
