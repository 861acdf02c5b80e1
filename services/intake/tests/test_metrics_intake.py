"""intake's metrics (services/intake/metrics.py): the cases by status, and how long a case took to
its end, observed once, on the move that ended it. Unit: the in-memory store (services/intake/fakes.py)
and the aggregation's rows as the store answers them; integration: the real store."""
import datetime
import logging
import uuid

import pytest
from prometheus_client import REGISTRY
from prometheus_client.registry import CollectorRegistry
from pymongo.errors import ServerSelectionTimeoutError

from services.common.bus import RecordingBus
from services.common.outbox_metrics import OutboxGauges
from services.intake import domain, metrics
from services.intake.fakes import Clock, FakeIntakeStore
from services.intake.handlers import Intake
from services.intake.metrics import CASES_PIPELINE, DURATION_BUCKETS, CaseGauges

UTC = datetime.UTC
SUBMITTED_AT = datetime.datetime(2026, 11, 26, 2, 0, tzinfo=UTC)
APPLICANT = "11010519491231002X"


# --- how long a case took -----------------------------------------------------------------------------

def durations(package):
    """(count, sum) of onething_case_duration_seconds for `package`, as the process serves it."""
    def value(suffix):
        return REGISTRY.get_sample_value(f"onething_case_duration_seconds_{suffix}", {"package": package}) or 0.0
    return value("count"), value("sum")


def in_bucket(package, le):
    return REGISTRY.get_sample_value("onething_case_duration_seconds_bucket", {"package": package, "le": le})


def a_case(store, status=domain.SUBMITTED, package=None):
    """A case of its own package (so each test reads its own series), in `store`, moved to `status`."""
    package = package or f"P{uuid.uuid4().hex[:8].upper()}"
    case = domain.Case(case_no=f"440100{package}{uuid.uuid4().int % 10 ** 12:012d}", package_code=package,
                       package_version=1, region_code="440100", applicant={"id_number": APPLICANT, "name": "李华"},
                       status=status, submitted_at=SUBMITTED_AT,
                       history=[domain.HistoryEntry(domain.SUBMITTED, SUBMITTED_AT.isoformat(), "submitted")])
    assert store.insert_case(case)
    return case


@pytest.fixture
def clock():
    return Clock(SUBMITTED_AT)


@pytest.fixture
def store():
    return FakeIntakeStore(RecordingBus("intake"))


@pytest.fixture
def intake(store, clock):
    return Intake(store, None, None, 1024, clock=clock)


def test_a_refused_case_is_observed_once_with_the_time_since_its_submission(intake, store, clock):
    case = a_case(store, domain.IN_REVIEW)
    clock.advance(hours=5)
    refused = domain.CaseConcluded(case_no=case.case_no, approved=False, reason="出生医学证明: 材料不符")
    assert intake.case_concluded(refused)
    assert durations(case.package_code) == (1.0, 5 * 3600.0)
    assert in_bucket(case.package_code, "14400.0") == 0.0 and in_bucket(case.package_code, "86400.0") == 1.0
    clock.advance(hours=1)
    assert not intake.case_concluded(refused)  # redelivered: not a second end
    assert durations(case.package_code) == (1.0, 5 * 3600.0)


def test_an_approved_case_ends_when_delivered_and_its_rating_is_no_second_end(intake, store, clock):
    case = a_case(store, domain.IN_REVIEW)
    clock.advance(minutes=30)
    assert intake.case_concluded(domain.CaseConcluded(case_no=case.case_no, approved=True))
    assert durations(case.package_code) == (0.0, 0.0)  # approved: its results are still to come
    clock.advance(minutes=30)
    assert intake.delivery_completed(domain.DeliveryCompleted(case_no=case.case_no))
    assert not intake.delivery_completed(domain.DeliveryCompleted(case_no=case.case_no))
    clock.advance(days=2)
    assert intake.evaluation_received(domain.EvaluationReceived(case_no=case.case_no))
    assert durations(case.package_code) == (1.0, 3600.0)


def test_a_rating_that_comes_before_the_delivery_ends_the_case(intake, store, clock):
    case = a_case(store, domain.APPROVED)
    clock.advance(seconds=42)
    assert intake.evaluation_received(domain.EvaluationReceived(case_no=case.case_no))
    assert not intake.delivery_completed(domain.DeliveryCompleted(case_no=case.case_no))  # late: changes nothing
    assert durations(case.package_code) == (1.0, 42.0)


def test_a_withdrawn_case_ends_when_withdrawn(intake, store, clock):
    case = a_case(store, domain.IN_REVIEW)
    clock.advance(days=3)
    assert intake.withdraw({"case_no": case.case_no, "applicant_id": APPLICANT}).status == domain.WITHDRAWN
    assert durations(case.package_code) == (1.0, 3 * 86400.0)


def test_moves_that_end_nothing_are_not_observed(intake, store, clock):
    case = a_case(store)
    intake.session_opened(domain.SessionOpened(case_no=case.case_no, item_codes=("I1",), department_codes=("gaj",)))
    intake.delivery_failed(domain.DeliveryFailed(case_no=case.case_no, attempt=1, reason="地址不详"))
    assert store.case(case.case_no).status == domain.DELIVERY_FAILED
    assert durations(case.package_code) == (0.0, 0.0)


