"""joint_review use cases: open a session for a submitted case, record opinions (from a desk's rule
or an officer), rectification rounds, the joint site inspection, licences as they are issued,
withdrawal, legal clocks, and the events that follow. No framework here: the store (the persistence
port: it saves a session with its expected version and its new events, and publishes them), blobs,
the audit log and the clock are passed in (wiring.py)."""
import datetime

from google.protobuf import json_format

from onething.common.v1 import common_pb2
from onething.joint_review.v1 import events_pb2, joint_review_pb2
from services.common import paging, pdf, telemetry
from services.common.audit import SERVICE, AuditActor, MemoryAuditLog
from services.common.bus import outbox_entry
from services.common.errors import DomainError, FailedPrecondition, NotFound, PermissionDenied
from services.common.events import from_payload
from services.common.registry import desk_broker_user
from services.joint_review import codec, domain
from services.joint_review.domain import Conflict

RESULTS = "results"


def system_clock():
    """The clock adapter: the time now, timezone-aware."""
    return datetime.datetime.now(datetime.UTC)


def decision_name(decision):
    """A Decision as the protos and the audit log spell it (DECISION_UNSPECIFIED for none)."""
    return common_pb2.Decision.Name(domain.DECISION_PROTO.get(decision, 0))


def task_state_name(state):
    """A TaskState as the protos and the audit log spell it (TASK_STATE_ASSIGNED …)."""
    return joint_review_pb2.TaskState.Name(domain.TASK_STATE_PROTO[state])


def task_routing_key(department_code, region_code):
    return f"task_assigned.{department_code}.{region_code}"


