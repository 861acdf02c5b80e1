"""joint_review api role: native grpcio server (sessions, a department's tasks, RecordOpinion)."""
from google.protobuf import json_format

from onething.common.v1 import common_pb2
from onething.joint_review.v1 import joint_review_pb2 as pb, joint_review_pb2_grpc as pb_grpc
from services.common import telemetry
from services.common.config import settings
from services.common.errors import InvalidArgument
from services.common.grpc_server import ApiServer
from services.joint_review.wiring import build_review


def task_to_proto(task):
    return json_format.ParseDict(task, pb.Task(), ignore_unknown_fields=True)


class JointReviewApi(pb_grpc.JointReviewServiceServicer):
    def __init__(self, review):
        self.review = review

    def GetSession(self, request, context):
        s = self.review.get_session(request.case_no)
        return pb.Session(case_no=s["case_no"], package_code=s["package_code"], status=s["status"],
                          opened_at=s["opened_at"], concluded_at=s["concluded_at"],
                          tasks=[task_to_proto(dict(t, case_no=s["case_no"])) for t in s["tasks"]])

    def ListTasks(self, request, context):
        if not request.department_code:
            raise InvalidArgument("name the department (department_code)")
        state = pb.TaskState.Name(request.state) if request.state else None
        tasks = self.review.list_tasks(request.department_code, request.region_code or settings().region, state)
        return pb.ListTasksResponse(tasks=[task_to_proto(t) for t in tasks])

    def RecordOpinion(self, request, context):
        if not request.case_no or not request.item_code or not request.department_code:
            raise InvalidArgument("an opinion names the case, the item and the department")
        task = self.review.record_opinion(request.case_no, request.item_code, request.department_code,
                                          common_pb2.Decision.Name(request.decision), request.reason,
                                          request.officer_id)
        return task_to_proto(task)


def build(port=None):
    telemetry.setup("joint_review")
    name = pb.DESCRIPTOR.services_by_name["JointReviewService"].full_name
    return ApiServer(port or settings().port("joint_review"),
                     [(pb_grpc.add_JointReviewServiceServicer_to_server, JointReviewApi(build_review()))], [name])


if __name__ == "__main__":
    import logging
    logging.basicConfig(level=logging.INFO)
    build().serve_forever()
