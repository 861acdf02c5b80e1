"""The contracts' typed values and intake's domain values, mapped once each way: a moment
(google.protobuf.Timestamp) and the RFC 3339 string the domain keeps (a history entry's `at`, a
rectification request's `at`) or the datetime it keeps (`submitted_at`); a calendar day
(google.type.Date) and "YYYY-MM-DD"; the enums of the events intake reads and the words the domain
keeps for them (explicit tables, never by name). An unset message or UNSPECIFIED is "" in the
domain and "" is unset in a message, so stored cases read as they always did. The moments and
days are services.common.wire's conversions; here they are refused by name (InvalidArgument).

api.py encodes a case's moments with `timestamp`; worker.py decodes the other services' events with
`iso`, `day` and the `*_WORDS` tables."""
import datetime
import logging

from onething.delivery.v1 import delivery_pb2
from onething.evaluation.v1 import evaluation_pb2
from onething.joint_review.v1 import events_pb2 as review_events
from onething.joint_review.v1 import joint_review_pb2
from services.common import wire
from services.common.errors import InvalidArgument

log = logging.getLogger(__name__)

# --- moments (services.common.wire) --------------------------------------------------------------


def timestamp(moment, what="moment"):
    """`moment` (an RFC 3339 string as the domain keeps it, or a datetime: naive ones, as MongoDB
    gives them back, are UTC) as a Timestamp; None or "" is None (the field stays unset). A string
    that is no moment is InvalidArgument."""
    try:
        return wire.timestamp(moment)
    except ValueError:
        if not isinstance(moment, str | datetime.datetime):
            raise InvalidArgument(f"{what} must be a moment, not {type(moment).__name__}") from None
        raise InvalidArgument(f"{what} must be an RFC 3339 moment (2026-11-26T10:00:00+08:00), "
                              f"not {str(moment)[:40]!r}") from None


def shown_timestamp(moment, what="moment"):
    """`timestamp` for what the api shows of a stored case: a stored value that is no moment (never
    written by intake) leaves the field unset, logged, rather than failing the whole case."""
    try:
        return timestamp(moment, what)
    except InvalidArgument:
        log.warning("%s %r is not an RFC 3339 moment: sent unset", what, str(moment)[:40])
        return None


def iso(message, field):
    """The Timestamp `field` of `message` as the RFC 3339 string the domain keeps (UTC, as
    datetime.isoformat writes it: "2026-11-26T02:00:00+00:00"); unset: ""."""
    ts = wire.field(message, field)
    try:
        return wire.iso(ts)
    except ValueError:
        raise InvalidArgument(f"{field} is out of range (seconds {ts.seconds}, nanos {ts.nanos}): "
                              "a moment between 0001-01-01 and 9999-12-31") from None


# --- calendar days (services.common.wire) ----------------------------------------------------------


def date(text, what="day"):
    """"YYYY-MM-DD" (or a datetime.date) as a google.type.Date; None or "" is None (unset)."""
    try:
        return wire.date(text)
    except ValueError:
        raise InvalidArgument(f"{what} must be a day as YYYY-MM-DD, not {str(text)[:40]!r}") from None


def day(message, field):
    """The google.type.Date `field` of `message` as "YYYY-MM-DD"; unset (or all zero): "". A
    partial or impossible day (month 13, 30 February, no year) is InvalidArgument."""
    d = wire.field(message, field)
    try:
        return wire.day(d)
    except ValueError:
        raise InvalidArgument(f"{field} must be a whole calendar day, not year {d.year} month {d.month} "
                              f"day {d.day}") from None


# --- enums: the number in the contract -> the word the domain keeps -------------------------------

# joint_review SessionConcluded.kind -> domain.SessionConcluded.kind
SESSION_KIND_WORDS = {
    review_events.SESSION_KIND_INSPECTION: "INSPECTION",
    review_events.SESSION_KIND_REVIEW: "REVIEW",
    review_events.SESSION_KIND_ACCEPTANCE: "ACCEPTANCE",
}

# joint_review SessionWithdrawn.overridden (a SessionStatus) -> domain.SessionWithdrawn.overridden:
# the conclusion made void
OVERRIDDEN_WORDS = {
    joint_review_pb2.SESSION_STATUS_APPROVED: "approved",
    joint_review_pb2.SESSION_STATUS_REJECTED: "rejected",
}

# evaluation's Channel (BadReviewOpened/Closed.channel) -> the domain's "online" / "window"
CHANNEL_WORDS = {
    evaluation_pb2.CHANNEL_ONLINE: "online",
    evaluation_pb2.CHANNEL_WINDOW: "window",
}

# delivery's Carrier (DeliveryDispatched.carrier) -> the carrier's short name in the case's history
CARRIER_WORDS = {
    delivery_pb2.CARRIER_EMS: "EMS",
    delivery_pb2.CARRIER_SF: "SF",
    delivery_pb2.CARRIER_JD: "JD",
    delivery_pb2.CARRIER_ZTO: "ZTO",
    delivery_pb2.CARRIER_YTO: "YTO",
    delivery_pb2.CARRIER_STO: "STO",
    delivery_pb2.CARRIER_YUNDA: "YUNDA",
}


def word(table, number):
    """The domain's word for an enum `number`: "" for UNSPECIFIED and for a number this intake does
    not know (a newer sender's): the event still counts, without that word."""
    return table.get(number, "")


def number(table, text, what):
    """The enum number of the domain's word `text` ("" is 0, UNSPECIFIED); a word not in the
    table is InvalidArgument naming the words it may be."""
    if text == "":
        return 0
    for n, w in table.items():
        if w == text:
            return n
    raise InvalidArgument(f"{what} must be one of {', '.join(table.values())}, not {str(text)[:40]!r}")