class JointReview:
    def __init__(self, store, blobs=None, audit=None, clock=None, serves=None, site=""):
        self.store, self.blobs = store, blobs
        # the region code of this site: tasks name it, so that their desks' opinions come back here
        self.site = site
        # the audit log (services.common.audit): decisions, claims, inspections, clocks and staff reads
        self.audit = audit or MemoryAuditLog("joint_review")
        self.clock = clock or system_clock  # () -> aware datetime
        self.serves = serves  # region_code -> bool: which regions this site reviews (None: all)

    def _now(self):
        return self.clock().astimezone(datetime.UTC).isoformat()

    def _today(self):
        return self.clock().astimezone(domain.CST).date()

    # case lifecycle ------------------------------------------------------------------------
    def open_session(self, submitted):
        """case_submitted (a domain.CaseSubmitted, decoded by the worker) → a session whose first
        tasks go to their departments' desks."""
        case_no, region_code = submitted.case_no, submitted.region_code
        telemetry.mark_case(case_no)
        # no read first: a session that exists already makes create() refuse (a redelivery, rare)
        if self.serves is not None and not self.serves(region_code):
            existing = self.store.load(case_no).session
            if existing is not None:  # opened before the site stopped serving the region
                return existing
            raise FailedPrecondition(f"this site does not review cases of region {region_code!r}")
        pkg = submitted.package
        now = self._now()
        materials = [dict(m) for m in submitted.materials]
        session = domain.new_session(case_no, region_code, pkg, now, materials, dict(submitted.form or {}))
        case = {"applicant": dict(submitted.applicant), "materials": materials,
                "parties": [dict(p) for p in submitted.parties],
                "delivery": dict(submitted.delivery), "package_code": pkg["code"],
                "package_name": pkg.get("name", ""), "lead_department": pkg.get("lead_department", "")}
        outbox = self._effects(session, case, domain.advance(session, now))
        opened = events_pb2.SessionOpened(
            case_no=case_no, region_code=region_code, package_code=pkg["code"],
            item_codes=[t["item_code"] for t in session["tasks"]],
            department_codes=sorted({t["department_code"] for t in session["tasks"]}),
            opened_at=codec.timestamp_of(now))
        outbox.append(outbox_entry("session_opened", opened, case_no))
        if self.store.create(session, case, outbox):
            return session
        return self.store.load(case_no).session  # another delivery of the event opened it first

    def case_supplemented(self, event):
        """The applicant handed in what was asked: the departments that asked review again."""
        telemetry.mark_case(event.case_no)
        supplied = [from_dict(m) for m in event.materials]

        def change(session, case):
            resumed = domain.supplemented(session, [m["material_code"] for m in supplied], self._now(),
                                          dict(event.rounds))
            if not resumed:
                return None
            kept = [m for m in case["materials"] if m["material_code"] not in {s["material_code"] for s in supplied}]
            case["materials"] = kept + supplied
            return self._effects(session, case, [("assign", t) for t in resumed])

        return self._update(event.case_no, change, case_changes=True)

    def case_withdrawn(self, event):
        """intake accepted a withdrawal: it wins, decided here under the session's version check
        (see domain.withdraw). `session_withdrawn` goes out once, in the same update; when the
        departments had concluded already it makes their conclusion void (licences revoked, nothing
        delivered). A redelivered withdrawal changes nothing."""
        telemetry.mark_case(event.case_no)

        def change(session, case):
            if not domain.withdraw(session, self._now()):
                return None
            return [self._withdrawn(session, domain.all_licenses(session), event.reason)]

        for _ in range(3):
            session = self._update(event.case_no, change, missing_ok=True)
            if session is not None:
                return session
            # the withdrawal overtook case_submitted: a closed session, so the late case opens nothing
            session = domain.withdrawn_before_opening(event.case_no, event.region_code, self._now())
            if self.store.create(session, {}, [self._withdrawn(session, [], event.reason)]):
                return session
            # case_submitted opened the session meanwhile: withdraw that one
        raise RuntimeError(f"session {event.case_no} kept changing under us")

    def license_revoked(self, event):
        """elicense revoked or superseded a licence: if it was issued for one of this site's
        sessions, the item keeps that it is no longer valid (tasks assigned later say so)."""
        telemetry.mark_case(event.case_no)
        return self._update(event.case_no, lambda s, c: [] if domain.license_revoked(s, event.license_id) else None,
                            missing_ok=True)

    def license_issued(self, event):
        """A licence elicense issued: the item is done; its type and document key are kept for
        case_concluded's results. A licence issued for an opinion given before a withdrawal arrives
        after it: it is recorded and `session_withdrawn` names it, so that elicense revokes it too
        (no licence stays valid for a withdrawn case)."""
        telemetry.mark_case(event.case_no)

        def change(session, case):
            if not domain.license_issued(session, event.item_code, event.license_id, event.type_code,
                                         event.document_key):
                return None
            if session["status"] == domain.S_WITHDRAWN:
                return [self._withdrawn(session, [event.license_id], "")]
            return []

        return self._update(event.case_no, change)

    @staticmethod
    def _withdrawn(session, license_ids, reason):
        msg = events_pb2.SessionWithdrawn(
            case_no=session["case_no"], region_code=session["region_code"], license_ids=list(license_ids),
            after_conclusion=bool(session.get("withdrawn_after")),
            overridden=codec.session_status_number(session.get("withdrawn_after")),
            withdrawn_at=codec.timestamp_of(session.get("withdrawn_at")), reason=reason or "")
        return outbox_entry("session_withdrawn", msg, session["case_no"])

    # department work -------------------------------------------------------------------------
    def claim(self, case_no, item_code, department_code, officer, actor=None):
        telemetry.mark_case(case_no)
        with self.audit.attempt(actor, "task.claim", case_no, item_code=item_code, department_code=department_code):
            session = self._update(case_no, lambda s, c: [] if domain.claim(s, item_code, department_code, officer)
                                   else None)
        return dict(domain.task_of(session, item_code), case_no=case_no)

    def record_opinion(self, case_no, item_code, department_code, decision, reason, by, materials=(), defects=(),
                       actor=None, answering_round=None, loaded=None):
        """A department's decision, from its desk or an officer (`actor`: who, for the audit log).
        `answering_round`: the task's round the opinion was given on (a desk's), refused when the
        task has been through a rectification since. `loaded`: the session as the caller has just
        read it (StoredSession), tried first instead of reading it again."""
        telemetry.mark_case(case_no)
        with self.audit.attempt(actor, "opinion.record", case_no, item_code=item_code, department_code=department_code,
                                decision=decision_name(decision), material_codes=list(materials)):
            return self._record_opinion(case_no, item_code, department_code, decision, reason, by, materials, defects,
                                        answering_round, loaded)

    def desk_opinion(self, opinion, sender):
        """A department desk's opinion (a DeskOpinion, decoded by the worker) that the broker
        delivered from the broker user `sender` (the message's user_id, which the broker checked
        against the desk's login). Recorded only when `sender` is the desk of the department and
        region that own the task as this session keeps it, whatever the opinion says of itself;
        from anyone else it is refused (PermissionDenied, in the audit log) and changes nothing."""
        telemetry.mark_case(opinion.case_no)
        # a recent copy serves when it has the task (who owns a task never changes; _update reads
        # again if need be); without one, or without the task in it, a fresh read
        loaded = self.store.recent(opinion.case_no)
        if loaded is None or not any(t["item_code"] == opinion.item_code for t in loaded.session["tasks"]):
            loaded = self.store.load(opinion.case_no)
        session = loaded.session
        if session is None:
            raise NotFound(f"there is no joint review session for case {opinion.case_no}")
        task = domain.task_of(session, opinion.item_code)
        department, region = task["department_code"], task["region_code"]
        owner = desk_broker_user(department, region)
        if sender != owner:
            stranger = AuditActor(f"broker:{sender or '-'}", "service", auth=SERVICE)
            with self.audit.attempt(stranger, "opinion.record", opinion.case_no, item_code=opinion.item_code,
                                    department_code=opinion.department_code):
                raise PermissionDenied(f"an opinion on item {opinion.item_code} of case {opinion.case_no} is taken "
                                       f"from {owner} only, not from {sender or 'a sender without a user id'}")
        by = f"desk:{department}:{region}"
        return self.record_opinion(opinion.case_no, opinion.item_code, opinion.department_code,
                                   domain.decision_from_proto(opinion.decision), opinion.reason, by,
                                   materials=list(opinion.material_codes), defects=list(opinion.defects),
                                   actor=AuditActor(by, "service", department, region, auth=SERVICE),
                                   answering_round=opinion.round, loaded=loaded)

    def _record_opinion(self, case_no, item_code, department_code, decision, reason, by, materials, defects,
                        answering_round=None, loaded=None):
        def change(session, case):
            if answering_round is not None:
                domain.answers_round(session, item_code, answering_round)
            if not domain.record_opinion(session, item_code, department_code, decision, reason, by, self._now(),
                                         materials, defects):
                return None
            task = domain.task_of(session, item_code)
            opinion = {
                "case_no": case_no, "item_code": item_code, "item_name": task["item_name"],
                "department_code": department_code, "region_code": task["region_code"],
                "decision": domain.DECISION_PROTO[decision],
                "reason": reason or "", "decided_by": by or "", "result_type": task["result_type"],
                "license_type_code": task["license_type_code"], "license_type_name": task["license_type_name"]}
            if decision == domain.APPROVE and task["result_type"] == domain.LICENSE:
                opinion.update(domain.licence_recipient(task, case))  # only what elicense issues with
            opinion = from_payload(events_pb2.OpinionRecorded, opinion)
            return [outbox_entry("opinion_recorded", opinion, case_no)]

        session = self._update(case_no, change, loaded=loaded)
        return dict(domain.task_of(session, item_code), case_no=case_no)

    def suspend_clock(self, case_no, item_code, department_code, reason, actor=None):
        telemetry.mark_case(case_no)
        with self.audit.attempt(actor, "clock.suspend", case_no, item_code=item_code, department_code=department_code,
                                reason=reason):
            session = self._update(case_no, lambda s, c: domain.suspend(s, item_code, department_code, reason,
                                                                        self._now()) and [])
        return dict(domain.task_of(session, item_code), case_no=case_no)

    def resume_clock(self, case_no, item_code, department_code, actor=None):
        telemetry.mark_case(case_no)
        with self.audit.attempt(actor, "clock.resume", case_no, item_code=item_code, department_code=department_code):
            session = self._update(case_no, lambda s, c: domain.resume(s, item_code, department_code, self._now()) and [])
        return dict(domain.task_of(session, item_code), case_no=case_no)

    def schedule_inspection(self, case_no, department_code, at, place, by, actor=None):
        telemetry.mark_case(case_no)
        # the place is an address: not in the audit record (the session keeps it)
        with self.audit.attempt(actor, "inspection.schedule", case_no, department_code=department_code, at=at):
            return self._update(case_no, lambda s, c: domain.schedule_inspection(s, department_code, at, place, by,
                                                                                 self._now()) and [])

    def record_findings(self, case_no, department_code, passed, notes, by, actor=None):
        """The last department's findings produce the merged inspection report in S3."""
        telemetry.mark_case(case_no)
        with self.audit.attempt(actor, "inspection.findings", case_no, department_code=department_code,
                                passed=bool(passed)):
            return self._record_findings(case_no, department_code, passed, notes, by)

    def _record_findings(self, case_no, department_code, passed, notes, by):
        def change(session, case):
            if not domain.record_findings(session, department_code, passed, notes, by, self._now()):
                return []
            insp = session["inspection"]
            key = f"inspections/{case_no}/joint-inspection-report.pdf"
            lines = [f"办件编号：{case_no}", f"事项：{case.get('package_name', session['package_code'])}",
                     f"勘验时间：{insp['at']}", f"勘验地点：{insp['place']}",
                     f"牵头单位：{session['lead_department']}", "参加单位及意见："]
            for dept in insp["participants"]:
                f = insp["findings"][dept]
                lines.append(f"  {dept}：{'合格' if f['passed'] else '不合格'}；{f['notes']}（{f['by']}，{f['at'][:16]}）")
            all_passed = all(f["passed"] for f in insp["findings"].values())
            lines.append(f"结论：{'各部门勘验合格' if all_passed else '存在不合格项，由相关部门提出整改'}")
            self.blobs.put(RESULTS, key, pdf.text_document("联合勘验报告", lines, subject="onething-inspection/1",
                                                           keywords=case_no), content_type="application/pdf")
            insp["report_key"] = key
            done = events_pb2.SessionConcluded(case_no=case_no, kind=codec.session_kind_number("INSPECTION"),
                                               report_key=key, passed=all_passed,
                                               concluded_at=codec.timestamp_of(insp["completed_at"]))
            return [outbox_entry("session_concluded", done, case_no)]

        return self._update(case_no, change)

    def check_clocks(self, today=None):
        """Escalate (督办) every task that has just gone past its promised limit."""
        today = today or self._today()
        escalated: list[tuple[str, str]] = []
        for case_no in self.store.open_case_numbers(clocks_due_by=today):
            def change(session, case, case_no=case_no):
                late = domain.check_clocks(session, today)
                if not late:
                    return None
                escalated.extend((case_no, t["item_code"]) for t in late)
                return [outbox_entry("task_overdue", events_pb2.TaskOverdue(
                    case_no=case_no, item_code=t["item_code"], department_code=t["department_code"],
                    region_code=t["region_code"], elapsed_days=t["clock"] and domain.clock.elapsed(t["clock"], today),
                    limit_days=t["clock"]["limit_days"]), case_no) for t in late]
            self._update(case_no, change)
        return escalated

    # reading ---------------------------------------------------------------------------------
    def get_session(self, case_no, actor=None, allow=None):
        """The session; read by a member of staff (`actor`), the read is audited."""
        return self.session_and_case(case_no, actor, allow)[0]

    def session_and_case(self, case_no, actor=None, allow=None):
        """(session, case) where case is what joint_review keeps of the case (applicant, materials …).
        `allow(session, case)`: whether the caller may see it (the api's access rule); a session they
        may not see is answered exactly as one that does not exist."""
        with self.audit.read(actor, "session.read", case_no):
            session, case, _ = self.store.load(case_no)
            if session is None or (allow is not None and not allow(session, case or {})):
                raise NotFound(f"there is no joint review session for case {case_no}")
        return session, case or {}

    def list_tasks(self, department_code, region_code, state=None, actor=None, page_size=0, page_token=""):
        """(tasks, next_page_token): a page of a department's tasks in a region, in case-number order,
        at most `page_size` of them (domain.tasks_page_size), the tasks of one case never split
        across pages (a case with more of them than that is a page of its own); the token ("" on
        the last page) asks for the next page."""
        size = domain.tasks_page_size(page_size)
        after = paging.read_after(page_token, 64)  # a case number
        with self.audit.read(actor, "tasks.list", "", department_code=department_code, region_code=region_code,
                             state=task_state_name(state) if state else "") as details:
            found = self.store.tasks(department_code, region_code, state, after=after, sessions=size + 1)
            page, more = _whole_cases(found, size)
            details["case_nos"] = sorted({t["case_no"] for t in page})
        token = paging.after_token(page[-1]["case_no"]) if more else ""
        return page, token

    # -----------------------------------------------------------------------------------------
    def _update(self, case_no, change, attempts=20, case_changes=False, missing_ok=False, loaded=None):
        """Load, change, advance and save under the version check; retry when another writer won.
        `loaded`: the session as the caller read it, used for the first try; without it the first try
        starts from the session as this process last saved or read it (store.recent), when it has
        it. Such a copy may be stale: a save from it meets a Conflict, and a change that it makes no
        change or refuses is tried again on a fresh read, so only a fresh read decides that."""
        for attempt in range(attempts):
            if attempt == 0:
                stored = loaded if loaded is not None else self.store.recent(case_no) or self.store.load(case_no)
            else:
                stored = self.store.load(case_no)
            maybe_stale = isinstance(stored, domain.RecentSession)
            session, case, version = stored
            if session is None:
                if missing_ok:
                    return None
                raise NotFound(f"there is no joint review session for case {case_no}")
            try:
                outbox = change(session, case)
            except DomainError:
                if maybe_stale:
                    continue
                raise
            if outbox is None:
                if maybe_stale:
                    continue
                return session
            outbox += self._effects(session, case, domain.advance(session, self._now()))
            try:
                if case_changes:
                    self.store.save(session, version, outbox, case=case)
                else:
                    self.store.save(session, version, outbox)
            except Conflict:
                continue
            return session
        raise RuntimeError(f"session {case_no} kept changing under us")

    def _effects(self, session, case, effects):
        out: list = []
        holders: dict[tuple[str, str], None] = {}  # (department, region) in order, each once
        for effect in effects:
            kind = effect[0]
            if kind == "assign":
                task = effect[1]
                holders.setdefault((task["department_code"], task["region_code"]), None)
                msg = from_payload(events_pb2.TaskAssigned, {
                    "case_no": session["case_no"], "item_code": task["item_code"], "item_name": task["item_name"],
                    "department_code": task["department_code"], "region_code": task["region_code"],
                    "material_codes": task["material_codes"], "license_inputs": task["license_inputs"],
                    "license_ids": domain.licenses_for(session, task),
                    # only the materials this department reviews; no applicant record (see TaskAssigned)
                    "materials": [m for m in case["materials"] if m.get("material_code") in task["material_codes"]],
                    "inspection": task["inspection"], "round": task["rounds"],
                    # where the desk sends its opinion, and what its rule checks the licence inputs with
                    "site": self.site, "licenses": domain.task_licenses(session, task)})
                out.append(outbox_entry(task_routing_key(task["department_code"], task["region_code"]),
                                        msg, session["case_no"]))
            elif kind == "rectify":
                task = effect[1]
                rect = task["rectification"]
                msg = from_payload(events_pb2.RectificationRequested, {
                    "case_no": session["case_no"], "item_code": task["item_code"],
                    "department_code": task["department_code"], "material_codes": rect["material_codes"],
                    "defects": rect["defects"], "reason": rect["reason"], "round": task["rounds"]})
                out.append(outbox_entry("rectification_requested", msg, session["case_no"]))
            else:
                _, approved, reason = effect
                msg = from_payload(events_pb2.CaseConcluded, {
                    "case_no": session["case_no"], "approved": approved, "reason": reason,
                    "license_ids": domain.all_licenses(session), "results": domain.results(session),
                    "applicant": case["applicant"],
                    "delivery": case["delivery"], "region_code": session["region_code"],
                    "package_code": session["package_code"], "lead_department": case.get("lead_department", "")})
                out.append(outbox_entry("case_concluded", msg, session["case_no"]))
        if holders:  # who takes part, once for the whole change (intake: who may read the case)
            out.append(outbox_entry("tasks_assigned", events_pb2.TasksAssigned(
                case_no=session["case_no"], holders=[events_pb2.TaskHolder(department_code=d, region_code=r)
                                                     for d, r in holders]), session["case_no"]))
        return out


def from_dict(message):
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _whole_cases(tasks, size):
    """(page, more): the tasks of the first cases of `tasks` (in case order, a case's tasks
    together) that fit in `size`, the first case whole whatever its count; more: a case is left."""
    cases: dict = {}
    for task in tasks:
        cases.setdefault(task["case_no"], []).append(task)
    page: list = []
    for mine in cases.values():
        if page and len(page) + len(mine) > size:
            return page, True
        page.extend(mine)
    return page, False
