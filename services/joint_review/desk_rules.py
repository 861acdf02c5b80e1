"""How a department's desk decides a task on its own. The rule is configuration
(ONETHING_DESK_RULE): `materials_present` (the demo rule) or `manual` (a person decides through
RecordOpinion)."""
from services.joint_review import domain

RULES = ("materials_present", "manual")


def decide(rule, task, fetch_license):
    """(decision, reason) for a TaskAssigned dict, or None to leave it to a person.
    `fetch_license(id)` returns the licence as elicense keeps it, or None."""
    if rule == "manual" or task.get("inspection"):
        return None  # a person decides; items with a site inspection are decided after it
    ok, missing = domain.materials_present(task.get("material_codes", []),
                                           {m["material_code"] for m in task.get("materials", [])})
    if not ok:
        return domain.REJECT, f"materials missing: {', '.join(missing)}"
    held = {}
    for license_id in task.get("license_ids", []):
        lic = fetch_license(license_id)
        if lic and lic.get("status") == "LICENSE_STATUS_VALID":
            held[lic.get("type_code")] = license_id
    lacking = [t for t in task.get("license_inputs", []) if t not in held]
    if lacking:
        return domain.REJECT, f"no valid licence of type {', '.join(lacking)} from elicense"
    return domain.APPROVE, "materials present" + (f"; licences {', '.join(held.values())} checked" if held else "")
