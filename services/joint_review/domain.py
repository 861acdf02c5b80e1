"""Joint review (联办): a case's items as a graph of tasks, one per department, advanced as
opinions, licences, supplements and inspection findings arrive. Pure functions over a session dict:

    {"case_no", "region_code", "package_code", "lead_department", "status", "tasks": [task, ...],
     "inspection": {...}, "clock": {...}}
    task = {"item_code", "item_name", "department_code", "prerequisites", "state", "decision",
            "reason", "decided_by", "claimed_by", "license_id", "license_issued_type_code",
            "license_document_key", "result_type", "license_inputs", "inspection", "clock",
            "rectification", "overdue", ...}

"status" is a SessionStatus, a task's "state" a TaskState and its "decision" a Decision (None until
one is recorded); the store keeps them as the strings of *_STORED (stored_session/session_from_stored),
api.py and the events as the proto numbers of *_PROTO.

`now` is an ISO 8601 timestamp with its offset; clocks count working days of the date it falls on
in China Standard Time.
"""
import datetime
import enum
from typing import NamedTuple

from services.common import china, ids, paging
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from services.joint_review import clock


class TaskState(enum.StrEnum):
    """Where a department's task stands."""
    PENDING = "pending"          # waiting on its prerequisites
    ASSIGNED = "assigned"        # at the department's desk
    APPROVED = "approved"        # approved, its licence not issued yet
    DONE = "done"
    REJECTED = "rejected"
    CLOSED = "closed"            # the case ended otherwise
    RECTIFYING = "rectifying"    # waiting for the applicant's supplement


class SessionStatus(enum.StrEnum):
    OPEN = "open"
    APPROVED = "approved"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


class Decision(enum.StrEnum):
    """A department's opinion on its task."""
    APPROVE = "approve"
    REJECT = "reject"
    RECTIFY = "rectify"


# The one mapping to the proto enums' numbers (onething.joint_review.v1.TaskState / SessionStatus,
# onething.common.v1.Decision), for api.py and the events; 0 (UNSPECIFIED) is no value.
TASK_STATE_PROTO = {TaskState.PENDING: 1, TaskState.ASSIGNED: 2, TaskState.APPROVED: 3, TaskState.DONE: 4,
                    TaskState.REJECTED: 5, TaskState.CLOSED: 6, TaskState.RECTIFYING: 7}
SESSION_STATUS_PROTO = {SessionStatus.OPEN: 1, SessionStatus.APPROVED: 2, SessionStatus.REJECTED: 3,
                        SessionStatus.WITHDRAWN: 4}
DECISION_PROTO = {Decision.APPROVE: 1, Decision.REJECT: 2, Decision.RECTIFY: 3}

# The one mapping to the strings stored sessions hold (the store's; they never change, so sessions
# saved by earlier versions read as they are, whatever the protos come to call the values).
TASK_STATE_STORED = {TaskState.PENDING: "TASK_STATE_PENDING", TaskState.ASSIGNED: "TASK_STATE_ASSIGNED",
                     TaskState.APPROVED: "TASK_STATE_APPROVED", TaskState.DONE: "TASK_STATE_DONE",
                     TaskState.REJECTED: "TASK_STATE_REJECTED", TaskState.CLOSED: "TASK_STATE_CLOSED",
                     TaskState.RECTIFYING: "TASK_STATE_RECTIFYING"}
SESSION_STATUS_STORED = {SessionStatus.OPEN: "SESSION_STATUS_OPEN", SessionStatus.APPROVED: "SESSION_STATUS_APPROVED",
                         SessionStatus.REJECTED: "SESSION_STATUS_REJECTED",
                         SessionStatus.WITHDRAWN: "SESSION_STATUS_WITHDRAWN"}
DECISION_STORED = {Decision.APPROVE: "DECISION_APPROVE", Decision.REJECT: "DECISION_REJECT",
                   Decision.RECTIFY: "DECISION_RECTIFY"}


