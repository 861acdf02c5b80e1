"""Intake rules: who may apply, what a submission must carry, how case numbers are built, and how a
case's status moves. Pure functions over plain values, and the case and upload as handlers see them."""
import codecs
import dataclasses
import datetime
import enum
import hashlib
import json
import re

from services.common import china, forms, paging
from services.common.address import check_address
from services.common.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from services.common.ids import (
    CODE_TYPE_CITIZEN_ID,
    CODE_TYPE_CREDIT_CODE,
    CODE_TYPES,
    citizen_id_problem,
    code_type_of,
    credit_code_problem,
)
from services.common.privacy import mask_id


class CaseStatus(enum.StrEnum):
    """Where a case (办件) is. The values are the domain's words; how a status is stored and how the
    api sends it are the two mappings below, so neither a renamed proto value nor a renamed member
    changes the data."""
    SUBMITTED = "SUBMITTED"
    IN_REVIEW = "IN_REVIEW"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    DELIVERED = "DELIVERED"
    RATED = "RATED"
    RECTIFYING = "RECTIFYING"  # waiting for the applicant to hand in named materials (补正)
    WITHDRAWN = "WITHDRAWN"
    DELIVERY_FAILED = "DELIVERY_FAILED"


SUBMITTED, IN_REVIEW, APPROVED, REJECTED, DELIVERED, RATED, RECTIFYING, WITHDRAWN, DELIVERY_FAILED = (
    CaseStatus.SUBMITTED, CaseStatus.IN_REVIEW, CaseStatus.APPROVED, CaseStatus.REJECTED, CaseStatus.DELIVERED,
    CaseStatus.RATED, CaseStatus.RECTIFYING, CaseStatus.WITHDRAWN, CaseStatus.DELIVERY_FAILED)

# How the store writes a status (the case's, its history's, a rectification's resume_status): the
# strings every stored case has carried since the first; they never change.
STORED_STATUS = {
    SUBMITTED: "CASE_STATUS_SUBMITTED", IN_REVIEW: "CASE_STATUS_IN_REVIEW", APPROVED: "CASE_STATUS_APPROVED",
    REJECTED: "CASE_STATUS_REJECTED", DELIVERED: "CASE_STATUS_DELIVERED", RATED: "CASE_STATUS_RATED",
    RECTIFYING: "CASE_STATUS_RECTIFYING", WITHDRAWN: "CASE_STATUS_WITHDRAWN",
    DELIVERY_FAILED: "CASE_STATUS_DELIVERY_FAILED"}
STATUS_OF_STORED = {stored: status for status, stored in STORED_STATUS.items()}

# The numbers of onething.intake.v1.CaseStatus (protos/onething/intake/v1/intake.proto) the api sends.
PROTO_STATUS = {SUBMITTED: 1, IN_REVIEW: 2, APPROVED: 3, REJECTED: 4, DELIVERED: 5, RATED: 6, RECTIFYING: 7,
                WITHDRAWN: 8, DELIVERY_FAILED: 9}

# A status may only move forward along this order; an older event arriving late changes nothing.
# RECTIFYING sits beside IN_REVIEW (it pauses the review; supplement() and rectify() move in and out
# of it explicitly); DELIVERY_FAILED sits beside APPROVED (after_failure() and after_dispatch() move
# in and out of it by delivery attempt); WITHDRAWN is last, so nothing that arrives after a
# withdrawal moves the case.
_RANK = {SUBMITTED: 0, IN_REVIEW: 1, RECTIFYING: 1, APPROVED: 2, REJECTED: 2, DELIVERY_FAILED: 2, DELIVERED: 3,
         RATED: 4, WITHDRAWN: 5}
# Before conclusion: the applicant may still withdraw, a department may still ask for materials.
OPEN = (SUBMITTED, IN_REVIEW, RECTIFYING)
# WatchCase ends here.
FINAL = (RATED, REJECTED, WITHDRAWN)

CHANNELS = ("DELIVERY_CHANNEL_ELECTRONIC", "DELIVERY_CHANNEL_WINDOW", "DELIVERY_CHANNEL_MAIL")


