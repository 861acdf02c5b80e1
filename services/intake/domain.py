"""Intake rules: who may apply, what a submission must carry, how case numbers are built, and how a
case's status moves. Pure functions over plain values."""
import codecs
import datetime
import re

from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.ids import citizen_id_problem, credit_code_problem

SUBMITTED, IN_REVIEW, APPROVED, REJECTED, DELIVERED, RATED = (
    "CASE_STATUS_SUBMITTED", "CASE_STATUS_IN_REVIEW", "CASE_STATUS_APPROVED", "CASE_STATUS_REJECTED",
    "CASE_STATUS_DELIVERED", "CASE_STATUS_RATED")

# A status may only move forward along this order; an older event arriving late changes nothing.
_RANK = {SUBMITTED: 0, IN_REVIEW: 1, APPROVED: 2, REJECTED: 2, DELIVERED: 3, RATED: 4}

CHANNELS = ("DELIVERY_CHANNEL_ELECTRONIC", "DELIVERY_CHANNEL_WINDOW", "DELIVERY_CHANNEL_MAIL")


def check_applicant(applicant, audience):
    id_number = (applicant or {}).get("id_number", "")
    if not id_number:
        raise InvalidArgument("the applicant's ID number is missing")
    if not (applicant.get("name") or "").strip():
        raise InvalidArgument("the applicant's name is missing")
    problem = credit_code_problem(id_number) if audience == "AUDIENCE_ENTERPRISE" else citizen_id_problem(id_number)
    if problem:
        raise InvalidArgument(f"applicant: {problem}")


def check_delivery(delivery):
    channel = (delivery or {}).get("channel", "DELIVERY_CHANNEL_UNSPECIFIED")
    if channel not in CHANNELS:
        raise InvalidArgument("choose how results reach you: ELECTRONIC, WINDOW or MAIL")
    if channel == "DELIVERY_CHANNEL_MAIL" and not (delivery.get("address") or {}).get("line"):
        raise InvalidArgument("mail delivery needs a postal address")


def check_materials(package, submitted_codes):
    """Every material an item of the package needs must be handed in."""
    names = {m["code"]: m["name"] for m in package.get("materials", [])}
    needed = []
    for item in package["items"]:
        for code in item.get("material_codes", []):
            if code not in needed:
                needed.append(code)
    missing = [c for c in needed if c not in submitted_codes]
    if missing:
        listed = "、".join(f"{names.get(c, c)} ({c})" for c in missing)
        raise FailedPrecondition(f"required materials are missing: {listed}; upload them and submit again")
    unknown = [c for c in submitted_codes if c not in names]
    if unknown:
        raise InvalidArgument(f"package {package['code']} asks for no material {', '.join(unknown)}")


def implementing_code(region_code, package_code):
    """Stand-in for the GB/T 39554 implementing code until the catalog carries one per region."""
    return f"{region_code}{package_code}"


def case_number(prefix, day, sequence):
    return f"{prefix}{day:%Y%m%d}{sequence:04d}"


CASE_NO_RE = re.compile(r"[0-9A-Z]{6,40}")


def check_case_no(case_no):
    if not CASE_NO_RE.fullmatch(case_no or ""):
        raise InvalidArgument(f"{case_no!r} is not a case number")


def advance(current, new):
    """The status after `new` arrives, or None when it would move the case backwards."""
    if _RANK[new] <= _RANK[current]:
        return None
    return new


def today():
    return datetime.datetime.now(datetime.timezone(datetime.timedelta(hours=8))).date()


_MAGIC = [(b"%PDF-", "application/pdf"), (b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"),
          (b"GIF8", "image/gif"), (b"PK\x03\x04", "application/zip")]


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
