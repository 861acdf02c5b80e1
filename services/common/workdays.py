"""Working days on the official calendar: statutory holidays and make-up working days (调休) from
the yearly State Council notice, as the `chinese-calendar` package carries them.

For a year the package does not cover yet (the notice comes out late in the year before), days are
counted Monday to Friday and the result says it is provisional; it is never silently guessed."""
import datetime
import functools

import chinese_calendar


@functools.lru_cache(maxsize=8192)
def is_workday(day):
    """(is a working day, known from the official calendar); remembered per day, since every task's
    due date walks the same days (the package's own check costs a worker about 1.5 % of its CPU)."""
    try:
        return chinese_calendar.is_workday(day), True
    except NotImplementedError:
        return day.weekday() < 5, False


def add_workdays(start, days):
    """The date `days` working days after `start` (the start day itself not counted), and whether
    every day on the way was known from the official calendar."""
    if days < 0:
        raise ValueError("days must not be negative")
    day, left, known = start, days, True
    while left > 0:
        day += datetime.timedelta(days=1)
        work, sure = is_workday(day)
        known = known and sure
        if work:
            left -= 1
    return day, known


def workdays_between(start, end):
    """Working days after `start` up to and including `end` (0 when end <= start)."""
    count, day = 0, start
    while day < end:
        day += datetime.timedelta(days=1)
        if is_workday(day)[0]:
            count += 1
    return count
