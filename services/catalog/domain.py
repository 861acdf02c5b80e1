"""Packages (一件事) and their items (单项事): validation, levels, situations, the one form, the one
set of materials, the one-time notice and the savings figures. Pure Python.

A *definition* is everything one package code needs, kept together so that one version of it is a
frozen snapshot: the base package (national, or local to one region), the overlays of the regions
below it, their implementing bodies, and the department names and form fields it uses.
A *resolution* is a plain dict shaped like the onething.catalog.v1.Package message."""
import copy
import datetime
import hashlib
import json
import re

from services.common import ids
from services.common.errors import InvalidArgument, NotFound

NATIONAL = "national"
REGION_RE = re.compile(r"[0-9]{6}")
BASIC_CODE_RE = re.compile(r"[0-9A-Z]{12}")
IMPLEMENTING_CODE_RE = re.compile(r"[0-9A-Z]{1,30}")
PACKAGE_CODE_RE = re.compile(r"[0-9A-Z]{2,16}")
MATERIAL_FORMS = ("paper", "scan", "e-licence")
RESULT_TYPES = ("RESULT_TYPE_LICENSE", "RESULT_TYPE_RECORD", "RESULT_TYPE_PAYMENT")
AUDIENCES = ("AUDIENCE_PERSON", "AUDIENCE_ENTERPRISE")
CHANNELS = ("DELIVERY_CHANNEL_ELECTRONIC", "DELIVERY_CHANNEL_WINDOW", "DELIVERY_CHANNEL_MAIL")
FIELD_TYPES = ("string", "date", "number", "bool", "choice")
VALIDATORS = ("citizen_id", "credit_code", "phone", "region", "bank_account")
# parties (当事人) a package's cases name besides the applicant; `agent` (代理人, acting under a power
# of attorney) is allowed in every package without being declared
APPLICANT = "applicant"
AGENT = {"role": "agent", "name": "代理人", "id_kind": "citizen_id", "required": False}
ROLE_RE = re.compile(r"[a-z][a-z_]{1,31}")
ID_KINDS = ("citizen_id", "credit_code", "any")
OVERLAY_KEYS = ("implementing_code", "implementing_bodies", "promised_limit_days", "disable_items",
                "add_items", "add_materials", "add_situations")
# what one item costs the applicant when done on its own (overridable per item with `separately`)
DEFAULT_STEPS_SEPARATELY = 4   # 申请、受理、审查、决定/出件
DEFAULT_TRIPS_SEPARATELY = 2   # 递交材料、领取结果
CHANNEL_NAMES = {"DELIVERY_CHANNEL_ELECTRONIC": "电子送达（网上下载）", "DELIVERY_CHANNEL_WINDOW": "窗口领取",
                 "DELIVERY_CHANNEL_MAIL": "邮寄送达"}
RESULT_NAMES = {"RESULT_TYPE_LICENSE": "证照", "RESULT_TYPE_RECORD": "登记/备案", "RESULT_TYPE_PAYMENT": "待遇/款项发放"}


# --- regions and levels ------------------------------------------------------------------------

def check_region(region_code):
    if not isinstance(region_code, str) or not REGION_RE.fullmatch(region_code) or not region_code.isascii():
        raise InvalidArgument(f"region code {region_code!r} is not a 6-digit GB/T 2260 code (e.g. 440100)")


def region_chain(region_code):
    """The levels a region belongs to, broadest first: national, province, city, county."""
    check_region(region_code)
    chain = [NATIONAL]
    for level in (region_code[:2] + "0000", region_code[:4] + "00", region_code):
        if level not in chain and level != "000000":
            chain.append(level)
    return chain


def level_digit(level):
    """The level digit of an implementing code: 1 national, 2 province, 3 city, 4 county."""
    if level == NATIONAL:
        return "1"
    if level.endswith("0000"):
        return "2"
    if level.endswith("00"):
        return "3"
    return "4"


