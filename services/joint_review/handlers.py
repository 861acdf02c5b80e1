"""joint_review use cases: open a session for a submitted case, record opinions (from a desk's rule
or a person), take issued licences, and publish what follows. No framework here."""
import datetime

from onething.joint_review.v1 import events_pb2
from services.common import telemetry
from services.common.bus import outbox_entry
from services.common.errors import NotFound
from services.common.events import from_payload
from services.common.mongo import flush_outbox
from services.joint_review import domain
from services.joint_review.store import Conflict, SessionDoc


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def task_routing_key(department_code, region_code):
    return f"task_assigned.{department_code}.{region_code}"


class JointReview:
    def __init__(self, store, bus):
        self.store, self.bus = store, bus

    def open_session(self, event):
        """case_submitted → a session whose first tasks go to their departments' desks."""
        telemetry.mark_case(event.case_no)
        existing, _, _ = self.store.load(event.case_no)
        if existing is not None:
            return existing
        pkg = from_dict(event.package)
        session = domain.new_session(event.case_no, event.region_code, pkg, _now())
        case = {"applicant": from_dict(event.applicant), "materials": [from_dict(m) for m in event.materials],
                "delivery": from_dict(event.delivery), "package_code": pkg["code"],
                "lead_department": pkg.get("lead_department", "")}
        outbox = self._effects(session, case, domain.advance(session, _now()))
        if self.store.create(session, case, outbox):
            flush_outbox(SessionDoc, event.case_no, self.bus, outbox)
        return self.store.load(event.case_no)[0]

    def record_opinion(self, case_no, item_code, department_code, decision, reason, by):
        telemetry.mark_case(case_no)

        def change(session, case):
            if not domain.record_opinion(session, item_code, department_code, decision, reason, by, _now()):
                return None
            task = domain.task_of(session, item_code)
            opinion = events_pb2.OpinionRecorded(
                case_no=case_no, item_code=item_code, item_name=task["item_name"], department_code=department_code,
                region_code=task["region_code"], decision=decision, reason=reason or "", decided_by=by or "",
                result_type=task["result_type"], license_type_code=task["license_type_code"],
                license_type_name=task["license_type_name"], applicant=to_applicant(case["applicant"]))
            return [outbox_entry("opinion_recorded", opinion, case_no)]

        session = self._update(case_no, change)
        return dict(domain.task_of(session, item_code), case_no=case_no)

    def license_issued(self, event):
        telemetry.mark_case(event.case_no)

        def change(session, case):
            return [] if domain.license_issued(session, event.item_code, event.license_id) else None

        return self._update(event.case_no, change)

    def get_session(self, case_no):
        session, _, _ = self.store.load(case_no)
        if session is None:
            raise NotFound(f"there is no joint review session for case {case_no}")
        return session

    def list_tasks(self, department_code, region_code, state=None):
        return self.store.tasks(department_code, region_code, state)

    # -----------------------------------------------------------------------------------------
    def _update(self, case_no, change, attempts=20):
        """Load, change, advance and save under the version check; retry when another writer won."""
        for _ in range(attempts):
            session, case, version = self.store.load(case_no)
            if session is None:
                raise NotFound(f"there is no joint review session for case {case_no}")
            outbox = change(session, case)
            if outbox is None:
                return session
            outbox += self._effects(session, case, domain.advance(session, _now()))
            try:
                self.store.save(session, version, outbox)
            except Conflict:
                continue
            flush_outbox(SessionDoc, case_no, self.bus, outbox)
            return session
        raise RuntimeError(f"session {case_no} kept changing under us")

    def _effects(self, session, case, effects):
        out = []
        for effect in effects:
            if effect[0] == "assign":
                task = effect[1]
                msg = from_payload(events_pb2.TaskAssigned, {
                    "case_no": session["case_no"], "item_code": task["item_code"], "item_name": task["item_name"],
                    "department_code": task["department_code"], "region_code": task["region_code"],
                    "material_codes": task["material_codes"], "license_inputs": task["license_inputs"],
                    "license_ids": domain.licenses_for(session, task), "applicant": case["applicant"],
                    "materials": case["materials"]})
                out.append(outbox_entry(task_routing_key(task["department_code"], task["region_code"]),
                                        msg, session["case_no"]))
            else:
                _, approved, reason = effect
                msg = from_payload(events_pb2.CaseConcluded, {
                    "case_no": session["case_no"], "approved": approved, "reason": reason,
                    "license_ids": domain.all_licenses(session), "applicant": case["applicant"],
                    "delivery": case["delivery"], "region_code": session["region_code"],
                    "package_code": session["package_code"], "lead_department": case.get("lead_department", "")})
                out.append(outbox_entry("case_concluded", msg, session["case_no"]))
        return out


def from_dict(message):
    from google.protobuf import json_format
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def to_applicant(applicant):
    return from_payload(events_pb2.TaskAssigned().applicant.__class__, applicant or {})