def check_applicant(applicant, audience):
    id_number = (applicant or {}).get("id_number", "")
    if not id_number:
        raise InvalidArgument("the applicant's ID number is missing", violations=[FieldViolation(
            "applicant.id_number", "missing", "请填写申请人的证件号码。", "REQUIRED")])
    if not (applicant.get("name") or "").strip():
        raise InvalidArgument("the applicant's name is missing", violations=[FieldViolation(
            "applicant.name", "missing", "请填写申请人姓名。", "REQUIRED")])
    enterprise = audience == "AUDIENCE_ENTERPRISE"
    problem = credit_code_problem(id_number) if enterprise else citizen_id_problem(id_number)
    if problem:
        raise InvalidArgument(f"applicant: {problem}", violations=[FieldViolation(
            "applicant.id_number", problem,
            "申请人的统一社会信用代码有误，请核对。" if enterprise else "申请人的居民身份证号码有误，请核对。",
            "INVALID_VALUE")])


def check_delivery(delivery):
    channel = (delivery or {}).get("channel", "DELIVERY_CHANNEL_UNSPECIFIED")
    if channel not in CHANNELS:
        raise InvalidArgument("choose how results reach you: ELECTRONIC, WINDOW or MAIL")
    if channel == "DELIVERY_CHANNEL_MAIL":
        if not (delivery.get("address") or {}).get("line"):
            raise InvalidArgument("mail delivery needs a postal address")
        check_address(delivery["address"])


# --- parties (当事人) -----------------------------------------------------------------------------

APPLICANT = "applicant"
_ID_KIND_ZH = {"citizen_id": "居民身份证号码", "credit_code": "统一社会信用代码", "any": "居民身份证号码或统一社会信用代码"}


def _party_error(path, message, zh, reason):
    return InvalidArgument(message, violations=[FieldViolation(path, message, zh, reason)], zh=zh)


def check_parties(package, parties):
    """The parties a case names besides its applicant, against the package's list (catalog
    Package.parties): each role known to the package and named once, a name, an ID number of the
    kind the role takes with a right check character (GB 11643 / GB 32100), a code type (GB/T 36903)
    that fits the number, and every required role present. Returns the parties as kept: ID number
    in capitals, code type filled in."""
    declared = {p["role"]: p for p in package.get("parties") or []}
    roles_named = ", ".join(declared) or "none"
    out: list[dict] = []
    seen_ids: dict[str, str] = {}
    for i, party in enumerate(parties or []):
        role = (party.get("role") or "").strip()
        path = f"parties[{i}]"
        if not role:
            raise _party_error(f"{path}.role", f"parties[{i}]: name the party's role (the package takes: {roles_named})",
                               "请填写当事人的身份（角色）。", "REQUIRED")
        shown = role if len(role) <= 32 else role[:32] + "…"
        if role == APPLICANT:
            raise _party_error(f"{path}.role", f"parties[{i}]: the applicant is named in `applicant`, not among the parties",
                               "申请人无需在当事人中重复填写。", "INVALID_VALUE")
        if role not in declared:
            raise _party_error(f"{path}.role", f"parties[{i}]: package {package.get('code', '')} names no party "
                               f"{shown!r}; it takes: {roles_named}", "该事项不涉及此类当事人，请核对。", "INVALID_VALUE")
        if any(p["role"] == role for p in out):
            raise _party_error(f"{path}.role", f"parties[{i}]: party {shown!r} is named twice",
                               f"当事人“{declared[role]['name']}”重复填写。", "DUPLICATE")
        label = f"{declared[role]['name']} ({role})"
        name = (party.get("name") or "").strip()
        if not name:
            raise _party_error(f"{path}.name", f"the name of party {label} is missing",
                               f"请填写{declared[role]['name']}的姓名或名称。", "REQUIRED")
        id_number = (party.get("id_number") or "").strip().upper()
        kind = declared[role].get("id_kind") or "any"
        zh_kind = _ID_KIND_ZH.get(kind, _ID_KIND_ZH["any"])
        if not id_number:
            raise _party_error(f"{path}.id_number", f"the ID number of party {label} is missing",
                               f"请填写{declared[role]['name']}的{zh_kind}。", "REQUIRED")
        code_type = (party.get("code_type") or "").strip()
        if code_type and code_type not in CODE_TYPES:
            raise _party_error(f"{path}.code_type", f"party {label}: code type {code_type[:32]!r} is not one of "
                               + ", ".join(f"{k} ({v})" for k, v in CODE_TYPES.items()),
                               "证件类型代码有误，请核对。", "INVALID_VALUE")
        # the role's kind decides the code type; for a role that takes either, the code type given,
        # else the number's shape (a citizen ID number first: some also pass the GB 32100 check)
        actual = {"citizen_id": CODE_TYPE_CITIZEN_ID, "credit_code": CODE_TYPE_CREDIT_CODE}.get(
            kind, code_type or code_type_of(id_number))
        if actual == CODE_TYPE_CITIZEN_ID:
            problem = citizen_id_problem(id_number)
        elif actual == CODE_TYPE_CREDIT_CODE:
            problem = credit_code_problem(id_number)
        else:
            problem = (f"{mask_id(id_number[:32])!r} is neither a citizen ID number ({citizen_id_problem(id_number)}) nor a "
                       f"unified social credit code ({credit_code_problem(id_number)})")
        if problem:
            raise _party_error(f"{path}.id_number", f"party {label}: {problem}",
                               f"{declared[role]['name']}的{zh_kind}有误，请核对。", "INVALID_VALUE")
        if code_type and code_type != actual:
            raise _party_error(f"{path}.code_type", f"party {label}: code type {code_type} ({CODE_TYPES[code_type]}) "
                               f"does not fit: {declared[role]['name']} is identified by a {CODE_TYPES[actual]} "
                               f"({actual})", "证件类型与当事人身份不符，请核对。", "INVALID_VALUE")
        if id_number in seen_ids:
            raise _party_error(f"{path}.id_number", f"parties {seen_ids[id_number]} and {role} have the same ID number; "
                               "each party is someone else", "不同当事人的证件号码不能相同。", "DUPLICATE")
        seen_ids[id_number] = role
        out.append({"role": role, "name": name, "id_number": id_number, "code_type": actual})
    missing = [p for r, p in declared.items() if p.get("required") and r not in {x["role"] for x in out}]
    if missing:
        listed = "、".join(f"{p['name']} ({p['role']})" for p in missing)
        raise _party_error("parties", f"package {package.get('code', '')} needs its cases to name the party {listed}: "
                           "add it to parties (role, name, ID number)",
                           f"请填写当事人：{'、'.join(p['name'] for p in missing)}。", "REQUIRED")
    return out


