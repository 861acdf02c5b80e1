"""joint_review api role: native grpcio server. Staff calls carry an officer's bearer token; the
department and region come from the token, never from the request. GetSession: the case's applicant
(a clerk on their behalf), or an officer whose department has a task in the case (services/common/
policy.py)."""
import datetime

from google.protobuf import json_format

from onething.joint_review.v1 import joint_review_pb2 as pb
from onething.joint_review.v1 import joint_review_pb2_grpc as pb_grpc
from services.common import policy, telemetry
from services.common.config import settings
from services.common.errors import InvalidArgument, PermissionDenied
from services.common.grpc_server import ApiServer
from services.joint_review import codec, domain
from services.joint_review.wiring import build_review

# a task's and a rectification's moments: ISO strings in the session, Timestamps on the wire (codec)
TASK_MOMENTS = ("assigned_at", "decided_at")
RECTIFICATION_MOMENTS = ("requested_at", "supplied_at")


def _today():
    return datetime.datetime.now(domain.CST).date()


def _set_moments(msg, values, names):
    """The ISO moments `names` of `values` onto `msg`'s Timestamp fields (an empty one stays unset)."""
    for name in names:
        ts = codec.timestamp_of(values.get(name))
        if ts is not None:
            getattr(msg, name).CopyFrom(ts)


def clock_to_proto(c, today, statutory_days=0):
    view = domain.clock_view(c, today, statutory_days)
    msg = json_format.ParseDict({k: v for k, v in view.items() if k != "due_date"}, pb.Clock())
    due = codec.date_of(view.get("due_date"))
    if due is not None:
        msg.due_date.CopyFrom(due)
    return msg


def task_to_proto(task, today=None):
    today = today or _today()
    data = {k: v for k, v in task.items()
            if k not in ("clock", "rectification", "state", "decision", *TASK_MOMENTS)}
    msg = json_format.ParseDict(data, pb.Task(), ignore_unknown_fields=True)
    msg.state = domain.TASK_STATE_PROTO[task["state"]]
    msg.decision = domain.DECISION_PROTO.get(task.get("decision"), 0)
    _set_moments(msg, task, TASK_MOMENTS)
    if task.get("clock"):
        msg.clock.CopyFrom(clock_to_proto(task["clock"], today, task.get("statutory_limit_days", 0)))
    rect = task.get("rectification")
    if rect:
        msg.rectification.CopyFrom(json_format.ParseDict(
            {k: v for k, v in rect.items() if k not in RECTIFICATION_MOMENTS}, pb.Rectification(),
            ignore_unknown_fields=True))
        _set_moments(msg.rectification, rect, RECTIFICATION_MOMENTS)
    return msg


def inspection_to_proto(insp):
    msg = pb.Inspection(
        status=codec.inspection_status_number(insp["status"]), place=insp["place"],
        participants=insp["participants"], report_key=insp.get("report_key", ""),
        scheduled_by=insp.get("scheduled_by", ""))
    _set_moments(msg, insp, ("at",))
    for department, f in sorted(insp["findings"].items()):
        finding = msg.findings.add(department_code=department, passed=f["passed"], notes=f["notes"], by=f["by"])
        _set_moments(finding, f, ("at",))
    return msg


def session_to_proto(s, case=None):
    today = _today()
    msg = pb.Session(case_no=s["case_no"], package_code=s["package_code"],
                     status=pb.SessionStatus.ValueType(domain.SESSION_STATUS_PROTO[s["status"]]),
                     lead_department=s.get("lead_department", ""),
                     withdrawn_after=codec.session_status_number(s.get("withdrawn_after")),
                     tasks=[task_to_proto(dict(t, case_no=s["case_no"], needed_license_ids=domain.needed_license_ids(
                         s, t, (case or {}).get("materials") or ())), today) for t in s["tasks"]])
    _set_moments(msg, s, ("opened_at", "concluded_at", "withdrawn_at"))
    if s.get("clock"):
        msg.clock.CopyFrom(clock_to_proto(s["clock"], today, s.get("statutory_limit_days", 0)))
    if s.get("inspection"):
        msg.inspection.CopyFrom(inspection_to_proto(s["inspection"]))
    return msg


