"""intake api role: native grpcio server. The applicant is the verified caller (services/common/
policy.py): the applicant's own token, or a window clerk's with the applicant present named in
`x-on-behalf-of`. No request names the applicant but SubmitCase, whose applicant.id_number must be
that applicant's (or empty). An officer reads a case (GetCase) and its materials (DownloadMaterial)
when their department, in their region, holds a task in it. Someone else's case is NOT_FOUND."""
import asyncio
import contextvars
import functools
import time
from typing import cast

from google.protobuf import json_format

from onething.intake.v1 import intake_pb2, intake_pb2_grpc
from services.common import policy, telemetry
from services.common.config import region_prefix, settings
from services.common.errors import InvalidArgument, PermissionDenied
from services.common.grpc_server import ApiServer
from services.intake import convert, domain
from services.intake.watch_hub import WatchHub
from services.intake.watch_hub import readers as watch_readers
from services.intake.wiring import build_intake


def case_to_proto(case):
    """The domain's case (domain.Case) as the api sends it: statuses as CaseStatus numbers, moments
    (the submission's datetime, the history's and rectification requests' RFC 3339 strings) as
    Timestamps, unset where the domain has none."""
    return intake_pb2.Case(
        case_no=case.case_no, package_code=case.package_code, package_version=case.package_version,
        region_code=case.region_code, applicant=json_format.ParseDict(case.applicant, intake_pb2.Case().applicant),
        status=_status(case.status), form=case.form,
        submitted_at=convert.shown_timestamp(case.submitted_at, "submitted_at"),
        materials=[json_format.ParseDict(m, intake_pb2.Case().materials.add()) for m in case.materials],
        delivery=json_format.ParseDict(case.delivery or {}, intake_pb2.Case().delivery),
        history=[intake_pb2.StatusChange(status=_status(h.status), at=convert.shown_timestamp(h.at, "history.at"),
                                         note=h.note, note_only=h.note_only) for h in case.history],
        license_ids=case.license_ids, situations=case.situations or {},
        revoked_license_ids=case.revoked_license_ids or [],
        parties=[json_format.ParseDict(p, intake_pb2.Case().parties.add()) for p in (case.parties or [])],
        rectification=_rectification(case.rectification))


def _status(status: domain.CaseStatus) -> intake_pb2.CaseStatus:
    """The CaseStatus number of a status (domain.PROTO_STATUS: explicit, not by name)."""
    return cast(intake_pb2.CaseStatus, domain.PROTO_STATUS[status])


def _rectification(rect):
    rect = dict(rect or {})
    if rect.get("resume_status"):
        rect["resume_status"] = domain.PROTO_STATUS[rect["resume_status"]]
    requests = rect.pop("requests", None) or []
    shown = json_format.ParseDict(rect, intake_pb2.Rectification(), ignore_unknown_fields=True)
    for r in requests:  # `at` as kept (RFC 3339; "" for none) -> a Timestamp, unset for none
        request = json_format.ParseDict({k: v for k, v in r.items() if k != "at"}, shown.requests.add(),
                                        ignore_unknown_fields=True)
        at = convert.shown_timestamp(r.get("at", ""), "rectification.requests.at")
        if at is not None:
            request.at.CopyFrom(at)
    return shown


def _as_dict(message):
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _who(caller):
    """(acted_by for events, `by` for the case's history): the applicant themselves add nothing."""
    if caller.is_(policy.APPLICANT):
        return "applicant", ""
    return caller.acted_by(), caller.label()


