"""The generic values of the typed contracts and the plain ones the services keep, mapped once for
all: a moment (google.protobuf.Timestamp) and the ISO 8601 / RFC 3339 string a domain or a store
keeps ("2026-11-27T09:00:00+00:00", as datetime.isoformat writes it) or the datetime MongoDB gives
back; a calendar day (google.type.Date) and "YYYY-MM-DD". An empty string (or None) is an unset
message and back; a value that is none raises ValueError saying what it is not. Each service's
conversion module keeps its own enum tables and message-specific code, and turns these ValueErrors
into its own errors where a request is refused (InvalidArgument naming the field)."""
import datetime
import re
from collections.abc import Callable
from typing import Any, TypeVar

from google.protobuf import timestamp_pb2
from google.protobuf.message import Message
from google.type import date_pb2

UTC = datetime.UTC
# Timestamp's range (google/protobuf/timestamp.proto): 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z
MIN_SECONDS, MAX_SECONDS = -62135596800, 253402300799
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
T = TypeVar("T")


def field(message: Message, name: str) -> Any:
    """The message-typed field `name` of `message`, or None when it is not set (HasField)."""
    return getattr(message, name) if message.HasField(name) else None


def _typed(value: object, parse: Callable[[str], T], cls: type[T], what: str) -> T | None:
    """`value` as a `cls`: a string through `parse` (whose ValueError says what is wrong with it), a
    `cls` as it is; None for None or "" (unset). Anything else: ValueError."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return parse(value)
    if not isinstance(value, cls):
        raise ValueError(f"{value!r} is not {what}: a {type(value).__name__}, not a string or {cls.__name__}")
    return value


# --- moments ---------------------------------------------------------------------------------------


def timestamp(moment: object, naive_tz: datetime.tzinfo | None = UTC) -> timestamp_pb2.Timestamp | None:
    """`moment` (an ISO 8601 / RFC 3339 string, or a datetime) as a Timestamp; None for None or ""
    (unset). A moment without an offset is in `naive_tz` (UTC, as the services write moments and
    MongoDB gives them back); with naive_tz=None it is refused as ambiguous. Anything else:
    ValueError."""
    at = _typed(moment, _moment, datetime.datetime, "an RFC 3339 moment")
    if at is None:
        return None
    if at.tzinfo is None:
        if naive_tz is None:
            raise ValueError(f"the moment {at.isoformat()} has no offset: a moment without a time zone is ambiguous")
        at = at.replace(tzinfo=naive_tz)
    out = timestamp_pb2.Timestamp()
    try:
        out.FromDatetime(at)
    except (OverflowError, ValueError):  # year 1 east of UTC, year 9999 west of it
        raise ValueError(f"the moment {at.isoformat()} is out of range: a moment between "
                         "0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z") from None
    return out


def _moment(text: str) -> datetime.datetime:
    try:
        return datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text[:40]!r} is not an RFC 3339 moment (such as 2026-11-27T10:00:00+08:00)") from None


def iso(ts: timestamp_pb2.Timestamp | None, tz: datetime.tzinfo = UTC) -> str:
    """A Timestamp as an ISO 8601 string in `tz` (UTC: "2026-11-27T09:00:00+00:00", as the services
    keep moments); "" for None (unset). A Timestamp out of its range (seconds outside years
    1..9999, nanos outside 0..999999999, or a moment `tz` cannot show): ValueError."""
    if ts is None:
        return ""
    refused = ValueError(f"the Timestamp of seconds {ts.seconds}, nanos {ts.nanos} is out of range: a moment "
                         "between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, nanos within 0..999999999")
    if not (MIN_SECONDS <= ts.seconds <= MAX_SECONDS and 0 <= ts.nanos < 1_000_000_000):
        raise refused
    try:
        return ts.ToDatetime(tzinfo=UTC).astimezone(tz).isoformat()
    except (OverflowError, ValueError):  # in range, but not in `tz` (the last hours of 9999 east of UTC)
        raise refused from None


def rfc3339(moment: object) -> str | None:
    """`moment` (as `timestamp` takes it) as the RFC 3339 string json_format reads into a Timestamp
    field ("2026-11-27T09:00:00Z"); None for None or ""."""
    ts = timestamp(moment)
    return None if ts is None else ts.ToJsonString()


# --- calendar days ---------------------------------------------------------------------------------


def date(day: object) -> date_pb2.Date | None:
    """A day ("YYYY-MM-DD", or a datetime.date) as a google.type.Date; None for None or "" (unset).
    Anything else, or a day the calendar does not have (2026-02-30): ValueError."""
    found = _typed(day, _day, datetime.date, "a date (YYYY-MM-DD)")
    if found is None:
        return None
    return date_pb2.Date(year=found.year, month=found.month, day=found.day)


def _day(text: str) -> datetime.date:
    if not _DAY.fullmatch(text):
        raise ValueError(f"{text[:40]!r} is not a date (YYYY-MM-DD)")
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a date of the calendar (YYYY-MM-DD)") from None


def day(value: date_pb2.Date | None) -> str:
    """A google.type.Date as "YYYY-MM-DD"; "" for None or the all-zero Date (unset). A partial date
    (no year, month or day) or one the calendar does not have: ValueError."""
    if value is None or (value.year, value.month, value.day) == (0, 0, 0):
        return ""
    try:
        return datetime.date(value.year, value.month, value.day).isoformat()
    except (OverflowError, ValueError):
        raise ValueError(f"{value.year:04d}-{value.month:02d}-{value.day:02d} is not a date of the calendar "
                         "(year 1..9999, month 1..12, a day of that month)") from None
