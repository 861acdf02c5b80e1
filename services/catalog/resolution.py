"""How a package definition applies: resolved for a region and the applicant's situation answers
(base package, then each level's overlay from the broadest to the region itself), with the one
merged form, the one set of materials and the check of a form's values. Pure Python.

A *resolution* is a plain dict shaped like the onething.catalog.v1.Package message."""
import copy

from services.catalog.definitions import (
    APPLICANT,
    DEFAULT_STEPS_SEPARATELY,
    DEFAULT_TRIPS_SEPARATELY,
    IMPLEMENTING_CODE_RE,
    NATIONAL,
    bare_definition,
    check_graph,
    check_item,
    level_digit,
    party_roles,
    region_chain,
    topological_order,
)
from services.common import forms
from services.common.errors import InvalidArgument, NotFound


def _longest_path(items, key):
    by_code = {i["code"]: i for i in items}
    best: dict[str, int] = {}
    for code in topological_order(items):
        item = by_code[code]
        before = max((best[p] for p in item.get("prerequisites", []) if p in best), default=0)
        best[code] = before + int(item.get(key, 0))
    return max(best.values(), default=0)


def _result_view(result):
    """An item's result with its holder and what it supersedes spelled out."""
    out = dict(result or {})
    out["holder_party"] = out.get("holder_party") or APPLICANT
    if out.get("supersedes"):
        out["supersedes"] = {"party": out["supersedes"]["party"],
                             "license_type_code": out["supersedes"].get("license_type_code")
                             or out.get("license_type_code", "")}
    return out


def _situation_view(s, level):
    return {"key": s["key"], "question": s["question"], "default_answer": str(s["default"]),
            "answers": [{"value": str(v), "label": str(label)} for v, label in s["answers"].items()]
            if isinstance(s["answers"], dict) else [{"value": str(v), "label": str(v)} for v in s["answers"]],
            "source_level": level}


def choose_answers(situations, answers):
    """The answer to each situation question: the given one or its default. An unknown key or
    answer is refused, naming what the package does ask."""
    by_key = {s["key"]: s for s in situations}
    for key, value in (answers or {}).items():
        if key not in by_key:
            asked = "; ".join(f"{k} ({'|'.join(a['value'] for a in s['answers'])})" for k, s in by_key.items())
            raise InvalidArgument(f"situation {key!r} is not asked by this package; it asks: {asked or 'nothing'}")
        allowed = [a["value"] for a in by_key[key]["answers"]]
        if str(value) not in allowed:
            raise InvalidArgument(f"{value!r} is not an answer to situation {key!r} "
                                  f"({by_key[key]['question']}); answer one of {', '.join(allowed)}")
    return {s["key"]: str((answers or {}).get(s["key"], s["default_answer"])) for s in situations}