def _reverse(mapping):
    return {v: k for k, v in mapping.items()}


_TASK_STATE_OF_PROTO, _SESSION_STATUS_OF_PROTO, _DECISION_OF_PROTO = (
    _reverse(TASK_STATE_PROTO), _reverse(SESSION_STATUS_PROTO), _reverse(DECISION_PROTO))
_TASK_STATE_OF_STORED, _SESSION_STATUS_OF_STORED, _DECISION_OF_STORED = (
    _reverse(TASK_STATE_STORED), _reverse(SESSION_STATUS_STORED), _reverse(DECISION_STORED))


def task_state_from_proto(number):
    """The TaskState of a proto number; None for 0 (unspecified)."""
    return _TASK_STATE_OF_PROTO.get(number)


def decision_from_proto(number):
    """The Decision of a proto number; None for 0 (unspecified), which record_opinion refuses."""
    return _DECISION_OF_PROTO.get(number)


def session_status_from_proto(number):
    return _SESSION_STATUS_OF_PROTO.get(number)


def stored_session(session):
    """A session as the store keeps it: states, statuses and decisions as their stored strings
    (a copy; the session itself is not changed)."""
    body = dict(session, tasks=[dict(t, state=TASK_STATE_STORED[TaskState(t["state"])],
                                     decision=DECISION_STORED[Decision(t["decision"])] if t.get("decision") else "")
                                for t in session["tasks"]])
    body["status"] = SESSION_STATUS_STORED[SessionStatus(session["status"])]
    if session.get("withdrawn_after"):
        body["withdrawn_after"] = SESSION_STATUS_STORED[SessionStatus(session["withdrawn_after"])]
    return body


def task_key(department_code, region_code, stored_state):
    """What a department's task list finds a session by: one of its tasks' department, region and
    state (its stored string)."""
    return f"{department_code}|{region_code}|{stored_state}"


def task_keys(stored_tasks):
    """The task keys of a session's tasks in their stored form (stored_session), each once, sorted."""
    return sorted({task_key(t["department_code"], t["region_code"], t["state"]) for t in stored_tasks})


def listed(task, department_code, region_code, state=None):
    """Whether a (typed) task is in the department's list in a region, of `state` or of all."""
    return (task["department_code"] == department_code and task["region_code"] == region_code
            and (not state or task["state"] == state))


TASKS_PAGE_SIZE, TASKS_PAGE_MOST = 100, 1000


def tasks_page_size(requested):
    """ListTasks' page size: 0 asks for the default (100), at most 1,000."""
    return paging.page_size(requested, TASKS_PAGE_SIZE, TASKS_PAGE_MOST)


def session_from_stored(body):
    """The session of a stored body (see stored_session): typed values in place of the strings.
    A string the mapping does not know is refused (ValueError), never guessed."""
    def one(reverse, value, kind):
        try:
            return reverse[value]
        except KeyError:
            raise ValueError(f"a stored session holds {value!r}, which is no {kind}") from None

    session = dict(body, tasks=[dict(t, state=one(_TASK_STATE_OF_STORED, t["state"], "task state"),
                                     decision=one(_DECISION_OF_STORED, t["decision"], "decision")
                                     if t.get("decision") else None)
                                for t in body.get("tasks") or []])
    session["status"] = one(_SESSION_STATUS_OF_STORED, body["status"], "session status")
    if body.get("withdrawn_after"):
        session["withdrawn_after"] = one(_SESSION_STATUS_OF_STORED, body["withdrawn_after"], "session status")
    return session


class Conflict(Exception):
    """Someone else saved the session first (the store's version check): load it again and retry."""


class StoredSession(NamedTuple):
    """What the store gives back for a case: the session, what joint_review keeps of the case
    (applicant, materials, delivery …) and the version a save must name. All None: no session."""
    session: dict | None
    case: dict | None
    version: int | None


NO_SESSION = StoredSession(None, None, None)


