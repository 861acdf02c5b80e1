"""joint_review's values on the wire: the domain and the store keep moments as ISO 8601 strings
("2025-09-22T01:00:00+00:00"), days as "YYYY-MM-DD" and a few fixed sets as strings ("SCHEDULED",
"HEARING" …); the protos carry google.protobuf.Timestamp, google.type.Date and enums. Each is mapped
here once, in explicit tables, for api.py and the events the handlers build. An empty string is an
unset message (or UNSPECIFIED, 0) and back."""
import datetime

from onething.joint_review.v1 import events_pb2
from onething.joint_review.v1 import joint_review_pb2 as pb
from services.common import wire
from services.common.errors import InvalidArgument
from services.joint_review import domain


# moments (services.common.wire) ------------------------------------------------------------------------
def timestamp_of(iso):
    """The Timestamp of an ISO 8601 moment the domain keeps; None for "" (unset). A moment without
    an offset is taken as UTC; a stored string that is no moment at all is left unset, never guessed."""
    try:
        return wire.timestamp(iso)
    except ValueError:
        return None


def iso_of(ts, field, tz=datetime.UTC):
    """The ISO 8601 moment (in `tz`) of a request's Timestamp `field`; "" for None (the caller passes
    None when the request does not set it: HasField). A Timestamp out of its range is refused
    (InvalidArgument)."""
    try:
        return wire.iso(ts, tz)
    except ValueError:
        raise InvalidArgument(f"{field} must be a time between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z "
                              f"(seconds {ts.seconds}, nanos {ts.nanos} is not)") from None


# days (services.common.wire) ---------------------------------------------------------------------------
# the google.type.Date of a "YYYY-MM-DD" day (or a datetime.date); None for "" (unset)
date_of = wire.date


def day_of(date, field):
    """The "YYYY-MM-DD" of a request's google.type.Date `field`; "" when it is unset (all zero).
    A date that is no day of the calendar is refused (InvalidArgument)."""
    try:
        return wire.day(date)
    except ValueError:
        raise InvalidArgument(f"{field} must be a whole calendar day, not {date.year:04d}-{date.month:02d}-"
                              f"{date.day:02d}") from None


# fixed sets --------------------------------------------------------------------------------------------
def _reverse(mapping):
    return {v: k for k, v in mapping.items()}


# the inspection's "status" as the session keeps it
INSPECTION_STATUS_PROTO = {"SCHEDULED": pb.INSPECTION_STATUS_SCHEDULED, "DONE": pb.INSPECTION_STATUS_DONE}
# why an officer stops a clock (the clock's pause reasons, services/joint_review/clock.py)
CLOCK_PAUSE_REASON_PROTO = {"HEARING": pb.CLOCK_PAUSE_REASON_HEARING, "TESTING": pb.CLOCK_PAUSE_REASON_TESTING,
                            "EXPERT_INSPECTION": pb.CLOCK_PAUSE_REASON_EXPERT_INSPECTION}
# the kind of a concluded joint session (SessionConcluded)
SESSION_KIND_PROTO = {"INSPECTION": events_pb2.SESSION_KIND_INSPECTION, "REVIEW": events_pb2.SESSION_KIND_REVIEW,
                      "ACCEPTANCE": events_pb2.SESSION_KIND_ACCEPTANCE}
_CLOCK_PAUSE_REASON_OF_PROTO = _reverse(CLOCK_PAUSE_REASON_PROTO)


def inspection_status_number(status):
    """The InspectionStatus of the session's inspection "status"; UNSPECIFIED for "" (a stored word
    the table does not know is refused, never guessed: ValueError)."""
    if not status:
        return pb.INSPECTION_STATUS_UNSPECIFIED
    try:
        return INSPECTION_STATUS_PROTO[status]
    except KeyError:
        raise ValueError(f"a stored inspection holds status {status!r}, which is no inspection status") from None


def session_status_number(status):
    """A domain.SessionStatus as the protos' SessionStatus; UNSPECIFIED for none (withdrawn_after of
    a session withdrawn while open, overridden of such a withdrawal)."""
    return domain.SESSION_STATUS_PROTO[status] if status else pb.SESSION_STATUS_UNSPECIFIED


def session_kind_number(kind):
    return SESSION_KIND_PROTO[kind]


def clock_pause_reason(number, field="reason"):
    """The reason word the domain takes ("HEARING" …) of a request's ClockPauseReason; "" for
    UNSPECIFIED (which the domain refuses with its own message); a number the enum does not declare
    is refused (InvalidArgument)."""
    if number == pb.CLOCK_PAUSE_REASON_UNSPECIFIED:
        return ""
    try:
        return _CLOCK_PAUSE_REASON_OF_PROTO[number]
    except KeyError:
        names = ", ".join(pb.ClockPauseReason.Name(n) for n in CLOCK_PAUSE_REASON_PROTO.values())
        raise InvalidArgument(f"{field} must be one of {names}, not {number}") from None