def holders(applicant, parties):
    """{role: ID number}: the applicant and every party of the case, by role."""
    out = {APPLICANT: (applicant or {}).get("id_number", "")}
    out.update({p["role"]: p["id_number"] for p in parties or []})
    return out


def licence_holders(package, submitted_codes, holders_by_role):
    """The holders whose licences may stand in for a material still missing (减材料): the party
    each such material is about, by ID number, each once."""
    needed = {c for item in package["items"] for c in item.get("material_codes", [])}
    out = []
    for m in package.get("materials", []):
        if m["code"] in needed and m["code"] not in submitted_codes and m.get("license_type_code"):
            holder = holders_by_role.get(m.get("party") or APPLICANT, "")
            if holder and holder not in out:
                out.append(holder)
    return out


def check_materials(package, submitted_codes, licences=(), holders_by_role=None):
    """Every material an item of the package needs must be handed in, unless a valid licence of the
    party it is about stands in for it (减材料: a material whose license_type_code is the type of
    one of `licences` held by that party: the applicant's own, or the seller's certificate, the
    student's birth certificate …). Without `holders_by_role` every licence counts (the applicant's).
    Returns {material code: licence} for the materials a licence stands in for."""
    names = {m["code"]: m["name"] for m in package.get("materials", [])}
    needed = []
    for item in package["items"]:
        for code in item.get("material_codes", []):
            if code not in needed:
                needed.append(code)
    covered = licences_standing_in(package, [c for c in needed if c not in submitted_codes], licences,
                                   holders_by_role)
    missing = [c for c in needed if c not in submitted_codes and c not in covered]
    if missing:
        listed = "、".join(f"{names.get(c, c)} ({c})" for c in missing)
        raise FailedPrecondition(f"required materials are missing: {listed}; upload them and submit again")
    unknown = [c for c in submitted_codes if c not in names]
    if unknown:
        raise InvalidArgument(f"package {package['code']} asks for no material {', '.join(unknown)}")
    return covered


def licences_standing_in(package, codes, licences, holders_by_role=None):
    """{material code: licence} for each of `codes` whose licence type the party it is about holds
    (`holders_by_role`: role → ID number; None: any of `licences`); of several licences of one type,
    the most recently valid one."""
    by_holder_type = {}
    for lic in sorted(licences or (), key=lambda l: l.get("valid_from", "")):
        if lic.get("type_code"):
            holder = lic.get("holder_code", "") if holders_by_role is not None else None
            by_holder_type[(holder, lic["type_code"])] = lic
    covered = {}
    for m in package.get("materials", []):
        holder = holders_by_role.get(m.get("party") or APPLICANT, "") if holders_by_role is not None else None
        if holders_by_role is not None and not holder:
            continue
        lic = by_holder_type.get((holder, m.get("license_type_code") or ""))
        if m["code"] in codes and lic is not None:
            covered[m["code"]] = lic
    return covered