class RecentSession(StoredSession):
    """A session as this process last saved or read it, not read from the store just now: it may be
    stale, so a save from it may meet a Conflict, and nothing is decided from it that a fresh read
    might decide otherwise (no change, a refusal: read again)."""
    __slots__ = ()


class CaseSubmitted(NamedTuple):
    """A case intake submitted, as the review takes it (decoded once from case_submitted, in
    worker.py). `package` is the snapshot of the package version it was submitted under, with the
    keys new_session reads (code, name, lead_department, departments, items, materials,
    waived_materials, limits); `materials` the case's MaterialRefs; `applicant`, `parties` and
    `delivery` as the case names them. All plain values, as the store keeps them."""
    case_no: str
    region_code: str
    package: dict
    materials: tuple[dict, ...]
    applicant: dict
    parties: tuple[dict, ...]
    delivery: dict
    form: dict | None = None  # the case's form (a field may name where an item is decided)

PENDING, ASSIGNED, APPROVED, DONE, REJECTED, CLOSED, RECTIFYING = (
    TaskState.PENDING, TaskState.ASSIGNED, TaskState.APPROVED, TaskState.DONE, TaskState.REJECTED, TaskState.CLOSED,
    TaskState.RECTIFYING)
OPEN_TASK_STATES = (PENDING, ASSIGNED, APPROVED, RECTIFYING)
OPEN, S_APPROVED, S_REJECTED, S_WITHDRAWN = (
    SessionStatus.OPEN, SessionStatus.APPROVED, SessionStatus.REJECTED, SessionStatus.WITHDRAWN)
APPROVE, REJECT, RECTIFY = Decision.APPROVE, Decision.REJECT, Decision.RECTIFY
LICENSE = "RESULT_TYPE_LICENSE"
APPLICANT = "applicant"
OFFICER_PAUSES = ("HEARING", "TESTING")
CASE_CEILING_DAYS = 45  # 行政许可法: unified or joint handling within 45 working days
CST = china.CST  # China Standard Time (services/common/china.py)


def today_of(now):
    return datetime.datetime.fromisoformat(now).astimezone(CST).date()


def task_region(item, case_region, form):
    """Whose desk decides an item: the region the catalog resolved for it (an item a provincial
    department implements: the province), else the city of the region a form field names (跨城通办:
    the 迁出地 of an enterprise migration is decided by that city's department), else the case's
    region. The task's routing key names it, and the links between sites carry it there."""
    if item.get("implementing_region"):
        return item["implementing_region"]
    named = str((form or {}).get(item.get("implementing_region_field") or "", ""))
    if len(named) == 6 and named.isdigit():
        return named if named.endswith("0000") else named[:4] + "00"
    return case_region


def new_session(case_no, region_code, package, now, materials=(), form=None):
    """A session for a submitted case. `materials`: the case's MaterialRefs (dicts); a licence that
    stood in for a material of the party an item's result supersedes is the one it replaces; `form`
    the case's form (a field may name the region whose desk decides an item: task_region)."""
    dept_names = {d.get("code"): d.get("name", "") for d in package.get("departments", [])}
    tasks = []
    for item in package["items"]:
        result = item.get("result") or {}
        tasks.append({
            "item_code": item["code"], "item_name": item["name"], "department_code": item["department_code"],
            "region_code": task_region(item, region_code, form), "prerequisites": list(item.get("prerequisites", [])),
            "material_codes": list(item.get("material_codes", [])),
            "license_inputs": list(item.get("license_inputs", [])),
            "result_type": result.get("type", "RESULT_TYPE_RECORD"),
            "license_type_code": result.get("license_type_code", ""),
            "license_type_name": result.get("license_type_name", ""),
            "promised_limit_days": int(item.get("promised_limit_days") or 0),
            "statutory_limit_days": int(item.get("statutory_limit_days") or 0),
            "inspection": bool(item.get("inspection")),
            "optional": bool(item.get("optional")), "state": PENDING, "decision": None, "reason": "",
            "decided_by": "", "claimed_by": "", "license_id": "", "assigned_at": "", "decided_at": "",
            "clock": None, "rectification": None, "overdue": False, "rounds": 0,
            "holder_party": result.get("holder_party") or APPLICANT,
            "supersedes": _supersedes(result, package, materials),
            "issuer_name": ((item.get("implementing_body") or {}).get("name")
                            or dept_names.get(item["department_code"]) or "")})
    promised = int(package.get("promised_limit_days") or 0)
    statutory = min(int(package.get("statutory_limit_days") or CASE_CEILING_DAYS), CASE_CEILING_DAYS)
    return {"case_no": case_no, "region_code": region_code, "package_code": package["code"],
            "lead_department": package.get("lead_department", ""), "status": OPEN, "tasks": tasks,
            "opened_at": now, "concluded_at": "", "inspection": None,
            "clock": clock.start(today_of(now), promised or statutory), "statutory_limit_days": statutory}


