"""intake's metrics (services/common/ops.py calls `register(role)`):

- `onething_cases{status}` (worker): the cases by status, one aggregation when Prometheus scrapes;
  every status has its series, at 0 when no case has it;
- `onething_case_duration_seconds{package}`: how long a case took from its submission to its end,
  observed once, by the handler that moves it there (`case_moved`, after the save that did it);
  the worker ends cases (delivered, rated, rejected), the api the withdrawn ones, so both
  processes serve it;
- the outbox gauges of its cases (worker; services/common/outbox_metrics.py).

A case ends the first time it reaches one of ENDED: its results delivered, or rated (a rating may
come before delivery says it is done), refused, or withdrawn. Nothing moves it back; what follows
(a rating after the delivery) is not a second end."""
import datetime
import logging
from collections.abc import Iterable
from typing import Any

from prometheus_client import Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

from services.common import outbox_metrics
from services.common.outbox_metrics import SCRAPE_TIMEOUT_SECONDS, StoreGauges
from services.intake import domain

SERVICE = "intake"
log = logging.getLogger(__name__)

ENDED = frozenset({domain.DELIVERED, domain.RATED, domain.REJECTED, domain.WITHDRAWN})

_MINUTE, _HOUR, _DAY = 60, 3600, 86400
#: seconds: a case the desks decide by rule ends in seconds, one people decide in days; the joint
#: handling ceiling is 45 working days (nine weeks, more with the holidays), under the last bucket
DURATION_BUCKETS = (1, 5, 15, _MINUTE, 5 * _MINUTE, 15 * _MINUTE, _HOUR, 4 * _HOUR, _DAY, 3 * _DAY, 7 * _DAY,
                    30 * _DAY, 90 * _DAY)

CASE_DURATION = Histogram("onething_case_duration_seconds", "Seconds from a case's submission to its end "
                          "(delivered, rated, refused or withdrawn), by package", ["package"],
                          buckets=DURATION_BUCKETS)


def case_moved(case: domain.Case, status: domain.CaseStatus, at: datetime.datetime) -> bool:
    """`case` (as it was) has just been saved with `status` at `at`: when that ends it, its
    duration is observed. True when it was. Never raises: a metric does not fail a use case."""
    try:
        if case.status in ENDED or domain.CaseStatus(status) not in ENDED:
            return False
        submitted, at = _aware(case.submitted_at), _aware(at)
        seconds = max(0.0, (at - submitted).total_seconds())
        CASE_DURATION.labels(package=case.package_code or "unknown").observe(seconds)
        return True
    except Exception as exc:
        log.warning("case %s: its duration is not observed (%s: %s)", getattr(case, "case_no", "?"),
                    type(exc).__name__, exc)
        return False


def _aware(moment: datetime.datetime) -> datetime.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.UTC)  # stored moments are UTC


#: every case, counted by its stored status
CASES_PIPELINE: tuple[dict[str, Any], ...] = ({"$group": {"_id": "$status", "cases": {"$sum": 1}}},)

UNKNOWN = "unknown"


def count_by_status(rows: Iterable[dict]) -> dict[str, int]:
    """{status (the domain's word, or `unknown` for a stored string it does not know): cases}, every
    status of the domain present."""
    counts = {status.value: 0 for status in domain.CaseStatus}
    for row in rows:
        status = domain.STATUS_OF_STORED.get(str(row.get("_id")))
        key = status.value if status is not None else UNKNOWN
        counts[key] = counts.get(key, 0) + int(row.get("cases") or 0)
    return counts


class CaseGauges(StoreGauges):
    """`onething_cases{status}` from the cases' collection `collection_of()` gives."""

    what = "onething_cases of intake"

    def __init__(self, collection_of, timeout_seconds: float = SCRAPE_TIMEOUT_SECONDS) -> None:
        super().__init__(timeout_seconds)
        self.collection_of = collection_of

    def families(self) -> list[GaugeMetricFamily]:
        return [GaugeMetricFamily("onething_cases", "Cases by status", labels=["status"])]

    def measure(self) -> list[Metric]:
        counts = count_by_status(self.collection_of().aggregate(list(CASES_PIPELINE)))
        (family,) = self.families()
        for status, n in counts.items():
            family.add_metric([status], n)
        return [family]


def register(role: str, registry: CollectorRegistry = REGISTRY) -> list[Collector]:
    """The worker serves the case gauges and the cases' outbox; both roles the case durations (a
    histogram of this module, in the default registry from its import)."""
    if outbox_metrics.check_role(role) != "worker":
        return []
    from services.intake.store import CaseDoc
    outbox = outbox_metrics.serve_outbox(registry, SERVICE, CaseDoc)
    gauges = outbox_metrics.register_once(SERVICE, registry, lambda: [CaseGauges(CaseDoc._get_collection)])
    return [outbox, *gauges]