def valid_licences(licences, day):
    """The licences that count on `day`: status VALID, inside their validity period."""
    out = []
    for lic in licences:
        if lic.get("status", "LICENSE_STATUS_VALID") != "LICENSE_STATUS_VALID":
            continue
        if (lic.get("valid_from") or "")[:10] > day.isoformat():
            continue
        if lic.get("valid_to") and lic["valid_to"][:10] < day.isoformat():
            continue
        out.append(lic)
    return out


def material_name(package, code):
    return next((m["name"] for m in package.get("materials", []) if m["code"] == code), code)


# --- the package snapshot a case carries to the review (case_submitted) ----------------------------


def package_snapshot(package):
    """The package version a case is submitted under, as `case_submitted` carries it (the fields of
    onething.intake.v1.PackageSnapshot, JSON names): taken once, at submission, from the catalog's
    package, with what the review of the case reads of it (the items as the departments' tasks,
    their order and limits, the departments, the results and the parties they go to, the materials
    a result's supersedes looks at) and nothing else of the catalog's message."""
    return _pruned({
        "code": package.get("code"), "name": package.get("name"), "version": package.get("version"),
        "lead_department": package.get("lead_department"),
        "departments": [{"code": d.get("code"), "name": d.get("name")} for d in package.get("departments") or []],
        "items": [_snapshot_item(item) for item in package.get("items") or []],
        "materials": [_snapshot_material(m) for m in package.get("materials") or []],
        "waived_materials": [_snapshot_material(m) for m in package.get("waived_materials") or []],
        "promised_limit_days": package.get("promised_limit_days"),
        "statutory_limit_days": package.get("statutory_limit_days")})


def _snapshot_item(item):
    result = item.get("result") or {}
    supersedes = result.get("supersedes") or {}
    return {
        "code": item.get("code"), "name": item.get("name"), "department_code": item.get("department_code"),
        "prerequisites": list(item.get("prerequisites") or []),
        "material_codes": list(item.get("material_codes") or []),
        "license_inputs": list(item.get("license_inputs") or []),
        "result": {"type": result.get("type"), "license_type_code": result.get("license_type_code"),
                   "license_type_name": result.get("license_type_name"), "holder_party": result.get("holder_party"),
                   "supersedes": {"party": supersedes.get("party"),
                                  "license_type_code": supersedes.get("license_type_code")}},
        "statutory_limit_days": item.get("statutory_limit_days"), "promised_limit_days": item.get("promised_limit_days"),
        "optional": item.get("optional"), "inspection": item.get("inspection"),
        "implementing_body": {"name": (item.get("implementing_body") or {}).get("name")},
        "implementing_region": item.get("implementing_region"),
        "implementing_region_field": item.get("implementing_region_field")}


def _snapshot_material(material):
    return {"code": material.get("code"), "party": material.get("party"),
            "license_type_code": material.get("license_type_code")}


def _pruned(value):
    """`value` without what is not set (None, "", 0, False, empty lists and objects), as the JSON of a
    protobuf message leaves it out: a snapshot then reads the same whether the catalog's package
    said a default or left it out."""
    if isinstance(value, dict):
        kept = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in (None, "", 0, False, [], {})}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


# --- the one form (一表申请): the rules are services.common.forms, shared with the catalog's CheckForm


def check_form(form_fields, form):
    """The form against the package's merged form (services.common.forms): required fields present,
    each value of its type, its validator and its choices; the first problem refuses the submission.
    Keys the package's form does not have are left alone; with no form_fields there is nothing to
    check."""
    refused = forms.refusals(forms.check(form_fields, form))
    if refused:
        raise _form_error(refused[0])


def _form_error(problem):
    # the value is not repeated: form values are personal data and end up in logs
    label = f"{problem.label} ({problem.key})"
    message = f"form: {label}{':' if problem.reason == forms.INVALID_VALUE else ''} {problem.text}"
    path = f"form[{json.dumps(problem.key, ensure_ascii=False)}]"
    return InvalidArgument(message, violations=[FieldViolation(path, message.removeprefix("form: "), problem.zh,
                                                               problem.reason)], zh=problem.zh)


def check_situations(situations):
    for key, value in (situations or {}).items():
        if not key.strip() or not str(value).strip():
            raise InvalidArgument("situations: every answer needs a question key and a value")


_PREFIX_RE = re.compile(r"[0-9A-Z]{1,48}")