def _supersedes(result, package, materials):
    """What an item's licence replaces: {party, license_type_code, license_ids}, or None. The
    licence ids are those that stood in for a material of that party and type in this case."""
    sup = result.get("supersedes") or {}
    if not sup.get("party") or result.get("type") != LICENSE:
        return None
    type_code = sup.get("license_type_code") or result.get("license_type_code", "")
    of_party = {m["code"] for m in package.get("materials", []) + package.get("waived_materials", [])
                if (m.get("party") or APPLICANT) == sup["party"] and m.get("license_type_code") == type_code}
    ids = [m["license_id"] for m in materials or () if m.get("license_id") and m.get("material_code") in of_party]
    return {"party": sup["party"], "license_type_code": type_code, "license_ids": ids}


def party_of(case, role):
    """The case's party of `role` ({role, name, id_number, code_type}); the applicant for
    "applicant". None when the case names no such party."""
    if (role or APPLICANT) == APPLICANT:
        applicant = case.get("applicant") or {}
        return {"role": APPLICANT, "name": applicant.get("name", ""), "id_number": applicant.get("id_number", ""),
                "code_type": ids.code_type_of(applicant.get("id_number", "")) or ""}
    return next((dict(p) for p in case.get("parties") or [] if p.get("role") == role), None)


def licence_recipient(task, case):
    """What elicense needs to issue an approved licence item: the holder party (with its code
    type), the issuer's name and what the licence supersedes (holder code, type, licence ids).
    Sessions opened before parties existed have no holder_party: their results go to the applicant."""
    holder = party_of(case, task.get("holder_party")) or {"role": task.get("holder_party", "")}
    out = {"holder": holder, "issuer_name": task.get("issuer_name", "")}
    sup = task.get("supersedes")
    superseded = party_of(case, sup["party"]) if sup else None
    if sup and superseded and superseded.get("id_number"):
        out["supersedes"] = {"holder_code": superseded["id_number"], "license_type_code": sup["license_type_code"],
                             "license_ids": list(sup.get("license_ids") or []), "party": sup["party"]}
    return out


def task_of(session, item_code):
    for task in session["tasks"]:
        if task["item_code"] == item_code:
            return task
    raise NotFound(f"case {session['case_no']} has no task for item {item_code}")


def _own_task(session, item_code, department_code):
    task = task_of(session, item_code)
    if department_code != task["department_code"]:
        raise PermissionDenied(f"item {item_code} belongs to department {task['department_code']}, "
                               f"not {department_code}")
    return task


def _state_word(state):
    return TaskState(state).value


def claim(session, item_code, department_code, officer):
    """An officer takes a task so colleagues do not decide it twice. Claiming one's own again is fine."""
    task = _own_task(session, item_code, department_code)
    if task["state"] != ASSIGNED:
        raise FailedPrecondition(f"the task for item {item_code} is {_state_word(task['state'])}, not open to claim")
    if task["claimed_by"] and task["claimed_by"] != officer:
        raise FailedPrecondition(f"the task for item {item_code} is claimed by {task['claimed_by']}")
    if task["claimed_by"] == officer:
        return False
    task["claimed_by"] = officer
    return True


