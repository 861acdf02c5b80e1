"""Delivery (出件): how results reach the applicant, and the order its status moves in.

ELECTRONIC  PREPARED → DISPATCHED → COMPLETED           at once, when the time-limited links are issued
WINDOW      PREPARED → READY_FOR_PICKUP → COMPLETED     the clerk confirms pickup with the applicant's code
MAIL        PREPARED → DISPATCHED → COMPLETED           the clerk records the carrier and tracking number,
                                                        then the carrier reports it signed for
MAIL        PREPARED → FAILED                           the mailing address is not valid
MAIL        DISPATCHED → FAILED                         the carrier brings the parcel back (RecordUndeliverable)
MAIL        FAILED → DISPATCHED → COMPLETED             sent again to a corrected address (Redispatch), attempt + 1
any         … → CANCELLED                               the case was withdrawn after its conclusion (session_withdrawn)
"""
import hmac
import re
import secrets

from services.common.errors import FailedPrecondition, InvalidArgument, PermissionDenied

PREPARED, DISPATCHED, COMPLETED = "DELIVERY_STATUS_PREPARED", "DELIVERY_STATUS_DISPATCHED", "DELIVERY_STATUS_COMPLETED"
READY_FOR_PICKUP, FAILED = "DELIVERY_STATUS_READY_FOR_PICKUP", "DELIVERY_STATUS_FAILED"
CANCELLED = "DELIVERY_STATUS_CANCELLED"
ELECTRONIC, WINDOW, MAIL = "DELIVERY_CHANNEL_ELECTRONIC", "DELIVERY_CHANNEL_WINDOW", "DELIVERY_CHANNEL_MAIL"

PICKUP_CODE_DIGITS = 6

# Tracking numbers by carrier. EMS: 13 digits (domestic) or UPU S10 (2 letters, 8 digits, a check
# digit, 2 letters, e.g. EA123456785CN, check digit verified); SF: "SF" and 12 to 13 digits (or 12
# bare digits, older waybills); the rest: 10 to 20 letters and digits.
_GENERIC = re.compile(r"[A-Z0-9]{10,20}")
CARRIERS = {
    "EMS": re.compile(r"[0-9]{13}|[A-Z]{2}[0-9]{9}[A-Z]{2}"),
    "SF": re.compile(r"SF[0-9]{12,13}|[0-9]{12}"),
    "JD": re.compile(r"JD[A-Z0-9]{10,16}"),
    "ZTO": _GENERIC,
    "YTO": _GENERIC,
    "STO": _GENERIC,
    "YUNDA": _GENERIC,
}
_S10 = re.compile(r"[A-Z]{2}([0-9]{8})([0-9])[A-Z]{2}")
_S10_WEIGHTS = (8, 6, 4, 2, 3, 5, 9, 7)


def steps_for(channel):
    """Statuses a new delivery passes through at once, the last one being where it waits."""
    if channel == ELECTRONIC:
        return [PREPARED, DISPATCHED, COMPLETED]
    if channel == WINDOW:
        return [PREPARED, READY_FOR_PICKUP]
    return [PREPARED]  # MAIL waits for the clerk to hand the parcel to the carrier


def new_pickup_code():
    return f"{secrets.randbelow(10 ** PICKUP_CODE_DIGITS):0{PICKUP_CODE_DIGITS}d}"


def s10_check_digit(serial8):
    """UPU S10 check digit of the 8-digit serial number."""
    total = sum(int(d) * w for d, w in zip(serial8, _S10_WEIGHTS))
    check = 11 - total % 11
    return {10: 0, 11: 5}.get(check, check)


def normalise_tracking(carrier, tracking_number):
    """(carrier, tracking number) upper-cased and checked; InvalidArgument naming what is wrong."""
    carrier = (carrier or "").strip().upper()
    number = (tracking_number or "").strip().upper().replace(" ", "")
    if carrier not in CARRIERS:
        raise InvalidArgument(f"unknown carrier {carrier!r}; use one of {', '.join(CARRIERS)}")
    if not CARRIERS[carrier].fullmatch(number):
        raise InvalidArgument(f"{number!r} is not a {carrier} tracking number")
    s10 = _S10.fullmatch(number)
    if carrier == "EMS" and s10 and s10_check_digit(s10.group(1)) != int(s10.group(2)):
        raise InvalidArgument(f"the check digit of tracking number {number} is wrong "
                              f"(expected {s10_check_digit(s10.group(1))})")
    return carrier, number


