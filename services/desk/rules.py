"""What a department's desk decides on its own, and what it leaves to an officer. Pure Python: the
task is a TaskAssigned as its JSON dict (protos/asyncapi/desk.yaml), the rules are data.

Which rule applies to an item is data per department and region (services/desk/data/rules.yaml:
department -> region -> {item code or "*": rule}); what the data does not name is `manual`: an
officer decides, through joint_review's RecordOpinion. One rule may stand in for all of them
(ONETHING_DESK_RULE, the local suite's and the tests' override).

Rules:
- `manual`: nothing is decided here;
- `materials_present`: approve when every material the item needs is in the case and every licence
  type it takes (license_inputs) is held by a valid licence the task names; otherwise reject,
  saying what is missing. An item decided after the joint site inspection is left to officers.
"""
import dataclasses
import enum

MANUAL, MATERIALS_PRESENT = "manual", "materials_present"
RULES = (MATERIALS_PRESENT, MANUAL)
ANY_ITEM = "*"


class Decision(enum.StrEnum):
    """A desk's decision, spelled as the protocol spells it (onething.common.v1.Decision)."""
    APPROVE = "DECISION_APPROVE"
    REJECT = "DECISION_REJECT"


@dataclasses.dataclass(frozen=True)
class Opinion:
    decision: Decision
    reason: str


class RulesError(ValueError):
    """The rules data (or the override) names something that is no rule."""


@dataclasses.dataclass(frozen=True)
class RuleBook:
    """The rules of every department and region: {department: {region: {item code or "*": rule}}},
    and `override`, a rule for everything ("" for none)."""
    table: dict
    override: str = ""

    def rule_for(self, department, region, item_code):
        if self.override:
            return self.override
        items = (self.table.get(department) or {}).get(region) or {}
        return items.get(item_code) or items.get(ANY_ITEM) or MANUAL


def rule_book(data, override="", where="the desk rules"):
    """A RuleBook of the parsed rules data (a mapping as above, or None for none), checked: a rule
    that is not one of RULES, or a level that is not a mapping, is refused (RulesError naming it)."""
    if override and override not in RULES:
        raise RulesError(f"ONETHING_DESK_RULE must be one of {', '.join(RULES)}, not {override!r}")
    data = data or {}
    if not isinstance(data, dict):
        raise RulesError(f"{where}: expected department -> region -> {{item code or '*': rule}}")
    table: dict[str, dict[str, dict[str, str]]] = {}
    for department, regions in data.items():
        if not isinstance(regions, dict):
            raise RulesError(f"{where}: {department}: expected region -> {{item code or '*': rule}}")
        table[str(department)] = {}
        for region, items in regions.items():
            region = str(region)
            if not (len(region) == 6 and region.isdigit()):
                raise RulesError(f"{where}: {department}: {region!r} is not a six-digit region code")
            if not isinstance(items, dict):
                raise RulesError(f"{where}: {department}.{region}: expected {{item code or '*': rule}}")
            for item, rule in items.items():
                if rule not in RULES:
                    raise RulesError(f"{where}: {department}.{region}.{item}: {rule!r} is not one of "
                                     f"{', '.join(RULES)}")
            table[str(department)][region] = {str(k): v for k, v in items.items()}
    return RuleBook(table, override)


def decide(rule, task):
    """The Opinion `rule` gives on `task` (a TaskAssigned dict), or None to leave it to an officer."""
    if rule == MANUAL or task.get("inspection"):
        return None  # an officer decides; items with a site inspection are decided after it
    if rule != MATERIALS_PRESENT:
        raise RulesError(f"{rule!r} is not one of {', '.join(RULES)}")
    held = {m.get("material_code") for m in task.get("materials") or ()}
    missing = [code for code in task.get("material_codes") or () if code not in held]
    if missing:
        return Opinion(Decision.REJECT, f"materials missing: {', '.join(missing)}")
    valid: dict[str, str] = {}
    for licence in task.get("licenses") or ():
        if licence.get("valid") and licence.get("type_code"):
            valid.setdefault(licence["type_code"], licence.get("license_id", ""))
    lacking = [t for t in task.get("license_inputs") or () if t not in valid]
    if lacking:
        return Opinion(Decision.REJECT, f"no valid licence of type {', '.join(lacking)}")
    used = [valid[t] for t in dict.fromkeys(task.get("license_inputs") or ())]
    return Opinion(Decision.APPROVE, "materials present" + (f"; licences {', '.join(used)} checked" if used else ""))


def opinion_id(task):
    """The message id of the opinion on `task`: the same for the same task and round, so an opinion
    sent again after a redelivered task is known as the same one."""
    return f"opinion:{task.get('case_no', '')}:{task.get('item_code', '')}:{int(task.get('round') or 0)}"