class IntakeApi(intake_pb2_grpc.IntakeServiceServicer):
    def __init__(self, intake):
        self.intake = intake
        self.hub = None  # the watch hub, made on the server's loop by the first watch

    def UploadMaterial(self, request_iterator, context):
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidArgument("the first message of an upload must be its header")

        def chunks():
            for msg in request_iterator:
                if msg.WhichOneof("part") != "chunk":
                    raise InvalidArgument("only the first message of an upload may be a header")
                yield msg.chunk

        header = _as_dict(first.header)
        header["applicant_id"] = policy.current().require_applicant()  # the token's: the header names none
        return intake_pb2.Upload(**self.intake.upload(header, chunks()))

    def SubmitCase(self, request, context):
        caller = policy.current()
        applicant_id = caller.require_applicant()
        req = _as_dict(request)
        named = (req.get("applicant") or {}).get("id_number", "")
        if named and named != applicant_id:
            raise PermissionDenied("a case is submitted in the applicant's own name: applicant.id_number is not the "
                                   + ("applicant the clerk acts for (x-on-behalf-of)" if caller.is_(policy.CLERK)
                                      else "token's applicant; an agent applies in their own name, as a party"),
                                   zh="只能以本人名义申请（代理人请以本人身份申请并作为当事人登记）。")
        req.setdefault("applicant", {})["id_number"] = applicant_id
        if caller.is_(policy.CLERK) and req.get("region_code") and not caller.within(req["region_code"]):
            raise PermissionDenied(f"clerk {caller.sub} works in {caller.region}: a case for region "
                                   f"{str(req['region_code'])[:8]} is submitted at a window of that region")
        acted_by, by = _who(caller)
        return case_to_proto(self.intake.submit(req, acted_by=acted_by, by=by))

    def GetCase(self, request, context):
        # a member of staff's read (a clerk on an applicant's behalf, an officer) is audited, the actor
        # from the token
        caller = policy.current()
        return case_to_proto(self.intake.get_case(request.case_no, actor=caller.audit_actor(),
                                                  allow=self._readable(caller)))

    @staticmethod
    def _allow(caller):
        """own_case: the case's applicant is the caller's (a clerk: the applicant present, in the
        clerk's region); anything else is answered as a case that does not exist."""
        if caller.is_(policy.CLERK):
            caller.require_applicant()
        return lambda case: caller.owns((case.applicant or {}).get("id_number", ""), case.region_code)

    @classmethod
    def _readable(cls, caller):
        """case_or_task: as own_case, and for an officer a case in which the token's department, in
        the token's region, holds a task."""
        if caller.is_(policy.OFFICER):
            return lambda case: domain.holds_task(case, caller.department, caller.region)
        return cls._allow(caller)

    def DownloadMaterial(self, request, context):
        # a server stream (one of the api's server-stream slots while it lasts); a member of staff's
        # read is audited
        caller = policy.current()
        material, parts = self.intake.download(request.case_no, request.material_code, actor=caller.audit_actor(),
                                               allow=self._readable(caller))
        first = True  # the handler gives at least one part: the first message says what the material is
        for data in parts:
            if first:
                first = False
                yield intake_pb2.MaterialChunk(material_code=material.material_code, name=material.name,
                                               sha256=material.sha256, content_type=material.content_type,
                                               size=material.size, chunk=data)
            else:
                yield intake_pb2.MaterialChunk(chunk=data)

    def SupplementCase(self, request, context):
        caller = policy.current()
        allow = self._allow(caller)
        req = dict(_as_dict(request), applicant_id=caller.require_applicant())
        acted_by, by = _who(caller)
        return case_to_proto(self.intake.supplement(req, allow=allow, acted_by=acted_by, by=by))

    def WithdrawCase(self, request, context):
        caller = policy.current()
        allow = self._allow(caller)
        req = dict(_as_dict(request), applicant_id=caller.require_applicant())
        acted_by, by = _who(caller)
        return case_to_proto(self.intake.withdraw(req, allow=allow, acted_by=acted_by, by=by))

    async def WatchCase(self, request, context):
        # async: a watch holds no thread while it waits. The first read (the access rule, a member
        # of staff's read audited) runs on the server's pool; then the api's one watch hub polls
        # every watched case at once and hands this stream the changes of its case
        # (services/intake/watch_hub.py). The api server gives watches their own slots, per caller
        # and overall, and ends them after its time limit (ONETHING_STREAM_WATCHES_*).
        caller = policy.current()
        read = functools.partial(self.intake.get_case, request.case_no, actor=caller.audit_actor(),
                                 allow=self._allow(caller))
        case = await asyncio.get_running_loop().run_in_executor(None, contextvars.copy_context().run, read)
        yield case_to_proto(case)
        if self.hub is None:
            stamps, cases = watch_readers(self.intake.store)
            self.hub = WatchHub(stamps, cases, interval=self.intake.watch_poll_s)
        views = self.hub.watch(case, time.monotonic() + self.intake.watch_limit_s, context.is_active)
        try:
            async for view in views:
                yield case_to_proto(view)
        finally:
            await views.aclose()

    def ListCases(self, request, context):
        caller = policy.current()
        req = dict(_as_dict(request), applicant_id=caller.require_applicant())  # the token's applicant
        prefix = region_prefix(caller.region) if caller.is_(policy.CLERK) else None
        cases, token = self.intake.list_cases(req, actor=caller.audit_actor(), region_prefix=prefix)
        return intake_pb2.ListCasesResponse(cases=[case_to_proto(c) for c in cases], next_page_token=token)


def build(port=None):
    s = settings()
    telemetry.setup("intake-api")
    intake = build_intake()
    name = intake_pb2.DESCRIPTOR.services_by_name["IntakeService"].full_name
    return ApiServer(port or s.port("intake"), [(intake_pb2_grpc.add_IntakeServiceServicer_to_server,
                                                IntakeApi(intake))], [name])


if __name__ == "__main__":
    from services.common import logs
    logs.configure()
    build().serve_forever()
