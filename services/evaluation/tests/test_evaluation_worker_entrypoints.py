"""The evaluation worker through nameko's own entrypoints (nameko.testing.services): each event
handler decodes its payload (as services.common.events.to_payload makes it) and calls the right use
case with the right domain values; a domain refusal is absorbed; the inbox skips an event id it has
seen (integration: the real inbox collection); the sweeper publishes what a failed publish left. A
city's evaluation events are decoded with their origin (the `site` and `event_id` headers) and rolled
up at the province, not at a city."""
import datetime as dt
import uuid
from unittest.mock import MagicMock

import pytest
from nameko.testing.services import entrypoint_hook, replace_dependencies
from nameko.testing.utils import get_extension

from onething.common.v1 import common_pb2
from onething.delivery.v1 import events_pb2 as delivery_events
from onething.evaluation.v1 import evaluation_pb2
from onething.evaluation.v1 import events_pb2 as evaluation_events
from onething.joint_review.v1 import events_pb2 as review_events
from services.common.audit import MemoryAuditLog
from services.common.bus import RecordingBus
from services.common.errors import FailedPrecondition
from services.common.events import to_payload
from services.common.testing import FlakyBus
from services.common.worker import Component, Inbox, OutboxSweeper
from services.evaluation.domain import Grade, Origin, Rateable, RatingReport, ReportKind, StatisticsGroup
from services.evaluation.fakes import FakeEvaluationStore
from services.evaluation.wiring import build_evaluation
from services.evaluation.worker import EvaluationWorker

APPLICANT = "11010519491231002X"
CONFIG = {"AMQP_URI": "memory://", "serializer": "json"}  # the container is never started: no broker

pytestmark = pytest.mark.usefixtures("green_waiting")  # entrypoint_hook without eventlet's monkey patch


def delivery_completed(case_no="C1", lead="wsjk"):
    return to_payload(delivery_events.DeliveryCompleted(
        case_no=case_no, channel=common_pb2.DELIVERY_CHANNEL_MAIL, applicant_id=APPLICANT,
        region_code="440100", package_code="XSECS", lead_department=lead))


def session_withdrawn(case_no="C1", after=True):
    overridden = {"overridden": "SESSION_STATUS_APPROVED"} if after else {}  # unset when not concluded
    return to_payload(review_events.SessionWithdrawn(case_no=case_no, after_conclusion=after, **overridden))


@pytest.fixture
def mocked(container_factory):
    """A container whose handlers are a mock: what the entrypoints call, with what."""
    container = container_factory(EvaluationWorker, CONFIG)
    evaluation = MagicMock()
    replace_dependencies(container, evaluation=evaluation, inbox=MagicMock())
    return container, evaluation


def with_handlers(container_factory, store, site="440100"):
    """A container whose Component builds the real handlers over `store`, as the site of region `site`
    (not started: set up by hand)."""
    container = container_factory(EvaluationWorker, CONFIG)
    replace_dependencies(container, inbox=MagicMock())
    component = get_extension(container, Component)
    component.factory = lambda: build_evaluation(store=store, audit=MemoryAuditLog("evaluation"), bad_review_days=5,
                                                 site=site)
    component.setup()
    return container, component.instance


def test_delivery_completed_is_decoded_into_a_rateable_case(mocked):
    container, evaluation = mocked
    with entrypoint_hook(container, "on_delivery_completed", timeout=10) as hook:
        hook(delivery_completed("C1", lead="gaj"))
    evaluation.case_delivered.assert_called_once_with(Rateable("C1", APPLICANT, "440100", "XSECS", "gaj"))
    evaluation.case_withdrawn.assert_not_called()


@pytest.mark.parametrize("after", [True, False])
def test_session_withdrawn_is_decoded_into_the_case_and_whether_it_was_concluded(mocked, after):
    container, evaluation = mocked
    with entrypoint_hook(container, "on_session_withdrawn", timeout=10) as hook:
        hook(session_withdrawn("C7", after=after))
    evaluation.case_withdrawn.assert_called_once_with("C7", after)
    evaluation.case_delivered.assert_not_called()