def _require(delivery, channel, action):
    if delivery["status"] == CANCELLED:
        raise FailedPrecondition(f"the delivery of case {delivery['case_no']} is cancelled (the case was "
                                 "withdrawn); nothing is delivered")
    if delivery["channel"] != channel:
        raise FailedPrecondition(f"case {delivery['case_no']} is delivered by "
                                 f"{delivery['channel'].replace('DELIVERY_CHANNEL_', '')}, so it cannot be {action}")


def check_pickup(delivery, code):
    """The clerk's pickup confirmation may go ahead (raises otherwise)."""
    _require(delivery, WINDOW, "picked up at the window")
    if delivery["status"] == COMPLETED:
        raise FailedPrecondition(f"the results of case {delivery['case_no']} have already been picked up")
    if delivery["status"] != READY_FOR_PICKUP:
        raise FailedPrecondition(f"the results of case {delivery['case_no']} are not ready for pickup")
    stored = delivery.get("pickup_code") or ""
    if not stored or not hmac.compare_digest((code or "").strip().encode(), stored.encode()):
        raise PermissionDenied(f"the pickup code does not match case {delivery['case_no']}")


def check_dispatch(delivery):
    _require(delivery, MAIL, "dispatched by mail")
    if delivery["status"] == FAILED:
        raise FailedPrecondition(f"the delivery of case {delivery['case_no']} failed: "
                                 f"{delivery.get('failure_reason', '')}")
    if delivery["status"] != PREPARED:
        raise FailedPrecondition(f"case {delivery['case_no']} has already been dispatched "
                                 f"({delivery.get('carrier', '')} {delivery.get('tracking_number', '')})")


def check_delivered(delivery, tracking_number):
    _require(delivery, MAIL, "recorded as delivered by mail")
    if delivery["status"] == COMPLETED:
        raise FailedPrecondition(f"the parcel of case {delivery['case_no']} has already been delivered")
    if delivery["status"] != DISPATCHED:
        raise FailedPrecondition(f"the parcel of case {delivery['case_no']} has not been dispatched yet")
    number = (tracking_number or "").strip().upper().replace(" ", "")
    if number != delivery.get("tracking_number"):
        raise InvalidArgument(f"tracking number {number!r} is not the one recorded for case {delivery['case_no']}")


def check_undeliverable(delivery, tracking_number):
    """The carrier may report a parcel undeliverable only once it has it (raises otherwise)."""
    _require(delivery, MAIL, "reported undeliverable by mail")
    if delivery["status"] == COMPLETED:
        raise FailedPrecondition(f"the parcel of case {delivery['case_no']} has already been delivered")
    if delivery["status"] == FAILED:
        raise FailedPrecondition(f"the delivery of case {delivery['case_no']} has already failed: "
                                 f"{delivery.get('failure_reason', '')}")
    if delivery["status"] != DISPATCHED:
        raise FailedPrecondition(f"the parcel of case {delivery['case_no']} has not been dispatched yet")
    number = (tracking_number or "").strip().upper().replace(" ", "")
    if number != delivery.get("tracking_number"):
        raise InvalidArgument(f"tracking number {number!r} is not the one recorded for case {delivery['case_no']}")


def check_redispatch(delivery):
    """Only a failed delivery is sent again (raises otherwise)."""
    if delivery["status"] == CANCELLED:
        raise FailedPrecondition(f"the delivery of case {delivery['case_no']} is cancelled (the case was "
                                 "withdrawn); nothing is delivered")
    if delivery["status"] != FAILED:
        raise FailedPrecondition(f"the delivery of case {delivery['case_no']} has not failed "
                                 f"({delivery['status'].removeprefix('DELIVERY_STATUS_')}); only a failed "
                                 "delivery is sent again")