def record_opinion(session, item_code, department_code, decision, reason, by, now, materials=(), defects=()):
    """Apply one department's decision. Returns False when the same decision was already recorded
    (a redelivered message), True when it changed the session."""
    task = _own_task(session, item_code, department_code)
    if not isinstance(decision, Decision):  # a typed value, decoded by the caller; not a bare string
        raise InvalidArgument("the decision must be APPROVE, REJECT or RECTIFY")
    if decision == REJECT and not (reason or "").strip():
        raise InvalidArgument("a rejection needs a reason the applicant can act on")
    if decision == RECTIFY and not list(materials):
        raise InvalidArgument("a rectification names the materials the applicant hands in again "
                              "(with the defects to fix, if any): the case resumes when they arrive")
    if task["state"] != ASSIGNED:
        if task["decision"] == decision and task["state"] != RECTIFYING:
            return False
        if task["state"] == RECTIFYING and decision == RECTIFY:
            return False
        raise FailedPrecondition(f"the task for item {item_code} is {_state_word(task['state'])}, "
                                 "not waiting for an opinion")
    if session["status"] != OPEN:
        raise FailedPrecondition(f"case {session['case_no']} is already concluded")
    if task["claimed_by"] and task["claimed_by"] != by:  # a desk's rule never overrides a person's claim
        raise FailedPrecondition(f"the task for item {item_code} is claimed by {task['claimed_by']}")
    if task["inspection"] and decision == APPROVE and not inspection_passed(session, department_code):
        raise FailedPrecondition(f"item {item_code} is decided after the joint site inspection; "
                                 "its findings are not recorded yet")
    task.update(decision=decision, reason=reason or "", decided_by=by or "", decided_at=now)
    today = today_of(now)
    if decision == RECTIFY:
        task["state"] = RECTIFYING
        task["rounds"] += 1
        task["rectification"] = {"material_codes": list(materials), "defects": list(defects), "reason": reason or "",
                                 "requested_at": now}
        clock.pause(task["clock"], today, "RECTIFICATION")
        return True
    clock.stop(task["clock"], today)
    if decision == REJECT:
        task["state"] = REJECTED
    elif task["result_type"] == LICENSE:
        task["state"] = APPROVED  # done once elicense has issued the licence
    else:
        task["state"] = DONE
    return True


def supplemented(session, material_codes, now, rounds=None):
    """Materials handed in after a rectification: every task whose named materials are now all in
    goes back to its department (only those that asked review again). `rounds` (item → round the
    supplement answers) keeps a redelivered old supplement from answering a newer request.
    Returns those tasks."""
    supplied = set(material_codes)
    resumed = []
    for task in session["tasks"]:
        rect = task.get("rectification")
        if task["state"] != RECTIFYING or not rect:
            continue
        if rounds and rounds.get(task["item_code"], task["rounds"]) != task["rounds"]:
            continue
        if set(rect["material_codes"]) <= supplied:
            task.update(state=ASSIGNED, decision=None, decided_at="", claimed_by="")
            rect["supplied_at"] = now
            clock.resume(task["clock"], today_of(now), "RECTIFICATION")
            resumed.append(task)
    return resumed


def license_issued(session, item_code, license_id, type_code="", document_key=""):
    """elicense issued the item's licence: the task keeps its id, its type and its signed document's
    key (what case_concluded hands delivery, see results). Returns False when the task has that
    licence already (a redelivered event)."""
    task = task_of(session, item_code)
    if task["license_id"] == license_id:
        return False
    task.update(license_id=license_id, license_issued_type_code=type_code or "",
                license_document_key=document_key or "")
    if task["state"] == APPROVED:
        task["state"] = DONE
    return True


