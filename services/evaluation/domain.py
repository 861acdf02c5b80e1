"""好差评 (GB/T 39734/39735): five grades, the bottom two are 差评; dimensions scored 1 to 5.

Grades, the state of a rectification and the grouping of statistics are enums here. Each has one
explicit mapping to its protobuf enum number (the api and the events) and, where it is kept, one to
the string stored in MongoDB (the strings existing ratings hold), so renaming a proto enum value or
a member here cannot change what stored data means."""
import datetime as _dt
import re as _re
from dataclasses import dataclass, replace
from enum import StrEnum

from services.common import china, paging
from services.common.config import region_within
from services.common.errors import InvalidArgument
from services.common.workdays import add_workdays


class Grade(StrEnum):
    """好差评 grades (GB/T 39734)."""
    VERY_SATISFIED = "very_satisfied"            # 非常满意
    SATISFIED = "satisfied"                      # 满意
    BASICALLY_SATISFIED = "basically_satisfied"  # 基本满意
    DISSATISFIED = "dissatisfied"                # 不满意
    VERY_DISSATISFIED = "very_dissatisfied"      # 非常不满意

    @property
    def bad(self):
        """A 差评: the bottom two grades."""
        return self in BAD

    @property
    def satisfied(self):
        """Counted as satisfied: the top three grades."""
        return self in GRADES[:3]


class RectificationStatus(StrEnum):
    """差评整改: open until the department closes it with a result."""
    OPEN = "open"
    CLOSED = "closed"


class StatisticsGroup(StrEnum):
    REGION = "region"
    DEPARTMENT = "department"
    PACKAGE = "package"


GRADES = tuple(Grade)
BAD = (Grade.DISSATISFIED, Grade.VERY_DISSATISFIED)

# onething.evaluation.v1.Grade / RectificationStatus / StatisticsGroup numbers (0, UNSPECIFIED, is none)
GRADE_PROTO = {Grade.VERY_SATISFIED: 1, Grade.SATISFIED: 2, Grade.BASICALLY_SATISFIED: 3, Grade.DISSATISFIED: 4,
               Grade.VERY_DISSATISFIED: 5}
STATUS_PROTO = {RectificationStatus.OPEN: 1, RectificationStatus.CLOSED: 2}
GROUP_PROTO = {StatisticsGroup.REGION: 1, StatisticsGroup.DEPARTMENT: 2, StatisticsGroup.PACKAGE: 3}

# what the store keeps (the strings every existing rating holds; never change one)
GRADE_STORED = {Grade.VERY_SATISFIED: "GRADE_VERY_SATISFIED", Grade.SATISFIED: "GRADE_SATISFIED",
                Grade.BASICALLY_SATISFIED: "GRADE_BASICALLY_SATISFIED", Grade.DISSATISFIED: "GRADE_DISSATISFIED",
                Grade.VERY_DISSATISFIED: "GRADE_VERY_DISSATISFIED"}
STATUS_STORED = {RectificationStatus.OPEN: "RECTIFICATION_STATUS_OPEN",
                 RectificationStatus.CLOSED: "RECTIFICATION_STATUS_CLOSED"}


def _inverse(mapping):
    return {v: k for k, v in mapping.items()}


_GRADE_BY_NUMBER, _GROUP_BY_NUMBER = _inverse(GRADE_PROTO), _inverse(GROUP_PROTO)
_GRADE_BY_STORED, _STATUS_BY_STORED = _inverse(GRADE_STORED), _inverse(STATUS_STORED)


def grade_from_proto(number):
    """The grade of a proto Grade number; None for UNSPECIFIED (or a number it does not declare)."""
    return _GRADE_BY_NUMBER.get(number)


def group_from_proto(number):
    return _GROUP_BY_NUMBER.get(number)


def grade_from_stored(text):
    return _GRADE_BY_STORED[text]


def status_from_stored(text):
    return _STATUS_BY_STORED[text]


@dataclass(frozen=True)
class Rateable:
    """A delivered case that may be rated: who applied, where, for what, and which department leads
    it (牵头单位). `withdrawn`: withdrawn after its conclusion, so nothing was delivered to rate."""
    case_no: str
    applicant_id: str = ""
    region_code: str = ""
    package_code: str = ""
    lead_department: str = ""
    withdrawn: bool = False


@dataclass(frozen=True)
class Revision:
    """Which stored rating a body was read from and its version then: a save names it, and the
    store refuses the save when the rating changed in between."""
    key: object
    version: int


DIMENSIONS = {
    "online": ("整体满意度", "办事效率", "指南精确度", "便捷度", "平台操作性"),
    "window": ("整体", "效率", "水平", "态度"),
}