def test_the_observation_never_fails_the_move(intake, store, clock, caplog):
    case = a_case(store, domain.IN_REVIEW)
    clock.now = datetime.datetime(2026, 11, 27)  # a clock without its zone: taken as UTC
    assert intake.case_concluded(domain.CaseConcluded(case_no=case.case_no, approved=False, reason="x"))
    assert durations(case.package_code) == (1.0, 22 * 3600.0)
    broken = a_case(store, domain.IN_REVIEW)
    clock.now = "not a moment"
    with caplog.at_level(logging.WARNING, logger="services.intake.metrics"):
        assert not metrics.case_moved(store.case(broken.case_no), domain.REJECTED, clock.now)
    assert "its duration is not observed" in caplog.text


def test_the_buckets_reach_from_seconds_to_the_joint_handling_ceiling():
    assert DURATION_BUCKETS == tuple(sorted(DURATION_BUCKETS))
    assert DURATION_BUCKETS[0] == 1 and DURATION_BUCKETS[-1] >= 45 * 7 / 5 * 86400  # 45 working days


# --- the cases by status --------------------------------------------------------------------------------

class Cases:
    def __init__(self, rows=(), away=False):
        self.rows, self.away = list(rows), away

    def aggregate(self, pipeline):
        if self.away:
            raise ServerSelectionTimeoutError("127.0.0.1:27017: [Errno 111] Connection refused")
        assert pipeline == list(CASES_PIPELINE)
        return iter(self.rows)


def by_status(collector):
    return {s.labels["status"]: s.value for family in collector.collect() for s in family.samples
            if s.name == "onething_cases"}


def test_every_status_has_its_count_zero_when_no_case_has_it():
    cases = Cases([{"_id": "CASE_STATUS_IN_REVIEW", "cases": 7}, {"_id": "CASE_STATUS_RATED", "cases": 120}])
    counts = by_status(CaseGauges(lambda: cases))
    assert counts == {s.value: 0.0 for s in domain.CaseStatus} | {"IN_REVIEW": 7.0, "RATED": 120.0}


def test_a_stored_status_the_domain_does_not_know_is_counted_as_unknown():
    cases = Cases([{"_id": "CASE_STATUS_ARCHIVED", "cases": 2}, {"_id": None, "cases": 1},
                   {"_id": "CASE_STATUS_SUBMITTED", "cases": 1}])
    counts = by_status(CaseGauges(lambda: cases))
    assert counts["unknown"] == 3.0 and counts["SUBMITTED"] == 1.0


def test_a_store_that_is_away_gives_no_case_count_and_one_warning(caplog):
    gauges = CaseGauges(lambda: Cases(away=True))
    with caplog.at_level(logging.WARNING):
        assert by_status(gauges) == {} and by_status(gauges) == {}
    [warning] = caplog.records
    assert "onething_cases of intake" in warning.getMessage()


def test_the_worker_serves_the_case_gauges_and_the_outbox_the_api_nothing_more():
    registry = CollectorRegistry()
    assert metrics.register("api", registry) == []
    outbox, cases = metrics.register("worker", registry)
    assert isinstance(outbox, OutboxGauges) and len(outbox.collections("intake")) == 1
    assert isinstance(cases, CaseGauges)


# --- against the real store -----------------------------------------------------------------------------

@pytest.mark.integration
def test_the_real_store_counts_its_cases_and_ends_a_case_once(own_database, clock):
    from services.common.testing import FlakyBus
    from services.intake.store import IntakeStore

    own_database("intake")
    bus = FlakyBus("intake", away=True)  # the broker away: the events of the moves stay pending
    store = IntakeStore(bus)
    outbox, cases = metrics.register("worker", CollectorRegistry())
    assert by_status(cases) == {s.value: 0.0 for s in domain.CaseStatus}

    package = f"P{uuid.uuid4().hex[:8].upper()}"
    made = [a_case(store, status, package) for status in
            (domain.SUBMITTED, domain.IN_REVIEW, domain.IN_REVIEW, domain.RATED, domain.DELIVERED)]
    intake = Intake(store, None, None, 1024, clock=clock)
    clock.advance(days=1, seconds=30)
    refused = domain.CaseConcluded(case_no=made[1].case_no, approved=False, reason="材料不符")
    assert intake.case_concluded(refused) and not intake.case_concluded(refused)
    withdrawal = {"case_no": made[2].case_no, "applicant_id": APPLICANT, "reason": "不办了"}
    assert intake.withdraw(withdrawal).status == domain.WITHDRAWN

    assert by_status(cases) == {s.value: 0.0 for s in domain.CaseStatus} | {
        "SUBMITTED": 1.0, "REJECTED": 1.0, "WITHDRAWN": 1.0, "RATED": 1.0, "DELIVERED": 1.0}
    assert durations(package) == (2.0, 2 * (86400.0 + 30))
    pending = {s.name: s.value for family in outbox.collect() for s in family.samples}
    assert pending["onething_outbox_pending"] == 1.0  # the withdrawal's case_withdrawn
