"""Legal clocks across the 2025 National Day holiday (10-01..10-08 off, 09-28 and 10-11 make-up
working days) and across a suspension."""
import datetime

import pytest

from services.joint_review import clock

D = datetime.date


def test_holiday_days_do_not_count_and_makeup_days_do():
    c = clock.start(D(2025, 9, 26), 5)           # Friday
    assert clock.elapsed(c, D(2025, 9, 28)) == 1  # Sunday 9-28 is a make-up working day
    assert clock.elapsed(c, D(2025, 10, 8)) == 3  # 9-28, 9-29, 9-30; the holiday counts nothing
    assert clock.elapsed(c, D(2025, 10, 11)) == 6  # + 10-9, 10-10 and the make-up Saturday 10-11
    assert not clock.overdue(c, D(2025, 10, 10)) and clock.overdue(c, D(2025, 10, 11))


def test_due_date_skips_the_holiday():
    c = clock.start(D(2025, 9, 30), 3)
    assert clock.due_date(c, D(2025, 9, 30)) == D(2025, 10, 11)  # 10-9, 10-10, make-up Saturday 10-11


def test_a_suspension_stops_the_clock_for_its_working_days():
    c = clock.start(D(2025, 9, 22), 5)               # Monday
    assert clock.elapsed(c, D(2025, 9, 24)) == 2
    assert clock.pause(c, D(2025, 9, 24), "RECTIFICATION")
    assert not clock.pause(c, D(2025, 9, 25), "HEARING")  # already paused
    assert clock.elapsed(c, D(2025, 10, 9)) == 2      # frozen while paused
    assert clock.resume(c, D(2025, 10, 9))            # 9-25..10-9 paused: 9-25,26,28,29,30,10-9 = 6 days
    assert c["paused_days"] == 6
    assert clock.elapsed(c, D(2025, 10, 10)) == 3
    assert clock.remaining(c, D(2025, 10, 10)) == 2
    assert not clock.overdue(c, D(2025, 10, 13)) and clock.overdue(c, D(2025, 10, 14))


def test_pause_reason_must_be_one_the_law_does_not_count():
    with pytest.raises(ValueError):
        clock.pause(clock.start(D(2025, 1, 6), 5), D(2025, 1, 7), "LUNCH")


def test_the_first_check_day_is_never_after_a_clock_runs_out():
    import datetime

    from services.joint_review import clock
    start = datetime.date(2025, 9, 1)
    for offset in range(0, 120, 3):  # across National Day, New Year and Spring Festival make-up days
        for limit in (1, 3, 5, 10, 20):
            for paused_days in (0, 2):
                c = clock.start(start + datetime.timedelta(days=offset), limit)
                c["paused_days"] = paused_days
                check = clock.first_check_day(c)
                day = datetime.date.fromisoformat(c["started_on"])
                while not clock.overdue(c, day):
                    day += datetime.timedelta(days=1)
                assert check <= day, (c, check, day)
                assert check > datetime.date.fromisoformat(c["started_on"])
    c = clock.start(start, 5)
    clock.pause(c, start, "HEARING")
    assert clock.first_check_day(c) is None
