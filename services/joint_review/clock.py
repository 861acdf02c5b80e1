"""Legal clocks (办理时限) in working days on the official calendar.

A clock starts on the day a task reaches its department (that day not counted, as deadlines are
counted in law), stops counting while it is paused (rectification, expert inspection, hearing: steps
the law does not count), and is overdue once more working days have passed than its limit.
A clock is a plain dict: {"started_on", "paused_since", "paused_days", "limit_days", "reasons"}.
Dates are ISO strings (YYYY-MM-DD) so the dict can be stored as it is."""
import datetime

from services.common import workdays

PAUSE_REASONS = ("RECTIFICATION", "EXPERT_INSPECTION", "HEARING", "TESTING")


def _d(iso):
    return datetime.date.fromisoformat(iso)


def start(today, limit_days):
    return {"started_on": today.isoformat(), "paused_since": "", "paused_days": 0, "limit_days": int(limit_days),
            "reasons": []}


def pause(clock, today, reason):
    """Stop counting for `reason`; False when the clock is already stopped (for whatever reason) or
    has finished, so that only the step that stopped it starts it again."""
    if reason not in PAUSE_REASONS:
        raise ValueError(f"a clock pauses only for {', '.join(PAUSE_REASONS)}")
    if clock["paused_since"] or clock.get("stopped_on"):
        return False
    clock["paused_since"] = today.isoformat()
    clock["paused_for"] = reason
    clock["reasons"] = [*clock.get("reasons", []), reason]
    return True


def resume(clock, today, reason=None):
    """Working days spent paused do not count: from the pause day (exclusive) to today (inclusive).
    With `reason`, only a pause for that reason is ended."""
    if not clock["paused_since"] or (reason and clock.get("paused_for", reason) != reason):
        return False
    clock["paused_days"] += workdays.workdays_between(_d(clock["paused_since"]), today)
    clock["paused_since"] = ""
    clock["paused_for"] = ""
    return True


def stop(clock, today):
    """The work is finished: the clock shows what it took from now on."""
    if clock.get("stopped_on"):
        return False
    resume(clock, today)
    clock["stopped_on"] = today.isoformat()
    return True


def elapsed(clock, today):
    """Working days counted so far (up to the pause or the stop)."""
    if clock.get("stopped_on"):
        end = _d(clock["stopped_on"])
    elif clock["paused_since"]:
        end = _d(clock["paused_since"])
    else:
        end = today
    return max(0, workdays.workdays_between(_d(clock["started_on"]), end) - clock["paused_days"])


def remaining(clock, today):
    return clock["limit_days"] - elapsed(clock, today)


def overdue(clock, today):
    return elapsed(clock, today) > clock["limit_days"]


def due_date(clock, today):
    """The last working day within the limit, as things stand (a paused clock's date moves)."""
    day, _ = workdays.add_workdays(today, max(0, remaining(clock, today)))
    return day


def first_check_day(clock):
    """The first day on which a running clock may be past its limit (the day after its due date as it
    stands), so the overdue check need look at nothing before; None for a paused or stopped clock,
    which cannot go past its limit until it runs again (a changed clock is saved, and the day with it)."""
    if clock["paused_since"] or clock.get("stopped_on"):
        return None
    started = _d(clock["started_on"])
    return due_date(clock, started) + datetime.timedelta(days=1)
