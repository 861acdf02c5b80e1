"""evaluation use cases: one rating per case and channel, by the case's applicant, after delivery."""
import datetime

from onething.evaluation.v1 import events_pb2
from services.common import telemetry
from services.common.bus import outbox_entry
from services.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from services.common.mongo import flush_outbox
from services.evaluation import domain
from services.evaluation.store import EvaluationDoc


class Evaluation:
    def __init__(self, store, bus):
        self.store, self.bus = store, bus

    def on_delivery_completed(self, event):
        self.store.add_rateable(event.case_no, event.applicant_id, event.region_code, event.package_code)

    def submit(self, case_no, applicant_id, channel, grade, dimensions, comment):
        if not case_no or not applicant_id:
            raise InvalidArgument("a rating names the case (case_no) and the applicant (applicant_id)")
        channel = channel or "online"
        telemetry.mark_case(case_no)
        bad = domain.check(grade, channel, dimensions, comment)
        case = self.store.rateable(case_no)
        if case is None:
            raise FailedPrecondition(f"case {case_no} can be rated once its results have been delivered")
        if case.applicant_id != applicant_id:
            raise PermissionDenied(f"only the applicant of case {case_no} may rate it")
        body = {"case_no": case_no, "applicant_id": applicant_id, "channel": channel, "grade": grade,
                "dimensions": dict(dimensions or {}), "comment": comment or "", "bad_review": bad,
                "rated_at": datetime.datetime.now(datetime.timezone.utc).isoformat()}
        received = events_pb2.EvaluationReceived(case_no=case_no, grade=grade, bad_review=bad)
        outbox = [outbox_entry("evaluation_received", received, case_no)]
        pk = self.store.insert(body, outbox)
        if pk is None:
            raise AlreadyExists(f"case {case_no} has already been rated on the {channel} channel")
        flush_outbox(EvaluationDoc, pk, self.bus, outbox)
        return body

    def get(self, case_no):
        body = self.store.get(case_no)
        if body is None:
            raise NotFound(f"case {case_no} has not been rated")
        return body