def check(grade, channel, dimensions, comment):
    """True when the rating is a 差评; `grade` is a Grade (anything else is refused)."""
    if not isinstance(grade, Grade):
        raise InvalidArgument("choose a grade: VERY_SATISFIED, SATISFIED, BASICALLY_SATISFIED, DISSATISFIED "
                              "or VERY_DISSATISFIED")
    if channel not in DIMENSIONS:
        raise InvalidArgument(f"the rating channel must be one of {', '.join(DIMENSIONS)}, not {channel!r}")
    for name, score in (dimensions or {}).items():
        if name not in DIMENSIONS[channel]:
            raise InvalidArgument(f"{name!r} is not a {channel} dimension; use {'、'.join(DIMENSIONS[channel])}")
        if not 1 <= int(score) <= 5:
            raise InvalidArgument(f"dimension {name} is scored 1 to 5, not {score}")
    if grade.bad and not (comment or "").strip():
        raise InvalidArgument("a 差评 needs a comment saying what went wrong, so it can be put right")
    return grade.bad


# -- 差评整改 (rectification of a bad review) ----------------------------------------------------
SHANGHAI = china.SHANGHAI  # China Standard Time (services/common/china.py)
DEFAULT_BAD_REVIEW_DAYS = 5
_DEPARTMENT = _re.compile(r"[a-z][a-z0-9_]{1,31}")
_DATE = _re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def local_date(moment):
    """The calendar day in Asia/Shanghai of an aware datetime (or an RFC 3339 string)."""
    return china.day_of(moment)


def rectification_deadline(rated_at, days):
    """(deadline day, provisional): `days` working days after the rating day in Asia/Shanghai, on
    the official calendar; provisional when a day counted is in a year the calendar does not cover."""
    if int(days) < 1:
        raise ValueError("a rectification needs at least one working day")
    return add_workdays(local_date(rated_at), int(days))


# ListBadReviews' pages: 100 rectifications by default, at most 1,000
BAD_REVIEWS_PAGE_SIZE, BAD_REVIEWS_PAGE_MOST = 100, 1000


def bad_reviews_page_size(requested):
    """ListBadReviews' page size: 0 asks for the default (100), at most 1,000."""
    return paging.page_size(requested, BAD_REVIEWS_PAGE_SIZE, BAD_REVIEWS_PAGE_MOST)


def bad_review_order(rectification):
    """Where a 差评's rectification stands in the lists of them, as one string that sorts the same:
    by deadline ("YYYY-MM-DD"), then case number, then channel (joined by a space, which sorts
    before every character of theirs, so that a shorter case number comes first as it does alone)."""
    return f"{rectification['deadline']} {rectification['case_no']} {rectification['channel']}"


def closed_on_time(closed_at, deadline):
    """Closed on or before the deadline day, as the day is in Asia/Shanghai."""
    if isinstance(deadline, str):
        deadline = _dt.date.fromisoformat(deadline)
    return local_date(closed_at) <= deadline


def satisfaction_rate(satisfied, ratings):
    """Share of ratings in the top three grades (0.0 when there are none), to four places."""
    return round(satisfied / ratings, 4) if ratings else 0.0


def is_satisfied(grade):
    return isinstance(grade, Grade) and grade.satisfied


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


GROUPS = {StatisticsGroup.REGION: "region_code", StatisticsGroup.DEPARTMENT: "department_code",
          StatisticsGroup.PACKAGE: "package_code"}


def group_field(group_by):
    """The rating field a StatisticsGroup groups by."""
    if not isinstance(group_by, StatisticsGroup):
        raise InvalidArgument("group statistics by REGION, DEPARTMENT or PACKAGE")
    return GROUPS[group_by]


def statistics_row(key, ratings, satisfied, bad, closed, on_time, open_):
    return {"key": key, "ratings": ratings, "satisfied": satisfied,
            "satisfaction_rate": satisfaction_rate(satisfied, ratings), "bad_reviews": bad,
            "rectifications_closed": closed, "closed_on_time": on_time, "rectifications_open": open_}


# -- figures rolled up from the cities (issue 11: the province sees its cities' figures) ----------
# A city's evaluation publishes an event for each rating, each 差评 opened and each one closed; the
# links carry them up to its province, whose evaluation keeps one rolled-up rating per city, case
# and channel and counts it in its statistics exactly as it counts a rating of its own. The events
# may come twice (the links are at-least-once) and in any order (each kind has its own queue), so a
# rolled-up rating is a merge of what its events said, the same whatever came first, and it knows
# the ids of the events it took.


class ReportKind(StrEnum):
    """Which of a city's evaluation events a report comes from."""
    RATED = "evaluation_received"
    BAD_REVIEW_OPENED = "bad_review_opened"
    BAD_REVIEW_CLOSED = "bad_review_closed"