# --- order and limits --------------------------------------------------------------------------

def topological_order(items):
    """Item codes in an order where every prerequisite comes first; a cycle is an error."""
    by_code = {i["code"]: i for i in items}
    order, state = [], {}

    def visit(code, path):
        if state.get(code) == "done":
            return
        if state.get(code) == "visiting":
            raise InvalidArgument(f"items {' -> '.join(path + [code])} form a cycle")
        state[code] = "visiting"
        for pre in by_code[code].get("prerequisites", []):
            if pre in by_code:
                visit(pre, path + [code])
        state[code] = "done"
        order.append(code)

    for item in items:
        visit(item["code"], [])
    return order


def _longest_path(items, key):
    by_code = {i["code"]: i for i in items}
    best = {}
    for code in topological_order(items):
        item = by_code[code]
        before = max((best[p] for p in item.get("prerequisites", []) if p in best), default=0)
        best[code] = before + int(item.get(key, 0))
    return max(best.values(), default=0)


def stages(items):
    """Items grouped by depth in the prerequisite graph: each group runs in parallel."""
    by_code = {i["code"]: i for i in items}
    depth = {}
    for code in topological_order(items):
        depth[code] = 1 + max((depth[p] for p in by_code[code].get("prerequisites", []) if p in depth), default=0)
    out = [[] for _ in range(max(depth.values(), default=0))]
    for item in items:
        out[depth[item["code"]] - 1].append(item["code"])
    return out


# --- definitions from the data files -----------------------------------------------------------

def _plain_copy(value):
    return json.loads(json.dumps(value, ensure_ascii=False))


def build_definitions(raw):
    """{code: definition} from what the loader read: raw = {"departments", "fields", "regions",
    "packages": [(source, package)], "overlays": [(source, region, overlay)]}. Local packages are
    files of kind `package` under overlays/<region>/ (the loader passes them as packages with
    `home` set). Raises InvalidArgument naming the file for what does not fit together."""
    defs = {}
    for source, pkg in raw["packages"]:
        pkg = _plain_copy(pkg)
        home = pkg.pop("home", NATIONAL)
        pkg.pop("kind", None)
        code = pkg.get("code")
        if not code:
            raise InvalidArgument(f"{source}: a package needs a code")
        if code in defs:
            raise InvalidArgument(f"{source}: package {code} is defined twice (also in {defs[code]['source']})")
        defs[code] = {"code": code, "home": home, "source": source, "base": pkg, "overlays": {}, "bodies": {}}
    bodies = {}
    for source, region, overlay in raw["overlays"]:
        unknown = set(overlay) - {"kind", "region", "implementing_bodies", "packages"}
        if unknown:
            raise InvalidArgument(f"{source}: unknown overlay keys {', '.join(sorted(unknown))}")
        if str(overlay.get("region", region)) != region:
            raise InvalidArgument(f"{source}: says region {overlay.get('region')} but lies in the folder of {region}")
        check_region(region)
        for dept, body in (overlay.get("implementing_bodies") or {}).items():
            bodies.setdefault(region, {})[dept] = _plain_copy(body)
        for code, changes in (overlay.get("packages") or {}).items():
            if code not in defs:
                raise InvalidArgument(f"{source}: overlay for package {code}, which no data file defines")
            if region in defs[code]["overlays"]:
                raise InvalidArgument(f"{source}: a second overlay of {code} for region {region}")
            defs[code]["overlays"][region] = _plain_copy(changes or {})
    for d in defs.values():
        reach = [r for r in bodies if d["home"] == NATIONAL or d["home"] in region_chain(r)]
        d["bodies"] = {r: bodies[r] for r in sorted(reach)}
        items = list(d["base"].get("items", []))
        for ov in d["overlays"].values():
            items += ov.get("add_items", []) or []
        used_depts = {d["base"].get("lead_department")} | {i.get("department_code") for i in items}
        for r in d["bodies"]:
            used_depts |= set(d["bodies"][r])
        for ov in d["overlays"].values():
            used_depts |= set(ov.get("implementing_bodies") or {})
        d["departments"] = {c: n for c, n in raw["departments"].items() if c in used_depts}
        keys = set(d["base"].get("form_fields", []))
        for i in items:
            keys |= set(i.get("form_fields", []))
        d["fields"] = {k: v for k, v in raw["fields"].items() if k in keys}
        d["regions"] = dict(raw.get("regions") or {})
        d["missing"] = {"departments": sorted(c for c in used_depts if c not in raw["departments"]),
                        "fields": sorted(k for k in keys if k not in raw["fields"])}
    return defs


