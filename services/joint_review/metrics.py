"""joint_review's metrics, served by its worker (services/common/ops.py calls `register(role)`):

- `onething_tasks_open{department,region}`: tasks of open sessions still open (domain.OPEN_TASK_STATES:
  waiting on prerequisites, at the desk, approved with the licence to come, waiting for a supplement);
  `region` is the region whose desk decides the task;
- `onething_tasks_overdue{department,region}`: those of them flagged past their promised limit (督办,
  domain.check_clocks, which the worker runs every ONETHING_CLOCK_CHECK_SECONDS);
- `onething_clock_sessions{department,state}`: the legal clocks (办理时限, clock.py) of the tasks of open
  sessions by what they do: `running`, `paused_<reason>` (rectification, expert_inspection, hearing,
  testing: the steps the law does not count) or `stopped` (the department has decided);
- the outbox gauges of its sessions (services/common/outbox_metrics.py).

All three come from one aggregation over the open sessions (the `body.status` index), run when
Prometheus scrapes. A department or region seen once keeps its series, at 0 when it has nothing
open, so a queue that empties reads 0 rather than vanishing."""
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

from services.common import outbox_metrics
from services.common.outbox_metrics import SCRAPE_TIMEOUT_SECONDS, StoreGauges
from services.joint_review import clock, domain

SERVICE = "joint_review"

RUNNING, STOPPED, PAUSED = "running", "stopped", "paused"
#: the states of a task's clock, as `onething_clock_sessions` names them
CLOCK_STATES = (RUNNING, *(f"{PAUSED}_{reason.lower()}" for reason in clock.PAUSE_REASONS), STOPPED)

_OPEN_SESSION = domain.SESSION_STATUS_STORED[domain.SessionStatus.OPEN]
_OPEN_TASK = frozenset(domain.TASK_STATE_STORED[s] for s in domain.OPEN_TASK_STATES)

#: the tasks of the open sessions, counted by department, region, state, 督办 flag and what their
#: clock does (a clock is a dict or null; its dates are "" when unset). The tasks are lifted to a
#: field of their own before the $unwind: the same result, and on the local server (SecantusDB)
#: three times faster than unwinding `body.tasks` in place.
TASKS_PIPELINE: tuple[dict[str, Any], ...] = (
    {"$match": {"body.status": _OPEN_SESSION}},
    {"$project": {"_id": 0, "task": "$body.tasks"}},
    {"$unwind": "$task"},
    {"$group": {"_id": {"department": "$task.department_code", "region": "$task.region_code",
                        "state": "$task.state", "overdue": "$task.overdue",
                        "clocked": {"$gt": ["$task.clock", None]},
                        "paused": {"$gt": ["$task.clock.paused_since", ""]},
                        "paused_for": "$task.clock.paused_for",
                        "stopped": {"$gt": ["$task.clock.stopped_on", ""]}},
                "tasks": {"$sum": 1}}},
)


def clock_state(paused: bool, paused_for: str, stopped: bool) -> str:
    """What a task's clock does, in the label's words."""
    if stopped:
        return STOPPED
    if paused:
        reason = (paused_for or "").lower()
        named = f"{PAUSED}_{reason}"
        return named if named in CLOCK_STATES else PAUSED
    return RUNNING


@dataclass
class TaskTally:
    """The open sessions' tasks as the metrics count them."""
    open: Counter = field(default_factory=Counter)      # (department, region) -> tasks
    overdue: Counter = field(default_factory=Counter)   # (department, region) -> tasks
    clocks: Counter = field(default_factory=Counter)    # (department, clock state) -> clocks


def tally(rows: Iterable[dict]) -> TaskTally:
    """The counts of TASKS_PIPELINE's rows."""
    out = TaskTally()
    for row in rows:
        key, n = row.get("_id") or {}, int(row.get("tasks") or 0)
        department, region = str(key.get("department") or ""), str(key.get("region") or "")
        out.open[(department, region)] += 0  # seen: its series exists, at 0 if nothing is open
        if key.get("state") in _OPEN_TASK:
            out.open[(department, region)] += n
            if key.get("overdue") is True:
                out.overdue[(department, region)] += n
        if key.get("clocked"):
            state = clock_state(bool(key.get("paused")), str(key.get("paused_for") or ""), bool(key.get("stopped")))
            out.clocks[(department, state)] += n
    return out


class ReviewGauges(StoreGauges):
    """The task gauges of joint_review, from the sessions' collection `collection_of()` gives."""

    what = "onething_tasks_* and onething_clock_sessions of joint_review"

    def __init__(self, collection_of, timeout_seconds: float = SCRAPE_TIMEOUT_SECONDS) -> None:
        super().__init__(timeout_seconds)
        self.collection_of = collection_of
        self._places: set[tuple[str, str]] = set()   # (department, region) seen so far
        self._departments: set[str] = set()
        self._seen = threading.Lock()

    def families(self) -> list[GaugeMetricFamily]:
        return [GaugeMetricFamily("onething_tasks_open", "Open tasks of open joint review sessions",
                                  labels=["department", "region"]),
                GaugeMetricFamily("onething_tasks_overdue",
                                  "Open tasks past their promised limit (督办)", labels=["department", "region"]),
                GaugeMetricFamily("onething_clock_sessions",
                                  "Legal clocks of the tasks of open sessions, by what they do",
                                  labels=["department", "state"])]

    def measure(self) -> list[Metric]:
        counts = tally(self.collection_of().aggregate(list(TASKS_PIPELINE)))
        with self._seen:  # two scrapes at once
            self._places |= set(counts.open)
            self._departments |= {d for d, _ in counts.open} | {d for d, _ in counts.clocks}
            places, departments = sorted(self._places), sorted(self._departments)
        open_family, overdue_family, clock_family = self.families()
        for place in places:
            open_family.add_metric(list(place), counts.open[place])
            overdue_family.add_metric(list(place), counts.overdue[place])
        for department in departments:
            for state in CLOCK_STATES:
                clock_family.add_metric([department, state], counts.clocks[(department, state)])
            if counts.clocks[(department, PAUSED)]:  # a pause of no known reason (older sessions)
                clock_family.add_metric([department, PAUSED], counts.clocks[(department, PAUSED)])
        return [open_family, overdue_family, clock_family]


def register(role: str, registry: CollectorRegistry = REGISTRY) -> list[Collector]:
    """The worker serves the task gauges and the sessions' outbox; the api nothing of its own."""
    if outbox_metrics.check_role(role) != "worker":
        return []
    from services.joint_review.store import SessionDoc
    outbox = outbox_metrics.serve_outbox(registry, SERVICE, SessionDoc)
    gauges = outbox_metrics.register_once(SERVICE, registry, lambda: [ReviewGauges(SessionDoc._get_collection)])
    return [outbox, *gauges]
