"""Joint review (联办): a case's items as a graph of tasks, one per department, advanced as
opinions and licences arrive. Pure functions over a session dict:

    {"case_no", "region_code", "package": {...}, "status", "tasks": [task, ...]}
    task = {"item_code", "item_name", "department_code", "prerequisites", "state", "decision",
            "reason", "decided_by", "license_id", "result_type", "license_inputs", ...}
"""
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied

PENDING, ASSIGNED, APPROVED, DONE, REJECTED, CLOSED = (
    "TASK_STATE_PENDING", "TASK_STATE_ASSIGNED", "TASK_STATE_APPROVED", "TASK_STATE_DONE",
    "TASK_STATE_REJECTED", "TASK_STATE_CLOSED")
OPEN, S_APPROVED, S_REJECTED = "SESSION_STATUS_OPEN", "SESSION_STATUS_APPROVED", "SESSION_STATUS_REJECTED"
APPROVE, REJECT, RECTIFY = "DECISION_APPROVE", "DECISION_REJECT", "DECISION_RECTIFY"
LICENSE = "RESULT_TYPE_LICENSE"


def new_session(case_no, region_code, package, now):
    tasks = []
    for item in package["items"]:
        result = item.get("result") or {}
        tasks.append({
            "item_code": item["code"], "item_name": item["name"], "department_code": item["department_code"],
            "region_code": region_code, "prerequisites": list(item.get("prerequisites", [])),
            "material_codes": list(item.get("material_codes", [])),
            "license_inputs": list(item.get("license_inputs", [])),
            "result_type": result.get("type", "RESULT_TYPE_RECORD"),
            "license_type_code": result.get("license_type_code", ""),
            "license_type_name": result.get("license_type_name", ""),
            "optional": bool(item.get("optional")), "state": PENDING, "decision": "", "reason": "",
            "decided_by": "", "license_id": "", "assigned_at": "", "decided_at": ""})
    return {"case_no": case_no, "region_code": region_code, "package_code": package["code"],
            "status": OPEN, "tasks": tasks, "opened_at": now, "concluded_at": ""}


def task_of(session, item_code):
    for task in session["tasks"]:
        if task["item_code"] == item_code:
            return task
    raise NotFound(f"case {session['case_no']} has no task for item {item_code}")


def record_opinion(session, item_code, department_code, decision, reason, by, now):
    """Apply one department's decision. Returns False when the same decision was already recorded
    (a redelivered message), True when it changed the session."""
    task = task_of(session, item_code)
    if department_code != task["department_code"]:
        raise PermissionDenied(f"item {item_code} belongs to department {task['department_code']}, "
                               f"not {department_code}")
    if decision not in (APPROVE, REJECT, RECTIFY):
        raise InvalidArgument("the decision must be APPROVE, REJECT or RECTIFY")
    if decision == RECTIFY:
        raise InvalidArgument("rectification (RECTIFY) is not offered yet; APPROVE or REJECT with a reason")
    if decision == REJECT and not (reason or "").strip():
        raise InvalidArgument("a rejection needs a reason the applicant can act on")
    if task["state"] != ASSIGNED:
        if task["decision"] == decision:
            return False
        raise FailedPrecondition(f"the task for item {item_code} is {task['state'].split('_')[-1].lower()}, "
                                 "not waiting for an opinion")
    if session["status"] != OPEN:
        raise FailedPrecondition(f"case {session['case_no']} is already concluded")
    task.update(decision=decision, reason=reason or "", decided_by=by or "", decided_at=now)
    if decision == REJECT:
        task["state"] = REJECTED
    elif task["result_type"] == LICENSE:
        task["state"] = APPROVED  # done once elicense has issued the licence
    else:
        task["state"] = DONE
    return True


def license_issued(session, item_code, license_id):
    task = task_of(session, item_code)
    if task["license_id"] == license_id:
        return False
    task["license_id"] = license_id
    if task["state"] == APPROVED:
        task["state"] = DONE
    return True


def advance(session, now):
    """Assign every task whose prerequisites are done, conclude when nothing is left.
    Returns the effects: ("assign", task) and ("conclude", approved, reason)."""
    if session["status"] != OPEN:
        return []
    by_code = {t["item_code"]: t for t in session["tasks"]}
    rejected = [t for t in session["tasks"] if t["state"] == REJECTED and not t["optional"]]
    if rejected:
        for t in session["tasks"]:
            if t["state"] in (PENDING, ASSIGNED, APPROVED):
                t["state"] = CLOSED
        session["status"], session["concluded_at"] = S_REJECTED, now
        reason = "; ".join(f"{t['item_name']}: {t['reason']}" for t in rejected)
        return [("conclude", False, reason)]
    effects = []
    changed = True
    while changed:  # an item that needs a rejected optional item cannot be done either
        changed = False
        for t in session["tasks"]:
            if t["state"] == PENDING and any(by_code[p]["state"] in (REJECTED, CLOSED) for p in t["prerequisites"]):
                t["state"], t["reason"], changed = CLOSED, "a prerequisite item was refused", True
    for t in session["tasks"]:
        if t["state"] == PENDING and all(by_code[p]["state"] == DONE for p in t["prerequisites"]):
            t["state"], t["assigned_at"] = ASSIGNED, now
            effects.append(("assign", t))
    if all(t["state"] in (DONE, REJECTED, CLOSED) for t in session["tasks"]):
        session["status"], session["concluded_at"] = S_APPROVED, now
        effects.append(("conclude", True, "all departments approved"))
    return effects


def licenses_for(session, task):
    """Licences of earlier items that this task takes in place of materials."""
    wanted = set(task["license_inputs"])
    return [t["license_id"] for t in session["tasks"]
            if t["license_id"] and t["license_type_code"] in wanted]


def all_licenses(session):
    return [t["license_id"] for t in session["tasks"] if t["license_id"]]


def materials_present(task_codes, case_codes):
    """The demo desk rule: approve when every material the item needs is in the case."""
    missing = [c for c in task_codes if c not in case_codes]
    return (not missing), missing