def license_revoked(session, license_id):
    """elicense revoked (or superseded) a licence issued for one of the session's items: the task
    keeps that it is no longer valid, so a task assigned from now on does not offer it as a valid
    licence (task_licenses). Returns False when no task has that licence or it is marked already
    (a redelivered event)."""
    for task in session["tasks"]:
        if license_id and task.get("license_id") == license_id:
            if task.get("license_revoked"):
                return False
            task["license_revoked"] = True
            return True
    return False


def withdraw(session, now):
    """The applicant withdrew the case. intake accepts a withdrawal only while it has not seen the
    case concluded, and a withdrawal it accepted always wins; the session decides here, under its
    version check, what that costs:
    - still open: every open task is closed, nothing is decided any more;
    - concluded already (the conclusion got here first): the session is WITHDRAWN all the same and
      keeps the conclusion it makes void in `withdrawn_after`; the licences it issued are revoked
      and nothing is delivered (the handler's `session_withdrawn` tells elicense and delivery).
    Returns False when the session is withdrawn already (a redelivered withdrawal)."""
    if session["status"] == S_WITHDRAWN:
        return False
    if session["status"] == OPEN:
        for t in session["tasks"]:
            if t["state"] in OPEN_TASK_STATES:
                t["state"], t["reason"] = CLOSED, "case withdrawn by the applicant"
        session["concluded_at"] = now
        _stop_clocks(session, now)
    else:
        session["withdrawn_after"] = session["status"]
    session["status"], session["withdrawn_at"] = S_WITHDRAWN, now
    return True


def withdrawn_before_opening(case_no, region_code, now):
    """A withdrawal that overtook the submission: a closed session, so the late case_submitted
    opens nothing."""
    return {"case_no": case_no, "region_code": region_code, "package_code": "", "lead_department": "",
            "status": S_WITHDRAWN, "tasks": [], "opened_at": now, "concluded_at": now, "inspection": None,
            "clock": None, "statutory_limit_days": 0, "withdrawn_at": now}


def suspend(session, item_code, department_code, reason, now):
    """Stop a task's clock for a step the law does not count (hearing, testing, expert review)."""
    task = _own_task(session, item_code, department_code)
    if task["state"] not in (ASSIGNED, APPROVED) or not task["clock"]:
        raise FailedPrecondition(f"the task for item {item_code} is {_state_word(task['state'])}; "
                                 "only a task under review has a running clock")
    if reason not in OFFICER_PAUSES:
        raise InvalidArgument("a clock is suspended for a HEARING or TESTING (rectification and the joint "
                              "inspection stop it by themselves)")
    if not clock.pause(task["clock"], today_of(now), reason):
        raise FailedPrecondition(f"the clock of item {item_code} is already stopped")
    return task


def resume(session, item_code, department_code, now):
    task = _own_task(session, item_code, department_code)
    paused_for = (task["clock"] or {}).get("paused_for")
    if paused_for not in OFFICER_PAUSES or not clock.resume(task["clock"], today_of(now), paused_for):
        raise FailedPrecondition(f"the clock of item {item_code} is not suspended by its department")
    return task


# joint site inspection (联合勘验) ------------------------------------------------------------
def inspection_departments(session):
    return sorted({t["department_code"] for t in session["tasks"]
                   if t["inspection"] and t["state"] in OPEN_TASK_STATES})


def schedule_inspection(session, department_code, at, place, by, now):
    """The lead department fixes one site visit with every department whose item needs it; their
    clocks stop while the inspection (expert work the law does not count) is under way."""
    if session["status"] != OPEN:
        raise FailedPrecondition(f"case {session['case_no']} is already concluded")
    if department_code != session["lead_department"]:
        raise PermissionDenied(f"the lead department {session['lead_department']} schedules the joint inspection")
    if not (at or "").strip() or not (place or "").strip():
        raise InvalidArgument("a site visit needs a time and a place")
    participants = inspection_departments(session)
    if not participants:
        raise FailedPrecondition(f"no item of case {session['case_no']} needs a site inspection")
    current = session.get("inspection")
    if current and current["status"] == "SCHEDULED":
        raise FailedPrecondition(f"the joint inspection is already scheduled for {current['at']} at {current['place']}")
    paused = [t["item_code"] for t in session["tasks"]
              if t["inspection"] and t["clock"] and clock.pause(t["clock"], today_of(now), "EXPERT_INSPECTION")]
    session["inspection"] = {"status": "SCHEDULED", "at": at, "place": place, "scheduled_by": by,
                             "participants": participants, "findings": {}, "report_key": "", "scheduled_at": now,
                             "paused_items": paused}
    return participants