def test_a_domain_refusal_is_absorbed_not_retried(mocked):
    container, evaluation = mocked
    evaluation.case_delivered.side_effect = FailedPrecondition("nothing to do")
    with entrypoint_hook(container, "on_delivery_completed", timeout=10) as hook:
        assert hook(delivery_completed()) is None  # acknowledged: trying again would change nothing
    assert evaluation.case_delivered.call_count == 1


def test_the_events_reach_the_store_through_the_real_handlers(container_factory):
    store = FakeEvaluationStore(RecordingBus("evaluation"))
    container, _ = with_handlers(container_factory, store)
    with entrypoint_hook(container, "on_delivery_completed", timeout=10) as hook:
        hook(delivery_completed("C1"))
    assert store.rateable("C1") == Rateable("C1", APPLICANT, "440100", "XSECS", "wsjk")
    with entrypoint_hook(container, "on_session_withdrawn", timeout=10) as hook:
        hook(session_withdrawn("C1", after=False))
        assert not store.rateable("C1").withdrawn  # before the conclusion: evaluation has nothing to do
        hook(session_withdrawn("C1"))
    assert store.rateable("C1").withdrawn


def test_the_sweeper_publishes_an_entry_a_failed_publish_left(container_factory):
    store = FakeEvaluationStore(FlakyBus("evaluation", away=True))
    container, evaluation = with_handlers(container_factory, store)
    evaluation.case_delivered(Rateable("C1", APPLICANT, "440100", "XSECS", "wsjk"))
    evaluation.submit("C1", APPLICANT, "online", Grade.VERY_DISSATISFIED, {}, "没有说明原因")  # committed
    [(revision, _)] = store.rectifications("C1")
    assert [e["event_type"] for e in store.pending(revision.key)] == ["evaluation_received", "bad_review_opened"]
    store.bus = recording = RecordingBus("evaluation")  # the broker is back
    store.make_due(revision.key)  # their next try has come
    sweeper = get_extension(container, OutboxSweeper)
    assert sweeper.sweep_once() == 2
    assert recording.types() == ["evaluation_received", "bad_review_opened"]
    assert store.pending(revision.key) == [] and sweeper.sweep_once() == 0


@pytest.mark.integration
def test_the_inbox_skips_an_event_it_has_processed(container_factory, test_env):
    container = container_factory(EvaluationWorker, dict(CONFIG, AMQP_URI=test_env["ONETHING_AMQP_URI"]))
    evaluation = MagicMock()
    replace_dependencies(container, evaluation=evaluation)
    get_extension(container, Inbox).setup()  # the real inbox collection of this run's database
    event_id = uuid.uuid4().hex
    with entrypoint_hook(container, "on_delivery_completed", context_data={"event_id": event_id},
                         timeout=10) as hook:
        hook(delivery_completed("C1"))
        hook(delivery_completed("C1"))  # redelivered: the same event id
    with entrypoint_hook(container, "on_delivery_completed", context_data={"event_id": uuid.uuid4().hex},
                         timeout=10) as hook:
        hook(delivery_completed("C2"))
    assert [c.args[0].case_no for c in evaluation.case_delivered.call_args_list] == ["C1", "C2"]


# -- a city's evaluation events, rolled up at the province -------------------------------------------