def implementing_code(region_code, package_code):
    """Stand-in for the GB/T 39554 implementing code when the catalog carries none for the region."""
    return f"{region_code}{package_code}"


def case_prefix(package, region_code):
    """Case numbers extend the package's implementing code (实施编码) in the region; without one,
    region and package code."""
    code = (package.get("implementing_code") or "").strip().upper()
    if code and _PREFIX_RE.fullmatch(code):
        return code
    return implementing_code(region_code, package["code"])


def case_number(prefix, day, sequence):
    return f"{prefix}{day:%Y%m%d}{sequence:04d}"


def _meaningful(value):
    """`value` without empty parts: a field sent empty and a field left out ask for the same."""
    if isinstance(value, dict):
        out = {k: _meaningful(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in ("", None, {}, [], 0, False)}
    if isinstance(value, list):
        return [_meaningful(v) for v in value]
    return value


def request_digest(req):
    """sha256 of what a submission asks for (package, region, applicant, form, materials, delivery,
    situations), not of how it was sent: map order and the order materials are listed in do not
    count, nor does the idempotency key itself."""
    content = {k: v for k, v in (req or {}).items() if k != "idempotency_key"}
    content = _meaningful(content)
    if "materials" in content:
        content["materials"] = sorted(content["materials"], key=lambda m: json.dumps(m, sort_keys=True))
    canonical = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_same_request(existing, digest, key):
    """A retry with an idempotency key already used must ask for the same as the first request did;
    the same key for something else is refused rather than answered with the first case. Cases
    stored before digests were kept (request_hash empty) are taken as matching."""
    stored = getattr(existing, "request_hash", None)
    if stored and stored != digest:
        shown = key if len(key) <= 32 else key[:32] + "…"
        raise AlreadyExists(
            f"idempotency key {shown!r} was already used for case {existing.case_no} with a different request; "
            "a retry must send the same request, a new application needs a new key",
            violations=[FieldViolation("idempotency_key", "already used for a different request",
                                       f"该幂等键已用于另一份申请（办件编号 {existing.case_no}），新的申请请使用新的幂等键。",
                                       "KEY_REUSED")])
    return existing


CASE_NO_RE = re.compile(r"[0-9A-Z]{6,64}")


def check_case_no(case_no):
    if not CASE_NO_RE.fullmatch(case_no or ""):
        raise InvalidArgument(f"{case_no!r} is not a case number")


def advance(current, new):
    """The status after `new` arrives, or None when it would move the case backwards."""
    if _RANK[new] <= _RANK[current]:
        return None
    return new


def after_failure(status, attempt, last_attempt):
    """The status a `delivery_failed` of delivery attempt `attempt` moves the case to, or None when
    it changes nothing: the case is delivered, rated, rejected or withdrawn, or the failure is old
    news (an earlier attempt, superseded by a re-dispatch, or this attempt's failure arriving
    again). A case intake has not seen concluded yet fails too: delivery only starts after an
    approval, so the conclusion is on its way."""
    if status == DELIVERY_FAILED:
        return DELIVERY_FAILED if attempt > last_attempt else None
    if status in OPEN or status == APPROVED:
        return DELIVERY_FAILED if attempt >= last_attempt else None
    return None


def after_dispatch(status, attempt, last_attempt):
    """The status a `delivery_dispatched` of `attempt` leaves the case in, or None when it is old
    news: after a failure, a re-dispatch (a later attempt) brings the case back to APPROVED; any
    other dispatch of a case not yet delivered leaves its status as it is."""
    if attempt < last_attempt or status not in (*OPEN, APPROVED, DELIVERY_FAILED):
        return None
    if status == DELIVERY_FAILED:
        return APPROVED if attempt > last_attempt else None
    return status


def rectify(case, request):
    """A department's request for named materials (补正), or None when it changes nothing: the
    case is concluded or withdrawn, the request names no material, or it was already recorded
    (a redelivered event). The case is {"status", "rectification"}; returns the new rectification."""
    codes = [c for c in request.get("material_codes", []) if c]
    if case["status"] not in OPEN or not codes:
        return None
    current = case.get("rectification") or {}
    requests = list(current.get("requests", [])) if case["status"] == RECTIFYING else []
    key = (request.get("item_code", ""), request.get("department_code", ""), tuple(sorted(codes)))
    if any((r["item_code"], r["department_code"], tuple(sorted(r["material_codes"]))) == key for r in requests):
        return None
    requests.append({"item_code": request.get("item_code", ""), "department_code": request.get("department_code", ""),
                     "material_codes": codes, "reason": request.get("reason", ""), "at": request.get("at", ""),
                     "round": int(request.get("round") or 0)})
    union = []
    for r in requests:
        union += [c for c in r["material_codes"] if c not in union]
    resume = current.get("resume_status", SUBMITTED) if case["status"] == RECTIFYING else case["status"]
    return {"material_codes": union, "requests": requests, "resume_status": resume}


def check_owner(case_applicant_id, applicant_id, verb):
    """Only the case's own applicant may `verb` it."""
    if not applicant_id:
        raise InvalidArgument(f"name the applicant who wants to {verb} the case (applicant_id)")
    if applicant_id != case_applicant_id:
        raise PermissionDenied(f"only the applicant of the case may {verb} it")


def check_supplement(status, rectification, codes):
    """The materials handed in must be exactly those the rectification named."""
    if status != RECTIFYING:
        raise FailedPrecondition(f"the case is {status.removeprefix('CASE_STATUS_')}, not waiting for materials "
                                 "(RECTIFYING); nothing to supplement")
    named = list((rectification or {}).get("material_codes", []))
    duplicated = sorted({c for c in codes if codes.count(c) > 1})
    if duplicated:
        raise InvalidArgument(f"material {', '.join(duplicated)} is handed in more than once")
    unasked = [c for c in codes if c not in named]
    if unasked:
        raise InvalidArgument(f"the rectification did not ask for {', '.join(unasked)}; "
                              f"hand in only {', '.join(named)}")
    missing = [c for c in named if c not in codes]
    if missing:
        raise FailedPrecondition(f"the rectification asks for {', '.join(missing)} as well; hand in all of "
                                 f"{', '.join(named)} together")


def check_withdraw(status, reason):
    if len(reason or "") > 500:
        raise InvalidArgument("keep the reason for withdrawing under 500 characters")
    if status not in OPEN:
        raise FailedPrecondition(f"the case is {status.removeprefix('CASE_STATUS_')} already; only a case not yet "
                                 "concluded can be withdrawn")


def check_applicant_id(value):
    if not value:
        raise InvalidArgument("name the applicant (applicant_id)")
    if citizen_id_problem(value) and credit_code_problem(value):
        raise InvalidArgument(f"applicant_id {mask_id(value)} is neither a citizen ID number nor a credit code: "
                              f"{citizen_id_problem(value)}")


def page_size(requested):
    """ListCases' page size: 0 asks for the default (20), at most 100."""
    return paging.page_size(requested, 20, 100)


def manifest(case_no, materials):
    """The case's list of materials kept under cases/<case_no>/ (the bytes lie once, by content)."""
    return {"case_no": case_no,
            "materials": [{"material_code": m["material_code"], "name": m.get("name", ""),
                           "sha256": m.get("sha256", ""), "size": m.get("size", 0),
                           "content_type": m.get("content_type", ""), "object_key": m.get("object_key", ""),
                           "license_id": m.get("license_id", "")} for m in materials]}


def is_sha256(value):
    """Whether `value` is a sha256 as hex (64 lower-case hex digits)."""
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def content_key(sha256):
    return f"content/sha256/{sha256}"


def today(now=None):
    """The day in China (UTC+8) at `now`, an aware datetime (by default: the present)."""
    return china.day_of(now) if now is not None else china.today()


# What a material may be: scans as PDF, PNG or JPEG. Anything else (archives, executables, text,
# unknown binary) is refused, whatever its name says.
ALLOWED_TYPES = ("application/pdf", "image/png", "image/jpeg")
SNIFF_BYTES = 16
_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "application/x-pdf": "application/pdf"}
_GENERIC = ("", "application/octet-stream", "binary/octet-stream")