def resolve(defn, region_code, answers=None, held_license_types=(), version=None, strict=False):
    """The package as it applies in `region_code` for the given situation answers: base package,
    then each level's overlay from the broadest to the region itself; every part says which level
    it came from. Items not selected (situation) or switched off are listed in skipped_items.

    Also accepts a bare package dict as read from packages/*.yaml, called the older way,
    resolve(package, region_code, departments): the national base alone, default situations."""
    if "home" not in defn:
        defn, answers = bare_definition(defn, answers or {}), None
        version = version or defn["base"].get("version") or 1
    chain = region_chain(region_code)
    home = defn["home"]
    if home != NATIONAL and home not in chain:
        raise not_found(defn["code"], region_code)
    below = chain[chain.index(home):]
    base = defn["base"]

    items = [dict(copy.deepcopy(i), source_level=home, promised_limit_source=home) for i in base["items"]]
    materials = {m["code"]: dict(copy.deepcopy(m), source_level=home) for m in base.get("materials", [])}
    situations = [_situation_view(s, home) for s in base.get("situations", [])]
    bodies, disabled, implementing, levels = {}, {}, None, [home]
    for level in below:
        applied = False
        for dept, body in defn["bodies"].get(level, {}).items():
            bodies[dept] = dict(body, source_level=level)
            applied = True
        ov = defn["overlays"].get(level) if level != home else None
        if ov:
            applied = True
            for dept, body in (ov.get("implementing_bodies") or {}).items():
                bodies[dept] = dict(body, source_level=level)
            for m in ov.get("add_materials", []) or []:
                materials[m["code"]] = dict(copy.deepcopy(m), source_level=level)
            situations += [_situation_view(s, level) for s in ov.get("add_situations", []) or []]
            for i in ov.get("add_items", []) or []:
                if any(x["code"] == i["code"] for x in items):
                    raise InvalidArgument(f"overlays/{level}: item {i['code']} is already in package {defn['code']}")
                items.append(dict(copy.deepcopy(i), source_level=level, promised_limit_source=level))
            for code, days in (ov.get("promised_limit_days") or {}).items():
                item = next((x for x in items if x["code"] == str(code)), None)
                if item is None:
                    raise InvalidArgument(f"overlays/{level}: promised limit for item {code}, which package "
                                          f"{defn['code']} does not have")
                if not isinstance(days, int) or days < 0 or days > item["promised_limit_days"]:
                    raise InvalidArgument(f"overlays/{level}: item {code}: a lower level may only shorten the promised "
                                          f"limit ({item['promised_limit_days']} working days from "
                                          f"{item['promised_limit_source']}), not set {days}")
                item["promised_limit_days"] = days
                item["promised_limit_source"] = level
            for code in ov.get("disable_items", []) or []:
                item = next((x for x in items if x["code"] == str(code)), None)
                if item is None or not item.get("optional"):
                    raise InvalidArgument(f"overlays/{level}: item {code} of {defn['code']} cannot be switched off: "
                                          "only optional items can")
                disabled[str(code)] = level
            if ov.get("implementing_code"):
                implementing = str(ov["implementing_code"])
        if applied and level not in levels:
            levels.append(level)

    if strict:
        where = f"{defn['code']} in {region_code}"
        roles = party_roles(base)
        for i in items:
            check_item(i, where, defn["departments"], materials, defn["fields"], roles)
        raw_situations = list(base.get("situations", []))
        for level in below:
            raw_situations += (defn["overlays"].get(level) or {}).get("add_situations", []) or []
        check_graph(items, raw_situations, where)

    chosen = choose_answers(situations, answers)
    for s in situations:
        s["answer"] = chosen[s["key"]]
    selected, skipped = [], []
    for item in items:
        mismatch = {k: str(v) for k, v in (item.get("when") or {}).items() if chosen.get(k) != str(v)}
        if item["code"] in disabled:
            skipped.append({"code": item["code"], "name": item["name"], "reason": "switched_off",
                            "source_level": disabled[item["code"]], "detail": f"{disabled[item['code']]} 不提供此项"})
        elif mismatch:
            skipped.append({"code": item["code"], "name": item["name"], "reason": "situation",
                            "source_level": item["source_level"],
                            "detail": ", ".join(f"{k}={v}" for k, v in mismatch.items())})
        else:
            selected.append(item)
    chosen_codes = {i["code"] for i in selected}
    held = set(held_license_types or ())

    out_items: list[dict] = []
    used_materials: dict[str, list[str]] = {}
    waived: dict[str, list[str]] = {}
    for item in selected:
        body = bodies.get(item["department_code"])
        needs = []
        for m in item.get("material_codes", []):
            target = waived if materials[m].get("license_type_code") in held else used_materials
            target.setdefault(m, []).append(item["code"])
            if target is used_materials:
                needs.append(m)
        out = {k: v for k, v in item.items() if k not in ("form_fields", "separately", "material_codes",
                                                        "implementing_level")}
        if item.get("implementing_level") == "province":
            out["implementing_region"] = region_code[:2] + "0000"
        out.update({
            "result": _result_view(item.get("result")),
            "prerequisites": [p for p in item.get("prerequisites", []) if p in chosen_codes],
            "material_codes": needs,
            "form_field_keys": list(item.get("form_fields", [])),
            "when": {k: str(v) for k, v in (item.get("when") or {}).items()},
            "implementing_body": ({"name": body["name"], "credit_code": body["credit_code"],
                                   "source_level": body["source_level"]} if body else {}),
            "implementing_code": (f"{body['credit_code']}{level_digit(body['source_level'])}{item['code']}"
                                  if body else ""),
            "separately": {"days": int((item.get("separately") or {}).get("days", item["promised_limit_days"])),
                           "steps": int((item.get("separately") or {}).get("steps", DEFAULT_STEPS_SEPARATELY)),
                           "trips": int((item.get("separately") or {}).get("trips", DEFAULT_TRIPS_SEPARATELY)),
                           "materials": int((item.get("separately") or {}).get(
                               "materials", len(item.get("material_codes", []))))},
        })
        out_items.append(out)

    def material_view(code, item_codes):
        return dict(materials[code], item_codes=item_codes, party=materials[code].get("party") or APPLICANT)

    depts = []
    for code in [base["lead_department"]] + [i["department_code"] for i in selected]:
        if code not in depts:
            depts.append(code)
    implementing = implementing or f"{region_code}{defn['code']}"
    if not IMPLEMENTING_CODE_RE.fullmatch(implementing):
        raise InvalidArgument(f"implementing code {implementing!r} of {defn['code']} in {region_code} is not 0-9A-Z")
    return {
        "code": defn["code"], "name": base["name"], "audience": base.get("audience", "AUDIENCE_PERSON"),
        "lead_department": base["lead_department"], "region_code": region_code,
        "region_name": _region_name(defn["regions"], chain), "version": int(version or 0),
        "departments": [{"code": c, "name": defn["departments"][c]} for c in depts],
        "items": out_items,
        "materials": [material_view(c, codes) for c, codes in used_materials.items()],
        "waived_materials": [material_view(c, codes) for c, codes in waived.items()],
        "promised_limit_days": _longest_path(selected, "promised_limit_days"),
        "statutory_limit_days": _longest_path(selected, "statutory_limit_days"),
        "implementing_code": implementing,
        "form_fields": merged_form(base.get("form_fields", []), selected, defn["fields"]),
        "source_level": home, "levels": levels, "situations": situations, "skipped_items": skipped,
        "conditions": list(base.get("conditions", [])), "delivery_channels": list(base.get("delivery_channels", [])),
        "policy": base.get("policy", ""), "trips": int(base.get("trips", 1)),
        "parties": list(party_roles(base).values()),
    }