def record_findings(session, department_code, passed, notes, by, now):
    """One department's findings on site. Returns True when this completes the inspection."""
    insp = session.get("inspection")
    if not insp or insp["status"] != "SCHEDULED":
        raise FailedPrecondition("there is no joint inspection under way for this case")
    if department_code not in insp["participants"]:
        raise PermissionDenied(f"department {department_code} does not take part in this inspection")
    if not (notes or "").strip():
        raise InvalidArgument("findings need notes of what was seen on site")
    insp["findings"][department_code] = {"passed": bool(passed), "notes": notes, "by": by, "at": now}
    if set(insp["findings"]) != set(insp["participants"]):
        return False
    insp["status"], insp["completed_at"] = "DONE", now
    for item in insp.get("paused_items", []):
        clock.resume(task_of(session, item)["clock"], today_of(now), "EXPERT_INSPECTION")
    return True


def inspection_passed(session, department_code):
    insp = session.get("inspection") or {}
    finding = insp.get("findings", {}).get(department_code)
    return insp.get("status") == "DONE" and bool(finding and finding["passed"])


# advancing --------------------------------------------------------------------------------------
def advance(session, now):
    """Assign every task whose prerequisites are done, conclude when nothing is left.
    Returns the effects: ("assign", task), ("rectify", task) and ("conclude", approved, reason)."""
    if session["status"] != OPEN:
        return []
    by_code = {t["item_code"]: t for t in session["tasks"]}
    effects: list[tuple] = [("rectify", t) for t in session["tasks"]
               if t["state"] == RECTIFYING and t["rectification"] and not t["rectification"].get("announced")]
    for _, t in effects:
        t["rectification"]["announced"] = True
    rejected = [t for t in session["tasks"] if t["state"] == REJECTED and not t["optional"]]
    if rejected:
        for t in session["tasks"]:
            if t["state"] in OPEN_TASK_STATES:
                t["state"] = CLOSED
        session["status"], session["concluded_at"] = S_REJECTED, now
        _stop_clocks(session, now)
        reason = "; ".join(f"{t['item_name']}: {t['reason']}" for t in rejected)
        return [e for e in effects if e[0] != "rectify"] + [("conclude", False, reason)]
    changed = True
    while changed:  # an item that needs a rejected optional item cannot be done either
        changed = False
        for t in session["tasks"]:
            if t["state"] == PENDING and any(by_code[p]["state"] in (REJECTED, CLOSED) for p in t["prerequisites"]):
                t["state"], t["reason"], changed = CLOSED, "a prerequisite item was refused", True
    for t in session["tasks"]:
        if t["state"] == PENDING and all(by_code[p]["state"] == DONE for p in t["prerequisites"]):
            t["state"], t["assigned_at"] = ASSIGNED, now
            t["clock"] = clock.start(today_of(now), t["promised_limit_days"] or t["statutory_limit_days"])
            effects.append(("assign", t))
    if all(t["state"] in (DONE, REJECTED, CLOSED) for t in session["tasks"]):
        session["status"], session["concluded_at"] = S_APPROVED, now
        _stop_clocks(session, now)
        effects.append(("conclude", True, "all departments approved"))
    return effects


def _stop_clocks(session, now):
    for c in [t["clock"] for t in session["tasks"]] + [session.get("clock")]:
        if c:
            clock.stop(c, today_of(now))


