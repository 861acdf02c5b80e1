import datetime

from services.common import workdays

D = datetime.date


def test_national_day_2025_skips_the_holiday_and_counts_the_makeup_saturday():
    # 2025: 10-01..10-08 off; Sunday 09-28 and Saturday 10-11 are make-up working days
    assert workdays.is_workday(D(2025, 9, 28)) == (True, True)
    assert workdays.is_workday(D(2025, 10, 3)) == (False, True)
    assert workdays.add_workdays(D(2025, 9, 30), 1) == (D(2025, 10, 9), True)
    assert workdays.add_workdays(D(2025, 9, 30), 3) == (D(2025, 10, 11), True)


def test_count_between_dates():
    # 9-28 (make-up Sunday), 9-29, 9-30, 10-9, 10-10, 10-11 (make-up Saturday), 10-13
    assert workdays.workdays_between(D(2025, 9, 26), D(2025, 10, 13)) == 7
    assert workdays.workdays_between(D(2025, 10, 1), D(2025, 10, 8)) == 0
    assert workdays.workdays_between(D(2025, 10, 8), D(2025, 10, 1)) == 0


def test_a_year_without_official_data_is_counted_weekdays_and_flagged():
    day, known = workdays.add_workdays(D(2031, 1, 2), 2)  # Thursday + 2 working days
    assert day == D(2031, 1, 6) and known is False
