"""好差评 (GB/T 39734/39735): five grades, the bottom two are 差评; dimensions scored 1 to 5."""
import datetime as _dt
import re as _re

from services.common.errors import InvalidArgument
from services.common.workdays import add_workdays

GRADES = ("GRADE_VERY_SATISFIED", "GRADE_SATISFIED", "GRADE_BASICALLY_SATISFIED", "GRADE_DISSATISFIED",
          "GRADE_VERY_DISSATISFIED")
BAD = ("GRADE_DISSATISFIED", "GRADE_VERY_DISSATISFIED")
DIMENSIONS = {
    "online": ("整体满意度", "办事效率", "指南精确度", "便捷度", "平台操作性"),
    "window": ("整体", "效率", "水平", "态度"),
}


def check(grade, channel, dimensions, comment):
    if grade not in GRADES:
        raise InvalidArgument("choose a grade: VERY_SATISFIED, SATISFIED, BASICALLY_SATISFIED, DISSATISFIED "
                              "or VERY_DISSATISFIED")
    if channel not in DIMENSIONS:
        raise InvalidArgument(f"the rating channel must be one of {', '.join(DIMENSIONS)}, not {channel!r}")
    for name, score in (dimensions or {}).items():
        if name not in DIMENSIONS[channel]:
            raise InvalidArgument(f"{name!r} is not a {channel} dimension; use {'、'.join(DIMENSIONS[channel])}")
        if not 1 <= int(score) <= 5:
            raise InvalidArgument(f"dimension {name} is scored 1 to 5, not {score}")
    if grade in BAD and not (comment or "").strip():
        raise InvalidArgument("a 差评 needs a comment saying what went wrong, so it can be put right")
    return grade in BAD


# -- 差评整改 (rectification of a bad review) ----------------------------------------------------
# China Standard Time: UTC+8 all year (no daylight saving since 1991), so a fixed offset is exact.
SHANGHAI = _dt.timezone(_dt.timedelta(hours=8), "Asia/Shanghai")
DEFAULT_BAD_REVIEW_DAYS = 5
_DEPARTMENT = _re.compile(r"[a-z][a-z0-9_]{1,31}")
_DATE = _re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def local_date(moment):
    """The calendar day in Asia/Shanghai of an aware datetime (or an RFC 3339 string)."""
    if isinstance(moment, str):
        moment = _dt.datetime.fromisoformat(moment)
    if moment.tzinfo is None:
        raise ValueError("a moment without a time zone is ambiguous")
    return moment.astimezone(SHANGHAI).date()


def rectification_deadline(rated_at, days):
    """(deadline day, provisional): `days` working days after the rating day in Asia/Shanghai, on
    the official calendar; provisional when a day counted is in a year the calendar does not cover."""
    if int(days) < 1:
        raise ValueError("a rectification needs at least one working day")
    return add_workdays(local_date(rated_at), int(days))


def closed_on_time(closed_at, deadline):
    """Closed on or before the deadline day, as the day is in Asia/Shanghai."""
    if isinstance(deadline, str):
        deadline = _dt.date.fromisoformat(deadline)
    return local_date(closed_at) <= deadline


def satisfaction_rate(satisfied, ratings):
    """Share of ratings in the top three grades (0.0 when there are none), to four places."""
    return round(satisfied / ratings, 4) if ratings else 0.0


def is_satisfied(grade):
    return grade in GRADES[:3]


def responsible_department(named, lead_department):
    """The department a rating (and its rectification) is counted for: the one the applicant named,
    else the case's lead department (牵头单位)."""
    named = (named or "").strip()
    if named:
        if not _DEPARTMENT.fullmatch(named):
            raise InvalidArgument(f"{named!r} is not a department code (lower-case letters, e.g. gaj)")
        return named
    return lead_department or ""


def check_text(value, what):
    if not (value or "").strip():
        raise InvalidArgument(f"{what} is required")
    if len(value) > 2000:
        raise InvalidArgument(f"{what} is too long (at most 2000 characters)")
    return value.strip()


def check_date(value, what):
    if value and not _DATE.fullmatch(value):
        raise InvalidArgument(f"{what} must be a date YYYY-MM-DD, not {value!r}")
    if value:
        try:
            _dt.date.fromisoformat(value)
        except ValueError:
            raise InvalidArgument(f"{what} {value!r} is not a real date") from None
    return value or ""


GROUPS = {"STATISTICS_GROUP_REGION": "region_code", "STATISTICS_GROUP_DEPARTMENT": "department_code",
          "STATISTICS_GROUP_PACKAGE": "package_code"}


def group_field(group_by):
    if group_by not in GROUPS:
        raise InvalidArgument("group statistics by REGION, DEPARTMENT or PACKAGE")
    return GROUPS[group_by]


def statistics_row(key, ratings, satisfied, bad, closed, on_time, open_):
    return {"key": key, "ratings": ratings, "satisfied": satisfied,
            "satisfaction_rate": satisfaction_rate(satisfied, ratings), "bad_reviews": bad,
            "rectifications_closed": closed, "closed_on_time": on_time, "rectifications_open": open_}