def digest(defn):
    """sha256 of a definition's content (what decides whether a reload changed anything)."""
    body = {k: v for k, v in defn.items() if k != "source"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _check_item(item, where, departments, materials, fields, roles=None):
    code = item.get("code")
    if not isinstance(code, str) or not BASIC_CODE_RE.fullmatch(code):
        raise InvalidArgument(f"{where}: item code {code!r} is not a 12-character GB/T 39554 basic code")
    if not item.get("name"):
        raise InvalidArgument(f"{where}: item {code} has no name")
    if item.get("department_code") not in departments:
        raise InvalidArgument(f"{where}: item {code}: department {item.get('department_code')} is unknown")
    for key in ("statutory_limit_days", "promised_limit_days"):
        if not isinstance(item.get(key), int) or item[key] < 0:
            raise InvalidArgument(f"{where}: item {code}: {key} must be a whole number of working days")
    if item["promised_limit_days"] > item["statutory_limit_days"]:
        raise InvalidArgument(f"{where}: item {code}: promised limit {item['promised_limit_days']} is longer "
                              f"than the statutory limit {item['statutory_limit_days']}")
    result = item.get("result") or {}
    if result.get("type") not in RESULT_TYPES:
        raise InvalidArgument(f"{where}: item {code}: result type {result.get('type')!r} is not one of "
                              f"{', '.join(RESULT_TYPES)}")
    if result["type"] == "RESULT_TYPE_LICENSE" and not result.get("license_type_code"):
        raise InvalidArgument(f"{where}: item {code}: a licence result needs its license_type_code")
    _check_result_parties(result, f"{where}: item {code}", roles if roles is not None else party_roles({}))
    for m in item.get("material_codes", []):
        if m not in materials:
            raise InvalidArgument(f"{where}: item {code}: material {m} is not declared by the package")
    for f in item.get("form_fields", []):
        if f not in fields:
            raise InvalidArgument(f"{where}: item {code}: form field {f} is not in fields.yaml")


def _check_material(m, where, roles=None):
    if not m.get("code") or not m.get("name"):
        raise InvalidArgument(f"{where}: a material needs a code and a name ({m!r})")
    party = m.get("party", APPLICANT)
    roles = roles if roles is not None else party_roles({})
    if party != APPLICANT and party not in roles:
        raise InvalidArgument(f"{where}: material {m['code']} is about party {party!r}, which the package does not "
                              f"name (it names: {', '.join([APPLICANT] + list(roles))})")
    forms = m.get("forms") or []
    bad = [f for f in forms if f not in MATERIAL_FORMS]
    if not forms or bad:
        raise InvalidArgument(f"{where}: material {m['code']}: forms must be some of {', '.join(MATERIAL_FORMS)}"
                              f" (got {forms})")
    if "e-licence" in forms and not m.get("license_type_code"):
        raise InvalidArgument(f"{where}: material {m['code']} may be an e-licence but names no license_type_code")


def _check_situation(s, where):
    if not s.get("key") or not s.get("question") or not s.get("answers"):
        raise InvalidArgument(f"{where}: a situation needs a key, a question and answers ({s.get('key')!r})")
    if str(s.get("default")) not in {str(a) for a in s["answers"]}:
        raise InvalidArgument(f"{where}: situation {s['key']}: default {s.get('default')!r} is not one of its answers")


def party_roles(pkg):
    """{role: party} of the parties a package's cases name besides the applicant, `agent` included.
    Raises InvalidArgument for a malformed list."""
    roles = {}
    for party in pkg.get("parties") or []:
        if not isinstance(party, dict):
            raise InvalidArgument(f"a party of package {pkg.get('code', '?')} must be a mapping with a role ({party!r})")
        role = party.get("role")
        if not isinstance(role, str) or not ROLE_RE.fullmatch(role):
            raise InvalidArgument(f"party role {role!r} of package {pkg.get('code', '?')} must be 2-32 lower-case "
                                  "letters or _ (e.g. deceased, buyer)")
        if role == APPLICANT:
            raise InvalidArgument(f"package {pkg.get('code', '?')}: the applicant is not a party to declare; "
                                  "every case names its applicant")
        if role in roles:
            raise InvalidArgument(f"package {pkg.get('code', '?')}: party {role} is declared twice")
        if not party.get("name"):
            raise InvalidArgument(f"package {pkg.get('code', '?')}: party {role} needs a name (e.g. 逝者)")
        kind = party.get("id_kind", "any")
        if kind not in ID_KINDS:
            raise InvalidArgument(f"package {pkg.get('code', '?')}: party {role}: id_kind {kind!r} is not one of "
                                  f"{', '.join(ID_KINDS)}")
        roles[role] = {"role": role, "name": str(party["name"]), "id_kind": kind,
                       "required": bool(party.get("required", False))}
    roles.setdefault(AGENT["role"], dict(AGENT))
    return roles


def _check_result_parties(result, where, roles):
    """The result's holder must be the applicant or a party every case names (a required one); what
    it supersedes must be a licence of a party the package knows."""
    holder = result.get("holder_party", APPLICANT)
    if holder != APPLICANT and not (roles.get(holder) or {}).get("required"):
        known = [APPLICANT] + [r for r, p in roles.items() if p["required"]]
        raise InvalidArgument(f"{where}: holder_party {holder!r} is not the applicant or a required party of the "
                              f"package ({', '.join(known)}): every case must name the holder of its result")
    sup = result.get("supersedes")
    if sup is None:
        return
    if not isinstance(sup, dict) or not sup.get("party"):
        raise InvalidArgument(f"{where}: supersedes names the party whose licence the result replaces "
                              "(e.g. supersedes: {party: seller})")
    if result.get("type") != "RESULT_TYPE_LICENSE":
        raise InvalidArgument(f"{where}: only a licence result can supersede a licence")
    if sup["party"] != APPLICANT and sup["party"] not in roles:
        raise InvalidArgument(f"{where}: supersedes a licence of party {sup['party']!r}, which the package does not "
                              f"name (it names: {', '.join([APPLICANT] + list(roles))})")
    unknown = set(sup) - {"party", "license_type_code"}
    if unknown:
        raise InvalidArgument(f"{where}: supersedes takes party and license_type_code, not {', '.join(sorted(unknown))}")


def _result_view(result):
    """An item's result with its holder and what it supersedes spelled out."""
    out = dict(result or {})
    out["holder_party"] = out.get("holder_party") or APPLICANT
    if out.get("supersedes"):
        out["supersedes"] = {"party": out["supersedes"]["party"],
                             "license_type_code": out["supersedes"].get("license_type_code")
                             or out.get("license_type_code", "")}
    return out


def validate_package(pkg, departments, fields=None, where=None):
    """Raise InvalidArgument naming the first thing wrong with a base package."""
    where = where or f"package {pkg.get('code', '?')}"
    for key in ("code", "name", "items", "lead_department"):
        if not pkg.get(key):
            raise InvalidArgument(f"{where}: package {pkg.get('code', '?')} has no {key}")
    if not PACKAGE_CODE_RE.fullmatch(str(pkg["code"])):
        raise InvalidArgument(f"{where}: package code {pkg['code']!r} must be 2-16 characters 0-9A-Z")
    if pkg.get("audience", "AUDIENCE_PERSON") not in AUDIENCES:
        raise InvalidArgument(f"{where}: audience {pkg.get('audience')!r} is not one of {', '.join(AUDIENCES)}")
    if pkg["lead_department"] not in departments:
        raise InvalidArgument(f"{where}: package {pkg['code']}: lead department {pkg['lead_department']} is unknown")
    for ch in pkg.get("delivery_channels", []):
        if ch not in CHANNELS:
            raise InvalidArgument(f"{where}: delivery channel {ch!r} is not one of {', '.join(CHANNELS)}")
    fields = fields if fields is not None else {k: {} for i in pkg["items"] for k in i.get("form_fields", [])}
    try:
        roles = party_roles(pkg)
    except InvalidArgument as exc:
        raise InvalidArgument(f"{where}: {exc.message}") from None
    materials = {}
    for m in pkg.get("materials", []):
        _check_material(m, where, roles)
        materials[m["code"]] = m
    for s in pkg.get("situations", []):
        _check_situation(s, where)
    seen = set()
    for item in pkg["items"]:
        _check_item(item, where, departments, materials, fields, roles)
        if item["code"] in seen:
            raise InvalidArgument(f"{where}: item {item['code']} is listed twice")
        seen.add(item["code"])
    _check_graph(pkg["items"], pkg.get("situations", []), where)


def _check_graph(items, situations, where):
    codes = {i["code"] for i in items}
    answers = {s["key"]: {str(a) for a in s["answers"]} for s in situations}
    for item in items:
        for pre in item.get("prerequisites", []):
            if pre not in codes:
                raise InvalidArgument(f"{where}: item {item['code']}: prerequisite {pre} is not in the package")
        for key, value in (item.get("when") or {}).items():
            if key not in answers:
                raise InvalidArgument(f"{where}: item {item['code']} depends on situation {key}, which the "
                                      "package does not ask")
            if str(value) not in answers[key]:
                raise InvalidArgument(f"{where}: item {item['code']}: {value!r} is not an answer of situation {key}")
    topological_order(items)


def validate_definition(defn):
    """Everything a version must satisfy before it is stored: the base package, every overlay's
    changes (shorter promised limits only, optional items only switched off), the implementing
    bodies' credit codes, and a resolution in every region it has an overlay for."""
    if defn["missing"]["departments"]:
        raise InvalidArgument(f"{defn['source']}: departments {', '.join(defn['missing']['departments'])} "
                              "are not in departments.yaml")
    if defn["missing"]["fields"]:
        raise InvalidArgument(f"{defn['source']}: form fields {', '.join(defn['missing']['fields'])} "
                              "are not in fields.yaml")
    departments, fields = defn["departments"], defn["fields"]
    validate_package(defn["base"], departments, fields, where=defn["source"])
    if defn["home"] != NATIONAL:
        check_region(defn["home"])
    for key, f in fields.items():
        if f.get("type", "string") not in FIELD_TYPES:
            raise InvalidArgument(f"fields.yaml: {key}: type {f.get('type')!r} is not one of {', '.join(FIELD_TYPES)}")
        if f.get("validator") and f["validator"] not in VALIDATORS:
            raise InvalidArgument(f"fields.yaml: {key}: validator {f['validator']!r} is not one of {', '.join(VALIDATORS)}")
        if f.get("type") == "choice" and not f.get("choices"):
            raise InvalidArgument(f"fields.yaml: {key}: a choice field needs choices")
    for region, bodies in defn["bodies"].items():
        for dept, body in bodies.items():
            _check_body(body, f"overlays/{region}: implementing body of {dept}")
    for region, ov in defn["overlays"].items():
        where = f"overlays/{region} ({defn['code']})"
        unknown = set(ov) - set(OVERLAY_KEYS)
        if unknown:
            raise InvalidArgument(f"{where}: unknown keys {', '.join(sorted(unknown))}; an overlay may set "
                                  f"{', '.join(OVERLAY_KEYS)}")
        if ov.get("implementing_code") and not IMPLEMENTING_CODE_RE.fullmatch(str(ov["implementing_code"])):
            raise InvalidArgument(f"{where}: implementing code {ov['implementing_code']!r} must be 1-30 characters 0-9A-Z")
        for dept, body in (ov.get("implementing_bodies") or {}).items():
            _check_body(body, f"{where}: implementing body of {dept}")
        for m in ov.get("add_materials", []) or []:
            _check_material(m, where, party_roles(defn["base"]))
        for s in ov.get("add_situations", []) or []:
            _check_situation(s, where)
    home = defn["home"]
    probe = ["110000"] if home == NATIONAL else [home]
    for region in probe + sorted(set(defn["overlays"]) | set(defn["bodies"])):
        if home == NATIONAL or home in region_chain(region):
            resolve(defn, region, {}, strict=True)


def check_shared_items(defs):
    """An item (one basic code) is the same statutory service wherever it appears: same name and
    department in every package that bundles it."""
    seen = {}
    for d in defs.values():
        items = list(d["base"]["items"])
        for ov in d["overlays"].values():
            items += ov.get("add_items", []) or []
        for i in items:
            key = (i.get("name"), i.get("department_code"))
            first = seen.setdefault(i["code"], (key, d["code"]))
            if first[0] != key:
                raise InvalidArgument(f"item {i['code']} is {key[0]} ({key[1]}) in {d['code']} but {first[0][0]} "
                                      f"({first[0][1]}) in {first[1]}; one basic code is one item")


def _check_body(body, where):
    if not isinstance(body, dict) or not body.get("name"):
        raise InvalidArgument(f"{where} needs a name")
    problem = ids.credit_code_problem(str(body.get("credit_code", "")))
    if problem:
        raise InvalidArgument(f"{where} ({body['name']}): {problem}")


# --- resolution --------------------------------------------------------------------------------

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
            _check_item(i, where, defn["departments"], materials, defn["fields"], roles)
        raw_situations = list(base.get("situations", []))
        for level in below:
            raw_situations += (defn["overlays"].get(level) or {}).get("add_situations", []) or []
        _check_graph(items, raw_situations, where)

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

    out_items, used_materials, waived = [], {}, {}
    for item in selected:
        body = bodies.get(item["department_code"])
        needs = []
        for m in item.get("material_codes", []):
            target = waived if materials[m].get("license_type_code") in held else used_materials
            target.setdefault(m, []).append(item["code"])
            if target is used_materials:
                needs.append(m)
        out = {k: v for k, v in item.items() if k not in ("form_fields", "separately", "material_codes")}
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


def bare_definition(pkg, departments, fields=None):
    """A definition of one package with no overlays (tests and tools of other services)."""
    keys = set(pkg.get("form_fields", [])) | {k for i in pkg.get("items", []) for k in i.get("form_fields", [])}
    fields = fields or {}
    return {"code": pkg["code"], "home": NATIONAL, "base": pkg, "overlays": {}, "bodies": {},
            "departments": dict(departments), "regions": {},
            "fields": {k: fields.get(k, {"label": k}) for k in keys}}


def _region_name(regions, chain):
    for level in reversed(chain):
        if level in regions:
            return regions[level]
    return ""


def merged_form(package_fields, items, fields):
    """The one form: every field the package or a selected item asks for, each once, with the items
    that ask for it."""
    order, askers = [], {}
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


# --- the one form: checking values -------------------------------------------------------------

PHONE_RE = re.compile(r"1[3-9][0-9]{9}")
BANK_RE = re.compile(r"[0-9]{12,30}")
DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def field_problem(field, value):
    """Why `value` does not fit `field`, or None."""
    value = "" if value is None else str(value)
    if value.strip() == "":
        return "is required" if field.get("required") else None
    kind = field.get("type", "string")
    if kind == "date":
        try:
            if not DATE_RE.fullmatch(value):
                raise ValueError(value)
            datetime.date.fromisoformat(value)
        except ValueError:
            return f"{value!r} is not a date (YYYY-MM-DD)"
    elif kind == "number":
        try:
            if float(value) < 0:
                return f"{value} is negative"
        except ValueError:
            return f"{value!r} is not a number"
    elif kind == "bool" and value not in ("true", "false", "是", "否"):
        return f"{value!r} is not true/false"
    elif kind == "choice" and value not in field.get("choices", []):
        return f"{value!r} is not one of {', '.join(field.get('choices', []))}"
    validator = field.get("validator")
    if validator == "citizen_id":
        return ids.citizen_id_problem(value)
    if validator == "credit_code":
        return ids.credit_code_problem(value)
    if validator == "phone" and not PHONE_RE.fullmatch(value):
        return f"{value!r} is not a mainland mobile number (11 digits starting with 1)"
    if validator == "region" and not (REGION_RE.fullmatch(value) and value.isascii()):
        return f"{value!r} is not a 6-digit GB/T 2260 region code"
    if validator == "bank_account" and not (BANK_RE.fullmatch(value) and value.isascii()):
        return f"{value!r} is not a bank account number (12-30 digits)"
    return None


def check_form(form_fields, values):
    """[(key, problem)] for the values of a merged form: unknown keys, missing required fields,
    wrong types, wrong check digits."""
    by_key = {f["key"]: f for f in form_fields}
    problems = [(k, "is not a field of this form") for k in values if k not in by_key]
    for f in form_fields:
        problem = field_problem(f, values.get(f["key"]))
        if problem:
            problems.append((f["key"], f"{f['label']}: {problem}"))
    return problems


# --- steps, savings, notice --------------------------------------------------------------------

def steps(pkg):
    """The package's steps as the applicant meets them: apply once, one window accepts, the
    departments' stages (parallel inside a stage), one delivery."""
    names = {i["code"]: i for i in pkg["items"]}
    out = [{"number": 1, "name": "一表申请：填写一张表单、提交一套材料（网上或综合窗口）", "item_codes": [],
            "promised_limit_days": 0},
           {"number": 2, "name": "一窗受理：综合窗口受理并一次性告知补正", "item_codes": [], "promised_limit_days": 0}]
    for n, stage in enumerate(stages(pkg["items"]), start=1):
        out.append({"number": len(out) + 1, "name": f"联办第{n}段（并联）：" + "、".join(names[c]["name"] for c in stage),
                    "item_codes": stage,
                    "promised_limit_days": max(names[c]["promised_limit_days"] for c in stage)})
    channels = "、".join(CHANNEL_NAMES[c] for c in pkg.get("delivery_channels", [])) or "窗口领取"
    out.append({"number": len(out) + 1, "name": f"统一出件：{channels}", "item_codes": [], "promised_limit_days": 0})
    return out


def savings(pkg):
    """The package against the same selected items done one by one."""
    items = pkg["items"]
    sep = [i.get("separately") or {} for i in items]
    return {
        "package_code": pkg["code"], "region_code": pkg["region_code"], "version": pkg.get("version", 0),
        "working_days_separately": sum(s.get("days", i["promised_limit_days"]) for s, i in zip(sep, items)),
        "working_days_together": pkg["promised_limit_days"],
        "steps_separately": sum(s.get("steps", DEFAULT_STEPS_SEPARATELY) for s in sep),
        "steps_together": len(steps(pkg)),
        "materials_separately": sum(s.get("materials", len(i.get("material_codes", []))) for s, i in zip(sep, items)),
        "materials_together": len(pkg["materials"]),
        "trips_separately": sum(s.get("trips", DEFAULT_TRIPS_SEPARATELY) for s in sep),
        "trips_together": pkg.get("trips", 1),
    }


def notice_text(pkg, step_list, figures):
    """The one-time notice (一次告知) as readable lines."""
    dept = {d["code"]: d["name"] for d in pkg["departments"]}
    lines = [f"【{pkg['name']}】{pkg['code']} 第{pkg['version']}版 · {pkg['region_name'] or pkg['region_code']}"
             f"（{pkg['region_code']}）· 实施编码 {pkg['implementing_code']}",
             f"牵头部门：{dept.get(pkg['lead_department'], pkg['lead_department'])}；适用层级：{' → '.join(pkg['levels'])}"]
    if pkg.get("policy"):
        lines.append(f"政策依据：{pkg['policy']}")
    lines.append("一、申请条件")
    lines += [f"  {n}. {c}" for n, c in enumerate(pkg["conditions"], 1)] or ["  无特别条件"]
    named = [p for p in pkg.get("parties", []) if p.get("required")]
    if named:  # whom the case is about: each named with name and ID number at submission
        lines.append("  申请时须填写当事人：" + "、".join(f"{p['name']}（{p['role']}）" for p in named))
    lines.append("二、情形")
    for s in pkg["situations"]:
        label = next((a["label"] for a in s["answers"] if a["value"] == s["answer"]), s["answer"])
        lines.append(f"  {s['question']}（{s['key']}）：{label}"
                     f"{'（默认）' if s['answer'] == s['default_answer'] else ''}")
    if not pkg["situations"]:
        lines.append("  无")
    lines.append("三、办理事项")
    for i in pkg["items"]:
        body = (i.get("implementing_body") or {}).get("name") or dept.get(i["department_code"], i["department_code"])
        result = (i.get("result") or {})
        what = result.get("license_type_name") or RESULT_NAMES.get(result.get("type"), "")
        lines.append(f"  {i['code']} {i['name']} — {body}；法定{i['statutory_limit_days']}个工作日，"
                     f"承诺{i['promised_limit_days']}个工作日（{i['promised_limit_source']}）；结果：{what}；"
                     f"收费：{i.get('fee') or '不收费'}；来源：{i['source_level']}")
    for s in pkg["skipped_items"]:
        why = "本地不提供" if s["reason"] == "switched_off" else f"情形不适用（需 {s['detail']}）"
        lines.append(f"  （不办理）{s['code']} {s['name']}：{why}")
    lines.append("四、一套材料")
    forms = {"paper": "纸质", "scan": "扫描件", "e-licence": "电子证照"}
    for m in pkg["materials"]:
        lines.append(f"  {m['code']} {m['name']}（{'/'.join(forms[f] for f in m['forms'])}）用于 {'、'.join(m['item_codes'])}")
    for m in pkg.get("waived_materials", []):
        lines.append(f"  （免提交）{m['code']} {m['name']}：已持有电子证照 {m['license_type_code']}")
    lines.append("五、办理流程")
    lines += [f"  {s['number']}. {s['name']}" for s in step_list]
    lines.append(f"六、时限：承诺{pkg['promised_limit_days']}个工作日办结（法定{pkg['statutory_limit_days']}个工作日）")
    channels = "、".join(CHANNEL_NAMES[c] for c in pkg.get("delivery_channels", [])) or "窗口领取"
    lines.append(f"七、结果送达：{channels}")
    lines.append(savings_line(figures))
    return lines


def savings_line(f):
    return (f"八、减时间 {f['working_days_separately']}→{f['working_days_together']} 个工作日；"
            f"减环节 {f['steps_separately']}→{f['steps_together']}；减材料 {f['materials_separately']}→"
            f"{f['materials_together']}；减跑动 {f['trips_separately']}→{f['trips_together']} 次")


def not_found(code, region_code):
    return NotFound(f"there is no package {code!r} in region {region_code}; ListPackages shows what is offered")