class JointReviewApi(pb_grpc.JointReviewServiceServicer):
    def __init__(self, review):
        self.review = review

    def _officer(self, context, department=""):
        """The calling officer (verified by the api server's gate); a department named in the request
        must be the token's own."""
        actor = policy.current().actor
        if actor is None or actor.role != "officer":
            raise PermissionDenied(f"only department officers may do this, not a {getattr(actor, 'role', 'caller')}")
        if department and department != actor.department:
            raise PermissionDenied(f"officer {actor.sub} works for {actor.department}, not {department}")
        return actor

    def _session_of_region(self, actor, case_no):
        """department_task: the case is handled in the officer's region and their department has a
        task in it (which task, and whether it may be done now, the handler decides)."""
        session = self.review.get_session(case_no)
        if session["region_code"] != actor.region:
            raise PermissionDenied(f"case {case_no} is handled in {session['region_code']}, not {actor.region}")
        if not any(t["department_code"] == actor.department for t in session["tasks"]):
            raise PermissionDenied(f"department {actor.department} has no task in case {case_no}")
        return session

    def GetSession(self, request, context):
        # a member of staff's read is audited (the actor from the token)
        caller = policy.current()
        if caller.is_(policy.CLERK):
            caller.require_applicant()

        def allow(session, case):
            if caller.is_(policy.OFFICER):  # their department has a task in the case, in their region
                return caller.within(session.get("region_code", "")) and any(
                    t["department_code"] == caller.department for t in session["tasks"])
            return caller.owns((case.get("applicant") or {}).get("id_number", ""), session.get("region_code", ""))
        session, case = self.review.session_and_case(request.case_no, actor=caller.audit_actor(), allow=allow)
        return session_to_proto(session, case)

    def ListTasks(self, request, context):
        actor = self._officer(context, request.department_code)
        if request.region_code and request.region_code != actor.region:
            raise PermissionDenied(f"officer {actor.sub} works in {actor.region}, not {request.region_code}")
        state = domain.task_state_from_proto(request.state)  # None (unspecified): all
        today = _today()
        tasks, token = self.review.list_tasks(actor.department, actor.region, state, actor=actor,
                                              page_size=request.page_size, page_token=request.page_token)
        return pb.ListTasksResponse(tasks=[task_to_proto(t, today) for t in tasks], next_page_token=token)

    def ClaimTask(self, request, context):
        actor = self._officer(context)
        self._session_of_region(actor, request.case_no)
        return task_to_proto(self.review.claim(request.case_no, request.item_code, actor.department, actor.sub,
                                               actor=actor))

    def RecordOpinion(self, request, context):
        actor = self._officer(context, request.department_code)
        if not request.case_no or not request.item_code:
            raise InvalidArgument("an opinion names the case and the item")
        self._session_of_region(actor, request.case_no)
        task = self.review.record_opinion(request.case_no, request.item_code, actor.department,
                                          domain.decision_from_proto(request.decision), request.reason, actor.sub,
                                          list(request.material_codes), list(request.defects), actor=actor)
        return task_to_proto(task)

    def SuspendClock(self, request, context):
        actor = self._officer(context)
        reason = codec.clock_pause_reason(request.reason)  # "HEARING" …; "" (unspecified) the domain refuses
        self._session_of_region(actor, request.case_no)
        return task_to_proto(self.review.suspend_clock(request.case_no, request.item_code, actor.department,
                                                       reason, actor=actor))

    def ResumeClock(self, request, context):
        actor = self._officer(context)
        self._session_of_region(actor, request.case_no)
        return task_to_proto(self.review.resume_clock(request.case_no, request.item_code, actor.department,
                                                      actor=actor))

    def ScheduleInspection(self, request, context):
        actor = self._officer(context)
        # the visit's time as the session keeps it: an ISO moment in China Standard Time ("" unset)
        at = codec.iso_of(request.at if request.HasField("at") else None, "at", domain.CST)
        self._session_of_region(actor, request.case_no)
        return session_to_proto(self.review.schedule_inspection(request.case_no, actor.department, at,
                                                                request.place, actor.sub, actor=actor))

    def RecordFindings(self, request, context):
        actor = self._officer(context)
        self._session_of_region(actor, request.case_no)
        return session_to_proto(self.review.record_findings(request.case_no, actor.department, request.passed,
                                                            request.notes, actor.sub, actor=actor))


def build(port=None):
    telemetry.setup("joint_review-api")
    name = pb.DESCRIPTOR.services_by_name["JointReviewService"].full_name
    return ApiServer(port or settings().port("joint_review"),
                     [(pb_grpc.add_JointReviewServiceServicer_to_server, JointReviewApi(build_review()))], [name])


if __name__ == "__main__":
    from services.common import logs
    logs.configure()
    build().serve_forever()