def check_clocks(session, today):
    """Tasks that have just gone past their promised limit (督办): flagged once, returned."""
    late = []
    for t in session["tasks"]:
        if t["state"] in (ASSIGNED, APPROVED) and t["clock"] and not t["overdue"] and clock.overdue(t["clock"], today):
            t["overdue"] = True
            late.append(t)
    return late


def next_clock_check(session):
    """The first day (ISO date) on which a task of the session may have gone past its promised
    limit: the store keeps it, indexed, and the overdue check reads only sessions whose day has come.
    Empty when no clock that could go overdue runs."""
    days = [clock.first_check_day(t["clock"]) for t in session["tasks"]
            if t["state"] in (ASSIGNED, APPROVED) and t["clock"] and not t["overdue"]]
    days = [d for d in days if d is not None]
    return min(days).isoformat() if days else ""


def clock_view(c, today, statutory_days=0):
    """What a person reads about a clock: elapsed, remaining, due date, paused."""
    if not c:
        return {}
    return {"elapsed_days": clock.elapsed(c, today), "limit_days": c["limit_days"],
            "remaining_days": clock.remaining(c, today), "due_date": clock.due_date(c, today).isoformat(),
            "paused": bool(c["paused_since"]), "statutory_limit_days": statutory_days,
            "statutory_overdue": bool(statutory_days) and clock.elapsed(c, today) > statutory_days}


def licenses_for(session, task):
    """Licences of earlier items that this task takes in place of materials."""
    wanted = set(task["license_inputs"])
    return [t["license_id"] for t in session["tasks"]
            if t["license_id"] and t["license_type_code"] in wanted]


def task_licenses(session, task):
    """The licences a task takes in place of materials (licenses_for), each with its type and whether
    it is still valid as far as the session knows: {license_id, type_code, valid}. What a desk's rule
    checks the task's license_inputs against."""
    wanted = set(task["license_inputs"])
    return [{"license_id": t["license_id"],
             "type_code": t.get("license_issued_type_code") or t["license_type_code"],
             "valid": not t.get("license_revoked")}
            for t in session["tasks"] if t["license_id"] and t["license_type_code"] in wanted]


def answers_round(session, item_code, round_):
    """An opinion given on the task as it was assigned in round `round_`: refused when the task has
    been through a rectification since (a late or replayed opinion on an earlier round)."""
    task = task_of(session, item_code)
    if round_ != task["rounds"]:
        raise FailedPrecondition(f"the opinion answers round {round_} of item {item_code}, "
                                 f"but the task is in round {task['rounds']}")


def all_licenses(session):
    return [t["license_id"] for t in session["tasks"] if t["license_id"]]


def results(session):
    """The case's licences as case_concluded hands them over, one per licence id in the order of
    all_licenses: {license_id, item_code, type_code, document_key}. A session stored before the
    keys were kept has the ids only: its results carry the item, the type the item's result names
    and an empty document_key (delivery then looks the licence up at elicense)."""
    return [{"license_id": t["license_id"], "item_code": t["item_code"],
             "type_code": t.get("license_issued_type_code") or t.get("license_type_code") or "",
             "document_key": t.get("license_document_key") or ""}
            for t in session["tasks"] if t["license_id"]]


def needed_license_ids(session, task, materials=()):
    """The licences a task needs (its department's officers may read them): those that stood in for
    its materials (减材料: `materials` are the case's MaterialRefs), the results of its prerequisites,
    and the licences of earlier items it takes in place of materials."""
    codes = set(task.get("material_codes") or ())
    prerequisites = set(task.get("prerequisites") or ())
    needed = [m["license_id"] for m in materials or () if m.get("license_id") and m.get("material_code") in codes]
    needed += [t["license_id"] for t in session["tasks"] if t.get("license_id") and t["item_code"] in prerequisites]
    needed += licenses_for(session, task) if "license_inputs" in task else []
    return list(dict.fromkeys(needed))


def materials_present(task_codes, case_codes):
    """The demo desk rule: approve when every material the item needs is in the case."""
    missing = [c for c in task_codes if c not in case_codes]
    return (not missing), missing
