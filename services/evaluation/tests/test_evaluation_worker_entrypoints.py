"""The evaluation worker through nameko's own entrypoints (nameko.testing.services): each event
handler decodes its payload (as services.common.events.to_payload makes it) and calls the right use
case with the right domain values; a domain refusal is absorbed; the inbox skips an event id it has
seen (integration: the real inbox collection); the sweeper publishes what a failed publish left."""
import uuid
from unittest.mock import MagicMock

import pytest
from nameko.testing.services import entrypoint_hook, replace_dependencies
from nameko.testing.utils import get_extension

from onething.common.v1 import common_pb2
from onething.delivery.v1 import events_pb2 as delivery_events
from onething.joint_review.v1 import events_pb2 as review_events
from services.common.audit import MemoryAuditLog
from services.common.bus import RecordingBus
from services.common.errors import FailedPrecondition
from services.common.events import to_payload
from services.common.testing import FlakyBus
from services.common.worker import Component, Inbox, OutboxSweeper
from services.evaluation.domain import Grade, Rateable
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


def with_handlers(container_factory, store):
    """A container whose Component builds the real handlers over `store` (not started: set up by hand)."""
    container = container_factory(EvaluationWorker, CONFIG)
    replace_dependencies(container, inbox=MagicMock())
    component = get_extension(container, Component)
    component.factory = lambda: build_evaluation(store=store, audit=MemoryAuditLog("evaluation"), bad_review_days=5)
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
