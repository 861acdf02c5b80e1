"""Intake rules: who may apply, what a submission must carry, how case numbers are built, and how a
case's status moves. Pure functions over plain values."""
import codecs
import datetime
import hashlib
import json
import re

from services.common.address import check_address
from services.common.errors import AlreadyExists, FailedPrecondition, FieldViolation, InvalidArgument, PermissionDenied
from services.common.ids import citizen_id_problem, credit_code_problem

SUBMITTED, IN_REVIEW, APPROVED, REJECTED, DELIVERED, RATED, RECTIFYING, WITHDRAWN, DELIVERY_FAILED = (
    "CASE_STATUS_SUBMITTED", "CASE_STATUS_IN_REVIEW", "CASE_STATUS_APPROVED", "CASE_STATUS_REJECTED",
    "CASE_STATUS_DELIVERED", "CASE_STATUS_RATED", "CASE_STATUS_RECTIFYING", "CASE_STATUS_WITHDRAWN",
    "CASE_STATUS_DELIVERY_FAILED")

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


def check_materials(package, submitted_codes, licences=()):
    """Every material an item of the package needs must be handed in, unless a valid licence the
    applicant holds stands in for it (减材料: a material whose license_type_code is the type of one
    of `licences`). Returns {material code: licence} for the materials a licence stands in for."""
    names = {m["code"]: m["name"] for m in package.get("materials", [])}
    needed = []
    for item in package["items"]:
        for code in item.get("material_codes", []):
            if code not in needed:
                needed.append(code)
    covered = licences_standing_in(package, [c for c in needed if c not in submitted_codes], licences)
    missing = [c for c in needed if c not in submitted_codes and c not in covered]
    if missing:
        listed = "、".join(f"{names.get(c, c)} ({c})" for c in missing)
        raise FailedPrecondition(f"required materials are missing: {listed}; upload them and submit again")
    unknown = [c for c in submitted_codes if c not in names]
    if unknown:
        raise InvalidArgument(f"package {package['code']} asks for no material {', '.join(unknown)}")
    return covered


def licences_standing_in(package, codes, licences):
    """{material code: licence} for each of `codes` whose licence type the applicant holds; of
    several licences of one type, the most recently valid one."""
    by_type = {}
    for lic in sorted(licences or (), key=lambda l: l.get("valid_from", "")):
        if lic.get("type_code"):
            by_type[lic["type_code"]] = lic
    covered = {}
    for m in package.get("materials", []):
        lic = by_type.get(m.get("license_type_code") or "")
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


# --- the one form (一表申请) --------------------------------------------------------------------

_PHONE_RE = re.compile(r"1[3-9][0-9]{9}")
_REGION_RE = re.compile(r"[1-8][0-9]{5}")
_BANK_RE = re.compile(r"[0-9]{12,30}")
_NUMBER_RE = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def _validator_problem(validator, value):
    if validator == "citizen_id":
        return citizen_id_problem(value)
    if validator == "credit_code":
        return credit_code_problem(value)
    if validator == "phone" and not _PHONE_RE.fullmatch(value):
        return "a mainland mobile number has 11 digits and starts with 13-19"
    if validator == "region" and not _REGION_RE.fullmatch(value):
        return "a region code is 6 digits (GB/T 2260, e.g. 440106)"
    if validator == "bank_account" and not _BANK_RE.fullmatch(value):
        return "a bank account number has 12 to 30 digits"
    return None


def _type_problem(field, value):
    kind = field.get("type") or "string"
    if kind == "date":
        try:
            datetime.date.fromisoformat(value)
        except ValueError:
            return "is not a date (YYYY-MM-DD)"
        if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
            return "is not a date (YYYY-MM-DD)"
    elif kind == "number" and not _NUMBER_RE.fullmatch(value):
        return "is not a number"
    elif kind == "bool" and value not in ("true", "false"):
        return "must be true or false"
    elif kind == "choice" and value not in (field.get("choices") or []):
        return f"must be one of {'、'.join(field.get('choices') or [])}"
    return None


def check_form(form_fields, form):
    """The form against the package's merged form: required fields present, each value of its type,
    its validator and its choices. Fields the package does not define are left alone; with no
    form_fields there is nothing to check."""
    form = form or {}
    for field in form_fields or ():
        key = field["key"]
        label = f"{field.get('label') or key} ({key})"
        zh_label = f"“{field.get('label') or key}”"
        path = f"form[{json.dumps(key, ensure_ascii=False)}]"
        value = (form.get(key) or "").strip()
        if not value:
            if field.get("required"):
                raise _form_error(path, f"form: {label} is required", f"表单{zh_label}为必填项，请填写。", "REQUIRED")
            continue
        problem = _type_problem(field, value)
        if problem:
            shown = repr(value if len(value) <= 32 else value[:32] + "…")
            raise _form_error(path, f"form: {label} {problem}: {shown}", f"表单{zh_label}的格式不正确，请核对后重新填写。",
                              "WRONG_TYPE")
        problem = _validator_problem(field.get("validator") or "", value)
        if problem:
            raise _form_error(path, f"form: {label}: {problem}", f"表单{zh_label}填写有误：{_ZH_VALIDATOR.get(field.get('validator'), '请核对后重新填写')}。",
                              "INVALID_VALUE")


_ZH_VALIDATOR = {"citizen_id": "请填写有效的居民身份证号码", "credit_code": "请填写有效的统一社会信用代码",
                 "phone": "请填写 11 位手机号码", "region": "请填写 6 位行政区划代码",
                 "bank_account": "请填写 12 至 30 位银行账号"}


def _form_error(path, message, zh, reason):
    return InvalidArgument(message, violations=[FieldViolation(path, message.removeprefix("form: "), zh, reason)], zh=zh)


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
    if attempt < last_attempt or status not in OPEN + (APPROVED, DELIVERY_FAILED):
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
        raise InvalidArgument(f"applicant_id {value!r} is neither a citizen ID number nor a credit code: "
                              f"{citizen_id_problem(value)}")


def page_size(requested, default=20, most=100):
    if requested < 0:
        raise InvalidArgument("page_size cannot be negative")
    return min(requested or default, most)


def manifest(case_no, materials):
    """The case's list of materials kept under cases/<case_no>/ (the bytes lie once, by content)."""
    return {"case_no": case_no,
            "materials": [{"material_code": m["material_code"], "name": m.get("name", ""),
                           "sha256": m.get("sha256", ""), "size": m.get("size", 0),
                           "content_type": m.get("content_type", ""), "object_key": m.get("object_key", ""),
                           "license_id": m.get("license_id", "")} for m in materials]}


def content_key(sha256):
    return f"content/sha256/{sha256}"


def today():
    return datetime.datetime.now(datetime.timezone(datetime.timedelta(hours=8))).date()


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
