"""joint_review's gauges (services/joint_review/metrics.py): open and overdue tasks by department and
region, and the legal clocks of open sessions by what they do. Unit: the aggregation's rows as the
store answers them, a store that is away; integration: sessions the domain made, saved by the real
store, read back by the gauges (and the sessions' outbox gauges beside them)."""
import datetime
import logging

import pytest
from prometheus_client.registry import CollectorRegistry
from pymongo.errors import ServerSelectionTimeoutError

from services.common.outbox_metrics import OutboxGauges
from services.joint_review import domain, metrics
from services.joint_review.metrics import CLOCK_STATES, TASKS_PIPELINE, ReviewGauges

ASSIGNED, PENDING, RECTIFYING, DONE, CLOSED = (domain.TASK_STATE_STORED[s] for s in (
    domain.ASSIGNED, domain.PENDING, domain.RECTIFYING, domain.DONE, domain.CLOSED))


def row(department, region, state, n, overdue=False, clock=None):
    """One row of TASKS_PIPELINE as the store answers it: `clock` None (no clock), "running",
    "stopped" or a pause reason."""
    key = {"department": department, "region": region, "state": state, "overdue": overdue,
           "clocked": clock is not None, "paused": clock not in (None, "running", "stopped"),
           "stopped": clock == "stopped"}
    if key["paused"]:
        key["paused_for"] = clock
    return {"_id": key, "tasks": n}


class Sessions:
    """The sessions' collection as the gauges see it: the rows it answers, or away."""

    def __init__(self, rows=(), away=False):
        self.rows, self.away = list(rows), away

    def aggregate(self, pipeline):
        if self.away:
            raise ServerSelectionTimeoutError("127.0.0.1:27017: [Errno 111] Connection refused")
        assert pipeline == list(TASKS_PIPELINE)
        return iter(self.rows)


def samples(collector):
    """{(metric name, *label values in the metric's order): value} of one collect()."""
    return {(s.name, *s.labels.values()): s.value for family in collector.collect() for s in family.samples}


def by_metric(found, name):
    return {key[1:]: value for key, value in found.items() if key[0] == name}


def test_open_tasks_and_the_overdue_among_them_by_department_and_region():
    sessions = Sessions([row("wsjk", "440100", ASSIGNED, 3, clock="running"),
                         row("wsjk", "440100", ASSIGNED, 2, overdue=True, clock="running"),
                         row("wsjk", "440100", RECTIFYING, 1, clock="RECTIFICATION"),
                         row("gaj", "440100", PENDING, 4),
                         row("ybj", "440000", DONE, 5, overdue=True, clock="stopped")])
    found = samples(ReviewGauges(lambda: sessions))
    assert by_metric(found, "onething_tasks_open") == {("wsjk", "440100"): 6.0, ("gaj", "440100"): 4.0,
                                                       ("ybj", "440000"): 0.0}
    # a finished task flagged overdue once is no longer overdue work
    assert by_metric(found, "onething_tasks_overdue") == {("wsjk", "440100"): 2.0, ("gaj", "440100"): 0.0,
                                                          ("ybj", "440000"): 0.0}


def test_the_clocks_of_each_department_by_what_they_do():
    sessions = Sessions([row("wsjk", "440100", ASSIGNED, 3, clock="running"),
                         row("wsjk", "440300", ASSIGNED, 1, clock="running"),
                         row("wsjk", "440100", RECTIFYING, 2, clock="RECTIFICATION"),
                         row("wsjk", "440100", ASSIGNED, 1, clock="HEARING"),
                         row("gaj", "440100", ASSIGNED, 1, clock="EXPERT_INSPECTION"),
                         row("gaj", "440100", DONE, 7, clock="stopped"),
                         row("gaj", "440100", PENDING, 2)])  # waiting on its prerequisites: no clock yet
    clocks = by_metric(samples(ReviewGauges(lambda: sessions)), "onething_clock_sessions")
    assert CLOCK_STATES == ("running", "paused_rectification", "paused_expert_inspection", "paused_hearing",
                            "paused_testing", "stopped")
    assert {k: v for k, v in clocks.items() if v} == {
        ("wsjk", "running"): 4.0, ("wsjk", "paused_rectification"): 2.0, ("wsjk", "paused_hearing"): 1.0,
        ("gaj", "paused_expert_inspection"): 1.0, ("gaj", "stopped"): 7.0}
    assert len(clocks) == 2 * len(CLOCK_STATES)  # every state of every department, 0 when none


def test_a_pause_of_no_recorded_reason_is_counted_as_paused():
    sessions = Sessions([{"_id": {"department": "wsjk", "region": "440100", "state": ASSIGNED, "overdue": False,
                                  "clocked": True, "paused": True, "stopped": False}, "tasks": 2}])
    clocks = by_metric(samples(ReviewGauges(lambda: sessions)), "onething_clock_sessions")
    assert clocks[("wsjk", "paused")] == 2.0 and clocks[("wsjk", "running")] == 0.0