def _region_name(regions, chain):
    for level in reversed(chain):
        if level in regions:
            return regions[level]
    return ""


def merged_form(package_fields, items, fields):
    """The one form: every field the package or a selected item asks for, each once, with the items
    that ask for it."""
    order: list[str] = []
    askers: dict[str, list[str]] = {}
    for key in package_fields:
        if key not in askers:
            order.append(key)
            askers[key] = []
    for item in items:
        for key in item.get("form_fields", []):
            if key not in askers:
                order.append(key)
                askers[key] = []
            askers[key].append(item["code"])
    out = []
    for key in order:
        f = fields[key]
        out.append({"key": key, "label": f.get("label", key), "type": f.get("type", "string"),
                    "required": bool(f.get("required", False)), "validator": f.get("validator", ""),
                    "choices": list(f.get("choices", [])), "item_codes": askers[key]})
    return out


def required_materials(pkg):
    """Material codes the applicant must hand in: those any item of the package needs."""
    needed = []
    for item in pkg["items"]:
        for m in item.get("material_codes", []):
            if m not in needed:
                needed.append(m)
    return needed


def check_form(form_fields, values):
    """CheckForm: every problem of the values given for a merged form (services.common.forms, the
    rules intake's SubmitCase applies too). `ok` is false when a problem would refuse the submission;
    a key the form does not have is listed as a notice and leaves `ok` true."""
    problems = forms.check(form_fields, values or {})
    return {"ok": not forms.refusals(problems),
            "problems": [{"key": p.key, "problem": p.text if p.reason == forms.UNKNOWN_FIELD else f"{p.label}: {p.text}"}
                         for p in problems]}


def not_found(code, region_code):
    return NotFound(f"there is no package {code!r} in region {region_code}; ListPackages shows what is offered")
