"""evaluation api role: native grpcio server. The case's applicant rates it (a clerk on their
behalf); officers of the department a 差评 is counted for call back and close it, and list their
department's; operators see their region's; the actor is the token's, never a request field
(services/common/policy.py). Moments, days and the channel are typed on the wire (Timestamp,
google.type.Date, Channel) and mapped from and to the domain's plain values here, once
(services/evaluation/contracts.py)."""
from google.protobuf import json_format

from onething.evaluation.v1 import evaluation_pb2 as pb
from onething.evaluation.v1 import evaluation_pb2_grpc as pb_grpc
from services.common import policy, telemetry
from services.common.config import settings
from services.common.errors import PermissionDenied
from services.common.grpc_server import ApiServer
from services.common.privacy import mask_id
from services.evaluation import contracts, domain
from services.evaluation.wiring import build_evaluation

# the fields of a rating / rectification whose proto type is not what json_format reads from the
# domain's plain values: set one by one (services/evaluation/contracts.py)
_TYPED = ("channel", "rated_at", "opened_at", "deadline", "closed_at", "callbacks", "rectification")


def _set(message, field, value):
    if value is not None:
        getattr(message, field).CopyFrom(value)


def _plain(body):
    return {k: v for k, v in body.items() if k not in _TYPED}


def rectification(rect):
    """A rectification (domain values) as its proto message."""
    message = json_format.ParseDict(dict(_plain(rect), grade=domain.GRADE_PROTO[rect["grade"]],
                                         status=domain.STATUS_PROTO[rect["status"]]),
                                    pb.Rectification(), ignore_unknown_fields=True)
    message.channel = contracts.channel_to_proto(rect.get("channel", ""))
    _set(message, "opened_at", contracts.timestamp_of(rect.get("opened_at")))
    _set(message, "deadline", contracts.date_of(rect.get("deadline")))
    _set(message, "closed_at", contracts.timestamp_of(rect.get("closed_at")))
    for call in rect.get("callbacks") or []:
        added = message.callbacks.add(by=call.get("by", ""), note=call.get("note", ""))
        _set(added, "at", contracts.timestamp_of(call.get("at")))
    return message


def to_proto(body):
    """A rating (domain values) as its proto message."""
    message = json_format.ParseDict(dict(_plain(body), grade=domain.GRADE_PROTO[body["grade"]]), pb.Evaluation(),
                                    ignore_unknown_fields=True)
    message.channel = contracts.channel_to_proto(body.get("channel", ""))
    _set(message, "rated_at", contracts.timestamp_of(body.get("rated_at")))
    if body.get("rectification") is not None:
        message.rectification.CopyFrom(rectification(body["rectification"]))
    return message


def _department_concerned(caller):
    """department_concerned: an officer of the department the 差评 is counted for, in its region."""
    def allow(rect):
        if not (caller.is_(policy.OFFICER) and rect.get("department_code") == caller.department
                and caller.within(rect.get("region_code", ""))):
            raise PermissionDenied(f"only officers of department {rect.get('department_code') or '?'} in "
                                   f"{rect.get('region_code') or '?'} put this 差评 right")
    return allow


class EvaluationApi(pb_grpc.EvaluationServiceServicer):
    def __init__(self, evaluation):
        self.evaluation = evaluation

    def SubmitEvaluation(self, request, context):
        caller = policy.current()
        applicant_id = caller.require_applicant()  # the token's applicant (the request names none)
        return to_proto(self.evaluation.submit(request.case_no, applicant_id,
                                               contracts.channel_from_proto(request.channel),
                                               domain.grade_from_proto(request.grade), dict(request.dimensions),
                                               request.comment, request.department_code,
                                               allow=lambda case: caller.owns(case.applicant_id, case.region_code),
                                               acted_by=caller.acted_by()))

    def GetEvaluation(self, request, context):
        caller = policy.current()
        if caller.is_(policy.CLERK):
            caller.require_applicant()

        def allow(body):
            if caller.is_(policy.APPLICANT, policy.CLERK):
                return caller.owns(body.get("applicant_id", ""), body.get("region_code", ""))
            if caller.is_(policy.OFFICER):
                return body.get("department_code") == caller.department and caller.within(body.get("region_code", ""))
            return caller.is_(policy.OPERATOR) and caller.within(body.get("region_code", ""))
        body = self.evaluation.get(request.case_no, actor=caller.audit_actor(), allow=allow)
        if not caller.is_(policy.APPLICANT) and body.get("applicant_id"):
            body = dict(body, applicant_id=mask_id(body["applicant_id"]))
        return to_proto(body)

    def RecordCallback(self, request, context):
        caller = policy.current()  # the officer is the token's subject (the request names none)
        return rectification(self.evaluation.record_callback(request.case_no, request.note, caller.sub,
                                                             contracts.channel_from_proto(request.channel),
                                                             actor=caller.audit_actor(),
                                                             allow=_department_concerned(caller)))

    def CloseRectification(self, request, context):
        caller = policy.current()
        return rectification(self.evaluation.close(request.case_no, request.result, caller.sub,
                                                   contracts.channel_from_proto(request.channel),
                                                   actor=caller.audit_actor(), allow=_department_concerned(caller)))

    def ListBadReviews(self, request, context):
        # department_scope: an officer sees their department in their region; an operator their region
        caller = policy.current()
        if request.region_code and not caller.within(request.region_code):
            raise PermissionDenied(f"{caller.role} {caller.sub} works in {caller.region}, not {request.region_code[:8]}")
        department = request.department_code
        if caller.is_(policy.OFFICER):
            if department and department != caller.department:
                raise PermissionDenied(f"officer {caller.sub} works for {caller.department}, not {department[:16]}")
            department = caller.department

        def allow(rect):
            return caller.within(rect.get("region_code", "")) and (
                not caller.is_(policy.OFFICER) or rect.get("department_code") == caller.department)
        found, token = self.evaluation.bad_reviews(department, request.region_code, request.open_only,
                                                   actor=caller.audit_actor(), allow=allow,
                                                   page_size=request.page_size, page_token=request.page_token)
        return pb.ListBadReviewsResponse(rectifications=[rectification(r) for r in found], next_page_token=token)

    def GetStatistics(self, request, context):
        rows = self.evaluation.statistics(domain.group_from_proto(request.group_by), request.region_code,
                                          request.department_code, request.package_code,
                                          contracts.request_day(request, "rated_from"),
                                          contracts.request_day(request, "rated_to"))
        return pb.GetStatisticsResponse(rows=[pb.StatisticsRow(**r) for r in rows])


def build(port=None):
    telemetry.setup("evaluation-api")
    evaluation = build_evaluation()
    name = pb.DESCRIPTOR.services_by_name["EvaluationService"].full_name
    return ApiServer(port or settings().port("evaluation"),
                     [(pb_grpc.add_EvaluationServiceServicer_to_server, EvaluationApi(evaluation))], [name])


if __name__ == "__main__":
    from services.common import logs
    logs.configure()
    build().serve_forever()
