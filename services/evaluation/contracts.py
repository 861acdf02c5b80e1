"""The typed protobuf values of evaluation's contracts (api and events) and the plain values the
domain and the store keep, mapped in one place:

- a moment: an RFC 3339 / ISO 8601 string with its offset (as stored) <-> google.protobuf.Timestamp;
- a calendar day: "YYYY-MM-DD" (as stored) <-> google.type.Date;
- the rating channel: "online" / "window" (as stored) <-> onething.evaluation.v1.Channel, by an
  explicit table, so renaming a proto enum value cannot change what stored data means;
- a city's evaluation event -> the domain.RatingReport its province rolls up.

An empty string is an unset message (None here) or CHANNEL_UNSPECIFIED. A request value out of
range is refused with InvalidArgument."""
from onething.evaluation.v1 import evaluation_pb2, events_pb2
from services.common import wire
from services.common.errors import InvalidArgument
from services.common.events import from_payload
from services.evaluation import domain

# the channel as the domain and the store keep it <-> onething.evaluation.v1.Channel (0: none given)
CHANNEL_PROTO = {"online": evaluation_pb2.CHANNEL_ONLINE, "window": evaluation_pb2.CHANNEL_WINDOW}
_CHANNEL_BY_NUMBER = {v: k for k, v in CHANNEL_PROTO.items()}


def channel_from_proto(number, what="channel"):
    """The channel ("online" / "window") of a Channel number; "" for CHANNEL_UNSPECIFIED. A number
    the proto does not declare is refused."""
    if number == evaluation_pb2.CHANNEL_UNSPECIFIED:
        return ""
    try:
        return _CHANNEL_BY_NUMBER[number]
    except (KeyError, TypeError):
        names = ", ".join(evaluation_pb2.Channel.Name(n) for n in sorted(_CHANNEL_BY_NUMBER))
        raise InvalidArgument(f"{what} must be one of {names} (or unset), not {number!r}") from None


def channel_to_proto(text):
    """The Channel number of a channel as kept; CHANNEL_UNSPECIFIED for "" (none)."""
    if not text:
        return evaluation_pb2.CHANNEL_UNSPECIFIED
    return CHANNEL_PROTO[text]


def channel_name(text):
    """The Channel value's name, as an event's JSON payload carries it (e.g. "CHANNEL_ONLINE")."""
    return evaluation_pb2.Channel.Name(channel_to_proto(text))


# moments and days: services.common.wire's conversions


def timestamp_of(moment):
    """A Timestamp of an RFC 3339 string with an offset (or an aware datetime); None for ""/None.
    A moment without an offset is refused (ValueError): ambiguous."""
    return wire.timestamp(moment, naive_tz=None)


# the moment of a Timestamp as an ISO 8601 string in UTC ("...+00:00", as the store keeps moments); "" for None
iso_of = wire.iso
# a google.type.Date of a "YYYY-MM-DD" string (or a datetime.date); None for ""/None
date_of = wire.date


def day_of(date, what="date"):
    """The "YYYY-MM-DD" of a google.type.Date from a request; "" when it is unset (None, or every
    part 0). A date that is not a whole, real calendar day is refused."""
    if date is not None and (date.year, date.month, date.day) != (0, 0, 0):
        if not 1 <= date.year <= 9999:
            raise InvalidArgument(f"{what} must be a whole date: year 1 to 9999, not {date.year}")
        if not 1 <= date.month <= 12:
            raise InvalidArgument(f"{what} must be a whole date: month 1 to 12, not {date.month}")
    try:
        return wire.day(date)
    except ValueError:
        raise InvalidArgument(f"{what} {date.year:04d}-{date.month:02d}-{date.day} is not a real date "
                              f"(day {date.day} of month {date.month})") from None


def request_day(request, field):
    """The day a request's optional google.type.Date field holds ("" when unset)."""
    return day_of(wire.field(request, field), field)


# a city's evaluation events, as its province rolls them up: the message of each kind, and the moment
# whose day in Asia/Shanghai is the rating's (a 差评 is opened the moment it is rated)
REPORTED = {domain.ReportKind.RATED: (events_pb2.EvaluationReceived, "rated_at"),
            domain.ReportKind.BAD_REVIEW_OPENED: (events_pb2.BadReviewOpened, "opened_at"),
            domain.ReportKind.BAD_REVIEW_CLOSED: (events_pb2.BadReviewClosed, None)}


def rating_report(kind, payload, origin):
    """One of a city's evaluation events (`kind`, its JSON payload, its domain.Origin) decoded once
    into the domain.RatingReport the province merges. A channel the proto does not declare:
    InvalidArgument; a payload that is not the event's JSON: json_format.ParseError, as everywhere."""
    message_cls, moment = REPORTED[kind]
    event = from_payload(message_cls, payload)
    rated_at = wire.iso(wire.field(event, moment)) if moment is not None else ""
    rated_on = domain.local_date(rated_at).isoformat() if rated_at else ""
    grade = None if kind is domain.ReportKind.BAD_REVIEW_CLOSED else domain.grade_from_proto(event.grade)
    return domain.RatingReport(
        kind=kind, origin=origin, case_no=event.case_no, channel=channel_from_proto(event.channel),
        grade=grade, department_code=event.department_code, region_code=event.region_code,
        package_code=event.package_code, rated_on=rated_on,
        on_time=kind is domain.ReportKind.BAD_REVIEW_CLOSED and event.on_time)