def check_content_type(sniffed, declared=""):
    """The type from the bytes must be one materials may have, and must not contradict a specific
    type the client declared."""
    if sniffed not in ALLOWED_TYPES:
        raise InvalidArgument(f"the file's content is {sniffed}, which is not accepted for a material; "
                              "upload a PDF, PNG or JPEG scan")
    declared = (declared or "").split(";")[0].strip().lower()
    declared = _ALIASES.get(declared, declared)
    if declared not in _GENERIC and declared != sniffed:
        raise InvalidArgument(f"the file was declared {declared} but its content is {sniffed}")


_MAGIC = [(b"%PDF-", "application/pdf"), (b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"),
          (b"GIF8", "image/gif"), (b"PK\x03\x04", "application/zip"),
          (b"MZ", "application/x-msdownload"), (b"\x7fELF", "application/x-executable")]


def sniff_content_type(head):
    """The type of a file from its first bytes, not from its name."""
    for magic, ctype in _MAGIC:
        if head.startswith(magic):
            return ctype
    try:  # the head may end inside a multi-byte character
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        return "text/plain"
    except UnicodeDecodeError:
        return "application/octet-stream"


# --- the departments that hold a task in a case, and what their officers may read ---------------------

@dataclasses.dataclass(frozen=True)
class TaskHolder:
    """A department, in a region, that joint_review gave a task in the case (task_assigned): its
    officers (the token's department and region, both exactly) may read the case and its materials.
    Kept once the task is decided or closed: the officer may still need to see what they decided on."""
    department_code: str
    region_code: str


def check_task_holder(holder, case_no=""):
    if not holder.department_code or not holder.region_code:
        raise InvalidArgument(f"a task of case {case_no[:64]} must name its department and region "
                              f"(got {holder.department_code[:64]!r}, {holder.region_code[:12]!r})")


def with_holders(holders, added):
    """The case's task holders with those of `added` it lacks, in order, or None when it has them
    all already (an assignment redelivered, another item of the same department, a task assigned
    again after 补正)."""
    new = [h for h in dict.fromkeys(added) if h not in holders]
    return [*holders, *new] if new else None


def holds_task(case, department_code, region_code):
    """Whether the department, in that region, holds a task in the case."""
    return bool(department_code) and bool(region_code) and \
        TaskHolder(department_code, region_code) in (case.task_holders or ())


class MaterialDamaged(DomainError):
    """The stored bytes of a material no longer match the checksum or size kept since its upload."""
    code = "DATA_LOSS"


@dataclasses.dataclass(frozen=True)
class MaterialFile:
    """A material of a case as a file handed in: where its bytes lie (by content) and what they are."""
    material_code: str
    name: str
    object_key: str
    sha256: str
    size: int
    content_type: str


def check_material_code(material_code):
    if not material_code:
        raise InvalidArgument("name the material to read (material_code)",
                              violations=[FieldViolation("material_code", "missing", "请填写材料代码。", "REQUIRED")])


def material_file(case, material_code):
    """The file of the case's material `material_code` (the latest handed in, after a 补正). A
    material the case does not have is NotFound; one a licence stands in for has no file."""
    ref = next((m for m in case.materials if m.get("material_code") == material_code), None)
    if ref is None:
        raise NotFound(f"case {case.case_no} has no material {material_code[:64]!r}")
    if not ref.get("object_key"):
        licence = ref.get("license_id", "")
        raise FailedPrecondition(f"material {material_code} of case {case.case_no} was not handed in as a file"
                                 + (f": licence {licence} stands in for it; read the licence from elicense"
                                    if licence else ""),
                                 zh="该材料以电子证照替代，未提交文件，请查阅相应电子证照。")
    return MaterialFile(material_code=material_code, name=ref.get("name", ""), object_key=ref["object_key"],
                        sha256=ref.get("sha256", ""), size=int(ref.get("size") or 0),
                        content_type=ref.get("content_type", ""))


def check_material_bytes(material, size, sha256):
    """The bytes read back are those handed in: their size and sha256 as kept since the upload."""
    if size != material.size or sha256 != material.sha256:
        raise MaterialDamaged(f"the stored file of material {material.material_code} does not match what was handed "
                              f"in ({size} bytes read, {material.size} kept; sha256 "
                              f"{'differs' if sha256 != material.sha256 else 'matches'}); discard what arrived",
                              zh="材料文件已损坏，请联系窗口工作人员处理。")


# --- the case and the upload, as the handlers and the store exchange them ----------------------------

@dataclasses.dataclass(frozen=True)
class Upload:
    """One material as uploaded: the bytes lie once, by content (object_key), however many uploads
    carry them."""
    upload_id: str
    applicant_id: str
    material_code: str
    sha256: str
    size: int
    object_key: str
    file_name: str = ""
    content_type: str = ""
    created_at: datetime.datetime | None = None


@dataclasses.dataclass(frozen=True)
class HistoryEntry:
    """One line of a case's history: the status it moved to (for a note that changes nothing, the
    status it kept: `note_only`), when (RFC 3339) and why."""
    status: CaseStatus
    at: str
    note: str
    note_only: bool = False


@dataclasses.dataclass
class Case:
    """A case (办件). `rectification` (while RECTIFYING) is {material_codes, requests,
    resume_status}; `noted` the keys of the events already recorded on it; `task_holders` the
    departments (each in its region) joint_review gave a task in it; `version` counts its
    saved changes: a change is saved only while the stored case still has the version it was
    decided on."""
    case_no: str
    package_code: str
    package_version: int
    region_code: str
    applicant: dict
    status: CaseStatus
    submitted_at: datetime.datetime
    form: dict = dataclasses.field(default_factory=dict)
    materials: list = dataclasses.field(default_factory=list)
    delivery: dict = dataclasses.field(default_factory=dict)
    situations: dict = dataclasses.field(default_factory=dict)
    parties: list = dataclasses.field(default_factory=list)
    history: list = dataclasses.field(default_factory=list)
    license_ids: list = dataclasses.field(default_factory=list)
    revoked_license_ids: list = dataclasses.field(default_factory=list)
    rectification: dict = dataclasses.field(default_factory=dict)
    rectification_rounds: dict = dataclasses.field(default_factory=dict)
    delivery_attempt: int = 0
    noted: list = dataclasses.field(default_factory=list)
    task_holders: list = dataclasses.field(default_factory=list)  # TaskHolder: who holds a task in the case
    idempotency_key: str | None = None
    request_hash: str | None = None
    version: int = 0

    def changed(self, status, note, at, note_only=False, **fields):
        """This case after one change: `status`, a history entry saying why, and `fields` replaced."""
        entry = HistoryEntry(status=CaseStatus(status), at=at, note=note, note_only=note_only)
        return dataclasses.replace(self, status=CaseStatus(status), history=[*self.history, entry], **fields)

    def as_of(self, index):
        """The case as it was at entry `index` of its history: that entry's status, the history up
        to it; everything else as the case is now."""
        return dataclasses.replace(self, status=self.history[index].status, history=list(self.history[:index + 1]))


# --- what the other services report, as intake reads it (worker.py decodes each event into these) ----

@dataclasses.dataclass(frozen=True)
class CaseConcluded:
    case_no: str
    approved: bool = False
    reason: str = ""
    license_ids: tuple = ()


@dataclasses.dataclass(frozen=True)
class RectificationRequested:
    case_no: str
    item_code: str = ""
    department_code: str = ""
    material_codes: tuple = ()
    reason: str = ""
    round: int = 0  # 1 for the item's first rectification, 2 for the next…; 0: not counted


@dataclasses.dataclass(frozen=True)
class TaskAssigned:
    case_no: str
    item_code: str = ""
    department_code: str = ""
    region_code: str = ""


@dataclasses.dataclass(frozen=True)
class TasksAssigned:
    """The departments (each of its region) one change of the session gave tasks (tasks_assigned)."""
    case_no: str
    holders: tuple = ()  # TaskHolder


@dataclasses.dataclass(frozen=True)
class SessionOpened:
    case_no: str
    item_codes: tuple = ()
    department_codes: tuple = ()


@dataclasses.dataclass(frozen=True)
class TaskOverdue:
    case_no: str
    item_code: str = ""
    department_code: str = ""
    elapsed_days: int = 0
    limit_days: int = 0


@dataclasses.dataclass(frozen=True)
class SessionConcluded:
    case_no: str
    kind: str = ""  # REVIEW, INSPECTION, ACCEPTANCE
    passed: bool = False
    report_key: str = ""
    concluded_at: str = ""


@dataclasses.dataclass(frozen=True)
class SessionWithdrawn:
    case_no: str
    after_conclusion: bool = False
    overridden: str = ""  # after_conclusion: the conclusion made void, "approved" or "rejected"


@dataclasses.dataclass(frozen=True)
class DeliveryDispatched:
    case_no: str
    attempt: int = 1
    by_mail: bool = False
    carrier: str = ""
    tracking_number: str = ""


@dataclasses.dataclass(frozen=True)
class DeliveryReadyForPickup:
    case_no: str


@dataclasses.dataclass(frozen=True)
class DeliveryFailed:
    case_no: str
    attempt: int = 1
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class DeliveryCompleted:
    case_no: str
    attempt: int = 1


@dataclasses.dataclass(frozen=True)
class EvaluationReceived:
    case_no: str


@dataclasses.dataclass(frozen=True)
class LicenseRevoked:
    case_no: str
    license_id: str = ""
    reason: str = ""
    superseded_by: str = ""  # the licence that replaced it (the buyer's certificate after a transfer)


@dataclasses.dataclass(frozen=True)
class BadReviewOpened:
    case_no: str
    channel: str = ""
    department_code: str = ""
    deadline: str = ""  # YYYY-MM-DD


@dataclasses.dataclass(frozen=True)
class BadReviewClosed:
    case_no: str
    channel: str = ""
    department_code: str = ""
    on_time: bool = False
    result: str = ""