def test_a_department_whose_work_is_all_done_reads_zero_not_nothing():
    sessions = Sessions([row("wsjk", "440100", ASSIGNED, 2, overdue=True, clock="running")])
    gauges = ReviewGauges(lambda: sessions)
    assert samples(gauges)[("onething_tasks_open", "wsjk", "440100")] == 2.0
    sessions.rows = []  # the session concluded
    found = samples(gauges)
    assert found[("onething_tasks_open", "wsjk", "440100")] == 0.0
    assert found[("onething_tasks_overdue", "wsjk", "440100")] == 0.0
    assert found[("onething_clock_sessions", "wsjk", "running")] == 0.0


def test_no_session_open_and_none_seen_gives_the_metrics_without_samples():
    assert samples(ReviewGauges(lambda: Sessions([]))) == {}


def test_a_store_that_is_away_gives_no_sample_and_one_warning(caplog):
    gauges = ReviewGauges(lambda: Sessions(away=True))
    with caplog.at_level(logging.WARNING):
        assert samples(gauges) == {} and samples(gauges) == {}
    [warning] = caplog.records
    assert "joint_review" in warning.getMessage() and warning.exc_info is None


def test_the_worker_serves_the_task_gauges_and_the_outbox_the_api_nothing():
    registry = CollectorRegistry()
    assert metrics.register("api", registry) == []
    outbox, gauges = metrics.register("worker", registry)
    assert isinstance(outbox, OutboxGauges) and len(outbox.collections("joint_review")) == 1
    assert isinstance(gauges, ReviewGauges)
    assert metrics.register("worker", registry) == [outbox, gauges]


# --- against the real store -------------------------------------------------------------------------

NOW = "2026-03-02T10:00:00+08:00"  # a Monday
LATER = "2026-03-03T10:00:00+08:00"
PACKAGE = {"code": "JGYS", "name": "工程建设项目竣工联合验收", "lead_department": "zjj", "promised_limit_days": 20,
           "items": [{"code": "A1", "name": "规划核实", "department_code": "zrzy", "promised_limit_days": 5},
                     {"code": "A2", "name": "消防验收", "department_code": "zjj", "promised_limit_days": 5,
                      "prerequisites": ["A1"]},
                     {"code": "A3", "name": "人防验收", "department_code": "rf", "promised_limit_days": 5,
                      "implementing_region": "440000"}]}
CASE = {"applicant": {"name": "某公司"}, "materials": [{"material_code": "G1"}], "package_code": "JGYS"}


def opened(case_no):
    session = domain.new_session(case_no, "440100", PACKAGE, NOW)
    domain.advance(session, NOW)
    return session


@pytest.mark.integration
def test_the_gauges_read_the_sessions_the_real_store_keeps(own_database):
    from onething.joint_review.v1 import events_pb2 as review_events
    from services.common.bus import outbox_entry
    from services.common.testing import FlakyBus
    from services.joint_review.store import SessionStore

    own_database("joint_review")
    bus = FlakyBus("joint_review", away=True)
    store = SessionStore(bus)
    outbox, gauges = metrics.register("worker", CollectorRegistry())

    # 1: A1 at its desk and past its limit (督办), A2 waiting for it, A3 waiting for a supplement
    first = opened("440100JGYS202603020001")
    domain.record_opinion(first, "A3", "rf", domain.RECTIFY, "图纸不全", "desk:rf", LATER, materials=["G1"])
    assert [t["item_code"] for t in domain.check_clocks(first, datetime.date(2026, 4, 1))] == ["A1"]
    # 2: A1 approved (its clock stopped), A2 at its desk with the clock stopped for a hearing, A3 at its desk
    second = opened("440100JGYS202603020002")
    domain.record_opinion(second, "A1", "zrzy", domain.APPROVE, "", "desk:zrzy", LATER)
    domain.advance(second, LATER)
    domain.suspend(second, "A2", "zjj", "HEARING", LATER)
    # 3: withdrawn: nothing of it is open
    third = opened("440100JGYS202603020003")
    domain.withdraw(third, LATER)
    for session in (first, second, third):
        events = [outbox_entry("session_opened", review_events.SessionOpened(case_no=session["case_no"]),
                               session["case_no"])] if session is first else []
        assert store.create(session, CASE, events)

    found = samples(gauges)
    assert by_metric(found, "onething_tasks_open") == {("zrzy", "440100"): 1.0, ("zjj", "440100"): 2.0,
                                                       ("rf", "440000"): 2.0}
    assert by_metric(found, "onething_tasks_overdue") == {("zrzy", "440100"): 1.0, ("zjj", "440100"): 0.0,
                                                          ("rf", "440000"): 0.0}
    assert {k: v for k, v in by_metric(found, "onething_clock_sessions").items() if v} == {
        ("zrzy", "running"): 1.0, ("zrzy", "stopped"): 1.0, ("zjj", "paused_hearing"): 1.0,
        ("rf", "paused_rectification"): 1.0, ("rf", "running"): 1.0}
    assert samples(outbox)[("onething_outbox_pending", "joint_review")] == 1.0

    from services.joint_review.store import SessionDoc
    sessions = SessionDoc._get_collection()  # the open sessions are found by the body.status index
    plan = sessions.database.command("explain", {"aggregate": sessions.name, "pipeline": list(TASKS_PIPELINE),
                                                 "cursor": {}})
    assert "IXSCAN" in str(plan) and "COLLSCAN" not in str(plan)