RATED_AT = dt.datetime(2024, 3, 4, 17, 0, tzinfo=dt.UTC)  # 01:00 on 5 March in Shanghai
CITY_EVENTS = {
    "on_city_rated": (ReportKind.RATED, evaluation_events.EvaluationReceived(
        case_no="S1", grade=evaluation_pb2.GRADE_DISSATISFIED, bad_review=True, acted_by="applicant",
        channel=evaluation_pb2.CHANNEL_WINDOW, department_code="gaj", region_code="440300", package_code="KBQY",
        rated_at=RATED_AT)),
    "on_city_bad_review_opened": (ReportKind.BAD_REVIEW_OPENED, evaluation_events.BadReviewOpened(
        case_no="S1", channel=evaluation_pb2.CHANNEL_WINDOW, grade=evaluation_pb2.GRADE_DISSATISFIED,
        department_code="gaj", region_code="440300", package_code="KBQY", deadline={"year": 2024, "month": 3, "day": 12},
        opened_at=RATED_AT)),
    "on_city_bad_review_closed": (ReportKind.BAD_REVIEW_CLOSED, evaluation_events.BadReviewClosed(
        case_no="S1", channel=evaluation_pb2.CHANNEL_WINDOW, department_code="gaj", region_code="440300",
        package_code="KBQY", deadline={"year": 2024, "month": 3, "day": 12}, closed_at=dt.datetime(2024, 3, 6, 2, 0, tzinfo=dt.UTC),
        closed_by="chief-1", on_time=True, result="已改进")),
}


@pytest.mark.parametrize("method", list(CITY_EVENTS))
def test_a_city_event_is_decoded_with_its_origin(mocked, method):
    container, evaluation = mocked
    kind, message = CITY_EVENTS[method]
    with entrypoint_hook(container, method, context_data={"site": "440300", "event_id": "e1"}, timeout=10) as hook:
        hook(to_payload(message))
    closed = kind is ReportKind.BAD_REVIEW_CLOSED
    evaluation.city_report.assert_called_once_with(RatingReport(
        kind=kind, origin=Origin("440300", "e1"), case_no="S1", channel="window",
        grade=None if closed else Grade.DISSATISFIED, department_code="gaj", region_code="440300",
        package_code="KBQY", rated_on="" if closed else "2024-03-05", on_time=closed))


def test_an_event_without_its_headers_has_no_origin(mocked):
    container, evaluation = mocked
    with entrypoint_hook(container, "on_city_rated", context_data={"site": 440300}, timeout=10) as hook:
        hook(to_payload(CITY_EVENTS["on_city_rated"][1]))
    assert evaluation.city_report.call_args.args[0].origin == Origin("", "")


@pytest.mark.parametrize("own, event_site, counted", [
    ("440000", "440300", True),   # the province, a city's event
    ("440000", "440000", False),  # the province, its own
    ("440300", "440300", False),  # the city, its own
    ("440100", "440300", False),  # a sibling's
])
def test_the_province_rolls_up_its_cities_events_a_city_none(container_factory, own, event_site, counted):
    store = FakeEvaluationStore(RecordingBus("evaluation"))
    container, evaluation = with_handlers(container_factory, store, site=own)
    for i, (method, (_, message)) in enumerate(CITY_EVENTS.items()):
        with entrypoint_hook(container, method, context_data={"site": event_site, "event_id": f"e{i}"},
                             timeout=10) as hook:
            hook(to_payload(message))
    rows = evaluation.statistics(StatisticsGroup.REGION)
    if counted:
        assert rows == [{"key": "440300", "ratings": 1, "satisfied": 0, "satisfaction_rate": 0.0, "bad_reviews": 1,
                         "rectifications_closed": 1, "closed_on_time": 1, "rectifications_open": 0}]
    else:
        assert rows == [] and store.rolled == {}


def test_a_city_event_that_cannot_be_rolled_up_is_absorbed(container_factory):
    store = FakeEvaluationStore(RecordingBus("evaluation"))
    container, _ = with_handlers(container_factory, store, site="440000")
    from_before_sites = evaluation_events.EvaluationReceived(case_no="S1", grade=evaluation_pb2.GRADE_SATISFIED)
    with entrypoint_hook(container, "on_city_rated", context_data={"site": "440300", "event_id": "e1"},
                         timeout=10) as hook:
        assert hook(to_payload(from_before_sites)) is None  # acknowledged: trying again would change nothing
    assert store.rolled == {}