@dataclass(frozen=True)
class Origin:
    """Where an event was produced: the site (its region code, the `site` header) and the event's id."""
    site: str = ""
    event_id: str = ""


@dataclass(frozen=True)
class RatingReport:
    """What one event of a city's evaluation says about one of its ratings (a case on a channel).
    `rated_on`: the rating's day in Asia/Shanghai; `on_time`: a closed 差评 was put right in time."""
    kind: ReportKind
    origin: Origin
    case_no: str
    channel: str
    grade: Grade | None = None
    department_code: str = ""
    region_code: str = ""
    package_code: str = ""
    rated_on: str = ""
    on_time: bool = False


@dataclass(frozen=True)
class RolledUpRating:
    """A city's rating as its province keeps it. `rated`: the rating itself is known (its
    evaluation_received or its bad_review_opened came); until then it counts for nothing, even if its
    closing came first. `events`: the ids of the events merged into it, sorted."""
    site: str
    case_no: str
    channel: str
    grade: Grade | None = None
    department_code: str = ""
    region_code: str = ""
    package_code: str = ""
    rated_on: str = ""
    rated: bool = False
    bad_review: bool = False
    closed: bool = False
    on_time: bool = False
    events: tuple[str, ...] = ()

    def figures(self):
        """What it adds to each figure of the statistics, 0 or 1 (as a rating of one's own does)."""
        counted = self.rated
        bad = counted and self.bad_review
        return {"ratings": int(counted), "satisfied": int(counted and is_satisfied(self.grade)), "bad": int(bad),
                "closed": int(bad and self.closed), "on_time": int(bad and self.closed and self.on_time),
                "open": int(bad and not self.closed)}


def rolls_up(site, own_region):
    """True when an event produced at `site` is to be counted by the site of `own_region` as one of
    its cities': a site within it (GB/T 2260) but not itself. A city counts none (its own ratings are
    counted once, as its own; a sibling's or its province's are not its figures)."""
    return isinstance(site, str) and site != own_region and region_within(site, own_region)


def check_report(report):
    """A report that can be rolled up; else InvalidArgument saying what it lacks."""
    what = f"{report.kind.value} of case {report.case_no or '?'} from site {report.origin.site or '?'}"
    if not report.case_no:
        raise InvalidArgument(f"{what} names no case: it cannot be rolled up")
    if report.channel not in DIMENSIONS:
        raise InvalidArgument(f"{what} names no rating channel (an event from before sites?): it cannot be rolled up")
    if not report.origin.event_id:
        raise InvalidArgument(f"{what} has no event id: a duplicate of it could not be told apart")
    if report.kind is not ReportKind.BAD_REVIEW_CLOSED:
        if not isinstance(report.grade, Grade):
            raise InvalidArgument(f"{what} carries no grade: it cannot be rolled up")
        if not report.region_code:
            raise InvalidArgument(f"{what} carries no region: it cannot be rolled up")
        if not report.rated_on:
            raise InvalidArgument(f"{what} carries no moment of rating: it cannot be rolled up")
        check_date(report.rated_on, f"the day of {what}")
    return report


def roll_up(current, report):
    """The rolled-up rating once `report` is merged into `current` (None: nothing yet); None when
    the report's event was merged before (nothing changes)."""
    if current is None:
        current = RolledUpRating(site=report.origin.site, case_no=report.case_no, channel=report.channel)
    if report.origin.event_id in current.events:
        return None
    change: dict[str, object] = {"events": tuple(sorted({*current.events, report.origin.event_id}))}
    for name in ("department_code", "region_code", "package_code", "rated_on"):
        value = getattr(report, name)
        if value and (report.kind is not ReportKind.BAD_REVIEW_CLOSED or not getattr(current, name)):
            change[name] = value  # the rating's own facts win over what its closing repeats
    if report.kind is ReportKind.BAD_REVIEW_CLOSED:
        change.update(bad_review=True, closed=True, on_time=bool(report.on_time))
    else:
        change.update(grade=report.grade, rated=True,
                      bad_review=current.bad_review or report.kind is ReportKind.BAD_REVIEW_OPENED
                      or report.grade.bad)
    return replace(current, **change)


def add_rows(*row_lists):
    """Rows of the store's statistics ({key, ratings, satisfied, bad, closed, on_time, open}) summed
    by key: a site's own figures and its cities'."""
    summed: dict[str, dict] = {}
    for rows in row_lists:
        for row in rows:
            into = summed.setdefault(row["key"], {"key": row["key"], "ratings": 0, "satisfied": 0, "bad": 0,
                                                  "closed": 0, "on_time": 0, "open": 0})
            for name in ("ratings", "satisfied", "bad", "closed", "on_time", "open"):
                into[name] += int(row[name])
    return list(summed.values())
