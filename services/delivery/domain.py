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
import enum
import hmac
import re
import secrets
from dataclasses import dataclass, field

from services.common.errors import FailedPrecondition, InvalidArgument, PermissionDenied


class Status(enum.StrEnum):
    """Where a delivery stands."""
    PREPARED = "PREPARED"
    DISPATCHED = "DISPATCHED"
    COMPLETED = "COMPLETED"
    READY_FOR_PICKUP = "READY_FOR_PICKUP"  # WINDOW: waiting at the window for the applicant
    FAILED = "FAILED"                      # cannot be delivered as asked
    CANCELLED = "CANCELLED"                # the case was withdrawn after its conclusion


class Channel(enum.StrEnum):
    """How the results reach the applicant."""
    UNSPECIFIED = "UNSPECIFIED"  # none chosen (or a cancelled delivery made before its case_concluded)
    ELECTRONIC = "ELECTRONIC"
    WINDOW = "WINDOW"
    MAIL = "MAIL"


PREPARED, DISPATCHED, COMPLETED = Status.PREPARED, Status.DISPATCHED, Status.COMPLETED
READY_FOR_PICKUP, FAILED, CANCELLED = Status.READY_FOR_PICKUP, Status.FAILED, Status.CANCELLED
ELECTRONIC, WINDOW, MAIL = Channel.ELECTRONIC, Channel.WINDOW, Channel.MAIL

# On the wire: the numbers of onething.delivery.v1.DeliveryStatus and onething.common.v1.DeliveryChannel
# (api.py and the events encode with them, worker.py decodes with them).
STATUS_NUMBERS = {PREPARED: 1, DISPATCHED: 2, COMPLETED: 3, READY_FOR_PICKUP: 4, FAILED: 5, CANCELLED: 6}
CHANNEL_NUMBERS = {Channel.UNSPECIFIED: 0, ELECTRONIC: 1, WINDOW: 2, MAIL: 3}
_CHANNEL_OF_NUMBER = {n: c for c, n in CHANNEL_NUMBERS.items()}

# In the store: the strings the deliveries collection has always held. Written out here, never
# derived from the proto names, so renaming a proto enum value cannot make stored data unreadable.
STORED_STATUSES = {PREPARED: "DELIVERY_STATUS_PREPARED", DISPATCHED: "DELIVERY_STATUS_DISPATCHED",
                   COMPLETED: "DELIVERY_STATUS_COMPLETED", READY_FOR_PICKUP: "DELIVERY_STATUS_READY_FOR_PICKUP",
                   FAILED: "DELIVERY_STATUS_FAILED", CANCELLED: "DELIVERY_STATUS_CANCELLED"}
STORED_CHANNELS = {Channel.UNSPECIFIED: "DELIVERY_CHANNEL_UNSPECIFIED", ELECTRONIC: "DELIVERY_CHANNEL_ELECTRONIC",
                   WINDOW: "DELIVERY_CHANNEL_WINDOW", MAIL: "DELIVERY_CHANNEL_MAIL"}
_STATUS_OF_STORED = {s: status for status, s in STORED_STATUSES.items()}
_CHANNEL_OF_STORED = {s: channel for channel, s in STORED_CHANNELS.items()}


def channel_of_number(number):
    """The channel a case_concluded event names; a number this code does not know is no channel."""
    return _CHANNEL_OF_NUMBER.get(number, Channel.UNSPECIFIED)


def status_of_stored(text):
    try:
        return _STATUS_OF_STORED[text]
    except KeyError:
        raise ValueError(f"{text!r} is not a stored delivery status") from None


def channel_of_stored(text):
    try:
        return _CHANNEL_OF_STORED[text]
    except KeyError:
        raise ValueError(f"{text!r} is not a stored delivery channel") from None


# -- what other services report, as delivery needs it (decoded from their events in worker.py) --

@dataclass(frozen=True)
class ResultDocument:
    """One licence of a concluded case, as elicense issued it: where its signed document is."""
    license_id: str
    item_code: str = ""
    type_code: str = ""
    document_key: str = ""  # empty: not known to joint_review (a session older than the keys)


@dataclass(frozen=True)
class CaseConcluded:
    """joint_review concluded a case; an approved one is delivered by the channel the applicant chose.
    `results`: its licences' documents (one per licence id); events sent before joint_review gave
    them have none."""
    case_no: str
    approved: bool
    channel: Channel = Channel.UNSPECIFIED
    address: dict = field(default_factory=dict, hash=False)  # MAIL: as the applicant gave it
    license_ids: tuple = ()
    applicant_id: str = ""
    region_code: str = ""
    package_code: str = ""
    lead_department: str = ""
    results: tuple[ResultDocument, ...] = ()

    def document_key(self, license_id):
        """The document key the event gives for a licence; "" when it gives none (ask elicense)."""
        return next((r.document_key for r in self.results if r.license_id == license_id and r.document_key), "")


@dataclass(frozen=True)
class SessionWithdrawn:
    """joint_review withdrew a case; `after_conclusion`: its conclusion is void, nothing is delivered."""
    case_no: str
    region_code: str = ""
    after_conclusion: bool = False


@dataclass(frozen=True)
class LicenseRevoked:
    """elicense revoked a licence: no link to it is given any more."""
    license_id: str
    case_no: str = ""
    reason: str = ""

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
# On the wire: the numbers of onething.delivery.v1.Carrier (api.py decodes requests with them, api.py and
# the events encode with them). In the store a carrier is its short name, the keys of CARRIERS, as always.
CARRIER_NUMBERS = {"EMS": 1, "SF": 2, "JD": 3, "ZTO": 4, "YTO": 5, "STO": 6, "YUNDA": 7}
_CARRIER_OF_NUMBER = {n: c for c, n in CARRIER_NUMBERS.items()}
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
    total = sum(int(d) * w for d, w in zip(serial8, _S10_WEIGHTS, strict=False))
    check = 11 - total % 11
    return {10: 0, 11: 5}.get(check, check)


def carrier_of_number(number):
    """The carrier a request names, as normalise_tracking takes it: its short name; "" for none
    (CARRIER_UNSPECIFIED); a number no carrier has stays that number, as text, so normalise_tracking
    refuses it like any other unknown carrier ("unknown carrier '99'; use one of EMS, SF, ...")."""
    if not number:
        return ""
    return _CARRIER_OF_NUMBER.get(number, str(number))


def carrier_number(carrier):
    """A delivery's carrier (its short name, as stored) on the wire: 0 for none."""
    if not carrier:
        return 0
    try:
        return CARRIER_NUMBERS[carrier]
    except KeyError:
        raise ValueError(f"{carrier!r} is not a stored carrier") from None


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
                                 f"{delivery['channel']}, so it cannot be {action}")


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
                                 f"({delivery['status']}); only a failed "
                                 "delivery is sent again")
