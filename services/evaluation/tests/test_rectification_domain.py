"""差评整改 rules: the deadline in working days from the rating day in Asia/Shanghai, the on-time
rule, the satisfaction rate and who a rating is counted for."""
import datetime as dt

import pytest

from services.common.config import Settings, SettingsError
from services.common.errors import InvalidArgument
from services.evaluation import domain

UTC = dt.UTC


def test_deadline_counts_working_days_after_the_rating_day():
    # Mon 2024-03-04 10:00 Shanghai: five working days later is Mon 2024-03-11
    assert domain.rectification_deadline(dt.datetime(2024, 3, 4, 2, 0, tzinfo=UTC), 5) == (dt.date(2024, 3, 11), True)


def test_deadline_uses_the_shanghai_day_not_the_utc_day():
    # 2024-03-04 17:00 UTC is already Tue 2024-03-05 01:00 in Shanghai → Tue 2024-03-12
    assert domain.rectification_deadline(dt.datetime(2024, 3, 4, 17, 0, tzinfo=UTC), 5)[0] == dt.date(2024, 3, 12)


def test_deadline_skips_the_national_day_holiday_and_counts_make_up_days():
    # rated Fri 2024-09-27; 国庆 Oct 1–7 off; Sun Sep 29 and Sat Oct 12 are make-up working days
    deadline, known = domain.rectification_deadline(dt.datetime(2024, 9, 27, 4, 0, tzinfo=UTC), 5)
    # Sep 29 (Sun, 调休), Sep 30, Oct 8, Oct 9, Oct 10
    assert (deadline, known) == (dt.date(2024, 10, 10), True)


def test_deadline_beyond_the_official_calendar_is_provisional():
    deadline, known = domain.rectification_deadline(dt.datetime(2099, 3, 2, 2, 0, tzinfo=UTC), 5)  # Mon
    assert deadline == dt.date(2099, 3, 9) and known is False


def test_fifteen_day_setting():
    assert domain.rectification_deadline(dt.datetime(2024, 3, 4, 2, 0, tzinfo=UTC), 15)[0] == dt.date(2024, 3, 25)


@pytest.mark.parametrize("days", [0, -1])
def test_deadline_needs_a_working_day(days):
    with pytest.raises(ValueError):
        domain.rectification_deadline(dt.datetime(2024, 3, 4, tzinfo=UTC), days)


def test_naive_moment_is_refused():
    with pytest.raises(ValueError):
        domain.local_date(dt.datetime(2024, 3, 4, 10, 0))


@pytest.mark.parametrize("closed_at, on_time", [
    ("2024-03-11T15:59:59+00:00", True),    # 23:59:59 on the deadline day in Shanghai
    ("2024-03-11T16:00:00+00:00", False),   # 00:00 the day after
    ("2024-03-05T01:00:00+00:00", True),
    ("2024-03-12T09:00:00+08:00", False),
])
def test_on_time_is_on_or_before_the_deadline_day_in_shanghai(closed_at, on_time):
    assert domain.closed_on_time(closed_at, "2024-03-11") is on_time


@pytest.mark.parametrize("satisfied, ratings, rate", [(0, 0, 0.0), (3, 4, 0.75), (2, 3, 0.6667), (5, 5, 1.0),
                                                      (0, 2, 0.0)])
def test_satisfaction_rate(satisfied, ratings, rate):
    assert domain.satisfaction_rate(satisfied, ratings) == rate


def test_satisfied_is_the_top_three_grades():
    assert [domain.is_satisfied(g) for g in domain.GRADES] == [True, True, True, False, False]


def test_responsible_department():
    assert domain.responsible_department("gaj", "wsjk") == "gaj"
    assert domain.responsible_department("", "wsjk") == "wsjk"
    assert domain.responsible_department(None, "") == ""
    with pytest.raises(InvalidArgument, match="department code"):
        domain.responsible_department("公安局", "wsjk")


def test_group_field_and_dates():
    assert domain.group_field(domain.StatisticsGroup.PACKAGE) == "package_code"
    for unknown in (None, "STATISTICS_GROUP_UNSPECIFIED", "package"):
        with pytest.raises(InvalidArgument, match="REGION, DEPARTMENT or PACKAGE"):
            domain.group_field(unknown)
    assert domain.check_date("2024-02-29", "rated_from") == "2024-02-29"
    with pytest.raises(InvalidArgument, match="YYYY-MM-DD"):
        domain.check_date("2024/02/29", "rated_from")
    with pytest.raises(InvalidArgument, match="not a real date"):
        domain.check_date("2023-02-29", "rated_to")


@pytest.mark.parametrize("value, what", [("", "note"), ("   ", "note"), ("x" * 2001, "note")])
def test_text_is_required_and_bounded(value, what):
    with pytest.raises(InvalidArgument, match=what):
        domain.check_text(value, what)


@pytest.mark.parametrize("env, days", [({}, 5), ({"ONETHING_BAD_REVIEW_DAYS": ""}, 5),
                                       ({"ONETHING_BAD_REVIEW_DAYS": "15"}, 15)])
def test_bad_review_days_setting(env, days, monkeypatch):
    monkeypatch.delenv("ONETHING_BAD_REVIEW_DAYS", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert Settings().bad_review_days == days
    assert domain.DEFAULT_BAD_REVIEW_DAYS == 5


@pytest.mark.parametrize("raw, words", [("0", "must be more than 0"), ("-3", "must be more than 0"),
                                        ("five", "is not a whole number"), ("1.5", "is not a whole number")])
def test_bad_review_days_setting_refused(raw, words, monkeypatch):
    monkeypatch.setenv("ONETHING_BAD_REVIEW_DAYS", raw)
    with pytest.raises(SettingsError, match="ONETHING_BAD_REVIEW_DAYS") as err:
        Settings()
    assert words in str(err.value) and repr(raw if words == "is not a whole number" else int(raw)) in str(err.value)
