"""elicense's worker under nameko's test tools: each event handler listens to its event, decodes
its payload (a real event message, encoded as joint_review's publisher does,
services.common.events.to_payload) into domain values and calls the right use case with them; an
event id already in the inbox is skipped; the bus look-up answers the licence as elicense keeps it;
the OutboxSweeper finds the handlers' store and publishes what a broker outage left pending. No
broker: the tests run without eventlet's monkey patching, so no container is started; handlers are
built by the service's wiring over services.elicense.fakes."""
import time
from unittest import mock

import pytest
from nameko.containers import ServiceContainer, WorkerContext
from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR, Entrypoint
from nameko.testing.services import worker_factory
from nameko.testing.utils import get_extension

from onething.common.v1 import common_pb2
from onething.joint_review.v1 import events_pb2 as review_events
from onething.joint_review.v1 import joint_review_pb2 as review_pb
from services.common.audit import MemoryAuditLog
from services.common.errors import FailedPrecondition
from services.common.events import to_payload
from services.common.testing import FlakyBus, MemoryInboxCollection, dependency
from services.common.worker import Component, OutboxSweeper
from services.elicense import codec
from services.elicense.domain import Decision, LicenseStatus, Opinion, Party, ResultType, Supersedes, Withdrawal
from services.elicense.fakes import MemoryBlobs, MemoryLicenseStore
from services.elicense.handlers import Elicense
from services.elicense.wiring import build_elicense
from services.elicense.worker import ElicenseWorker, issues_a_licence

CASE = "440100ESFGH202611270002"
BUYER = common_pb2.Party(role="buyer", name="买方甲", id_number="440106199001011234", code_type="111")
SELLER = "440106198002021234"


def opinion_message(case_no=CASE, decision=common_pb2.DECISION_APPROVE, license_ids=("L-OLD",)):
    return review_events.OpinionRecorded(
        case_no=case_no, item_code="160000000002", department_code="zrzy", region_code="440100",
        decision=decision, reason="材料齐全", decided_by="officer-9", result_type=common_pb2.RESULT_TYPE_LICENSE,
        license_type_code="BDCQZ", license_type_name="不动产权证书", item_name="不动产转移登记",
        holder=BUYER, issuer_name="广州市规划和自然资源局",
        supersedes=review_events.Supersedes(holder_code=SELLER, license_type_code="BDCQZ",
                                            license_ids=list(license_ids), party="seller"))


def worker_over(handlers):
    """ElicenseWorker whose Component holds `handlers` (built by the service's wiring from fakes)."""
    class Worker(ElicenseWorker):
        elicense = Component(lambda: handlers)
    return Worker


@pytest.fixture
def bus():
    return FlakyBus("elicense")


class Clock:
    """time.time, or later: the outbox's view of now."""

    def __init__(self):
        self.ahead = 0.0

    def __call__(self):
        return time.time() + self.ahead


@pytest.fixture
def outbox_clock():
    return Clock()


@pytest.fixture
def store(bus, outbox_clock):
    return MemoryLicenseStore(bus, clock=outbox_clock)


@pytest.fixture
def handlers(store):
    return build_elicense(store=store, blobs=MemoryBlobs(), audit=MemoryAuditLog("elicense"))


def handlers_mock():
    return mock.create_autospec(Elicense, instance=True)


def issue(handlers, case_no=CASE, holder_code="440106199001011234", name="买方甲"):
    return handlers.on_opinion(Opinion(
        case_no=case_no, item_code="160000000002", decision=Decision.APPROVE, result_type=ResultType.LICENSE,
        department_code="zrzy", region_code="440100", license_type_code="BDCQZ", license_type_name="不动产权证书",
        holder=Party(role="buyer", name=name, id_number=holder_code)))


# --- event handlers: what they listen to, what they decode, what they call ----------------------


@pytest.mark.parametrize("method, event_type", [("on_opinion_recorded", "opinion_recorded"),
                                                ("on_session_withdrawn", "session_withdrawn")])
def test_each_handler_listens_to_its_event_and_is_retried_on_error(method, event_type):
    (ext,) = getattr(getattr(ElicenseWorker, method), ENTRYPOINT_EXTENSIONS_ATTR)
    assert (ext.source_service, ext.event_type, ext.requeue_on_error) == ("joint_review", event_type, True)


def test_opinion_recorded_is_decoded_into_an_opinion_for_on_opinion():
    elicense = handlers_mock()
    worker_factory(ElicenseWorker, elicense=elicense).on_opinion_recorded(to_payload(opinion_message()))
    elicense.on_opinion.assert_called_once_with(Opinion(
        case_no=CASE, item_code="160000000002", decision=Decision.APPROVE, result_type=ResultType.LICENSE,
        department_code="zrzy", region_code="440100", license_type_code="BDCQZ", license_type_name="不动产权证书",
        issuer_name="广州市规划和自然资源局",
        holder=Party(role="buyer", name="买方甲", id_number="440106199001011234", code_type="111"),
        supersedes=Supersedes(holder_code=SELLER, license_type_code="BDCQZ", license_ids=("L-OLD",),
                              party="seller")))
    elicense.on_session_withdrawn.assert_not_called()


@pytest.mark.parametrize("number, decision", [(common_pb2.DECISION_REJECT, Decision.REJECT),
                                              (common_pb2.DECISION_RECTIFY, Decision.RECTIFY),
                                              (common_pb2.DECISION_UNSPECIFIED, Decision.UNSPECIFIED),
                                              (42, Decision.UNSPECIFIED)])
def test_each_decision_number_is_decoded_to_its_decision_and_issues_nothing(number, decision):
    message = opinion_message(decision=number)
    message.ClearField("supersedes")
    opinion = codec.opinion_of(message)
    assert opinion.decision is decision and opinion.supersedes is None and not opinion.issues_a_licence
    # so the worker acknowledges it without calling on_opinion or looking at its inbox
    assert not issues_a_licence(to_payload(message))
    container = ServiceContainer(ElicenseWorker, {"AMQP_URI": "memory://"})
    inbox = dependency(container, "inbox")
    inbox.collection = mock.MagicMock(wraps=MemoryInboxCollection())
    entrypoint = get_extension(container, Entrypoint, method_name="on_opinion_recorded")
    ctx = WorkerContext(container, ElicenseWorker, entrypoint, data={"event_id": "e-9"})
    elicense = handlers_mock()
    worker = worker_factory(ElicenseWorker, elicense=elicense, inbox=inbox.get_dependency(ctx))
    assert worker.on_opinion_recorded(to_payload(message)) is None
    elicense.on_opinion.assert_not_called()
    assert inbox.collection.mock_calls == []  # neither looked up nor recorded


def test_an_approved_item_whose_result_is_no_licence_issues_nothing_and_skips_the_inbox():
    message = opinion_message()
    message.result_type = common_pb2.RESULT_TYPE_RECORD  # a registration record (登记), no licence
    assert not issues_a_licence(to_payload(message)) and issues_a_licence(to_payload(opinion_message()))
    elicense = handlers_mock()
    worker_factory(ElicenseWorker, elicense=elicense).on_opinion_recorded(to_payload(message))
    elicense.on_opinion.assert_not_called()


def test_an_approved_licence_item_issues_the_licence_to_its_holder_and_supersedes_the_sellers(handlers, store,
                                                                                              bus):
    old = issue(handlers, "440100ESFGH202611270001", holder_code=SELLER, name="卖方乙")
    worker = worker_factory(ElicenseWorker, elicense=handlers)
    worker.on_opinion_recorded(to_payload(opinion_message(license_ids=[old["license_id"]])))
    [new] = store.by_case(CASE)
    assert (new["holder_code"], new["holder_name"], new["issuer_name"]) == (
        "440106199001011234", "买方甲", "广州市规划和自然资源局")
    assert store.get(old["license_id"])["status"] is LicenseStatus.SUPERSEDED
    # the region's first key is made (and published) with the first licence
    assert bus.types() == ["signing_key_published.440100", "license_issued", "license_issued", "license_revoked"]
    assert store.pending(new["license_id"]) == [] and store.pending(old["license_id"]) == []


def test_a_rejection_issues_nothing(handlers, store, bus):
    worker = worker_factory(ElicenseWorker, elicense=handlers)
    assert worker.on_opinion_recorded(to_payload(opinion_message(decision=common_pb2.DECISION_REJECT))) is None
    assert store.by_case(CASE) == [] and bus.published == []


def test_session_withdrawn_is_decoded_into_a_withdrawal_for_on_session_withdrawn():
    elicense = handlers_mock()
    worker_factory(ElicenseWorker, elicense=elicense).on_session_withdrawn(to_payload(review_events.SessionWithdrawn(
        case_no=CASE, region_code="440100", license_ids=["L1", "L2"], after_conclusion=True,
        overridden=review_pb.SESSION_STATUS_APPROVED, withdrawn_at=codec.timestamp_of_iso("2026-11-27T10:00:00+08:00"),
        reason="不办了")))
    elicense.on_session_withdrawn.assert_called_once_with(Withdrawal(case_no=CASE, license_ids=("L1", "L2"),
                                                                     after_conclusion=True))
    elicense.on_opinion.assert_not_called()


def test_a_withdrawn_case_has_its_licences_revoked(handlers, store, bus):
    lic = issue(handlers)
    worker = worker_factory(ElicenseWorker, elicense=handlers)
    worker.on_session_withdrawn(to_payload(review_events.SessionWithdrawn(case_no=CASE, after_conclusion=False)))
    assert store.get(lic["license_id"])["status"] is LicenseStatus.REVOKED
    assert bus.types() == ["signing_key_published.440100", "license_issued", "license_revoked"]
    assert bus.published[-1][1]["reason"] == "the case was withdrawn by the applicant"


def test_a_domain_refusal_is_absorbed_and_any_other_failure_raised_for_a_retry():
    elicense = handlers_mock()
    worker = worker_factory(ElicenseWorker, elicense=elicense)
    elicense.on_session_withdrawn.side_effect = FailedPrecondition("revoked meanwhile")
    assert worker.on_session_withdrawn(to_payload(review_events.SessionWithdrawn(case_no=CASE))) is None
    elicense.on_opinion.side_effect = ValueError("opinion names no holder")
    with pytest.raises(ValueError, match="names no holder"):  # retried, then dead-lettered
        worker.on_opinion_recorded(to_payload(opinion_message()))


# --- the bus look-up ----------------------------------------------------------------------------


def test_get_license_answers_the_licence_as_elicense_keeps_it(handlers):
    lic = issue(handlers)
    worker = worker_factory(ElicenseWorker, elicense=handlers)
    answer = worker.get_license(lic["license_id"])
    # joint_review's desk and delivery compare the status with these strings
    assert answer["status"] == "LICENSE_STATUS_VALID" and type(answer["status"]) is str
    assert answer["document_key"] == lic["document_key"] and answer["license_id"] == lic["license_id"]
    assert worker.get_license("1.2.156.3005.2.X.Y.1.001.Z") is None
    handlers.revoke(lic["license_id"], "登记错误", "officer-1")
    assert worker.get_license(lic["license_id"])["status"] == "LICENSE_STATUS_REVOKED"


# --- the container's own dependencies: the inbox and the sweeper --------------------------------


def test_an_event_id_already_in_the_inbox_is_skipped(handlers, bus):
    container = ServiceContainer(ElicenseWorker, {"AMQP_URI": "memory://"})  # as `nameko run` builds it
    inbox = dependency(container, "inbox")
    inbox.collection = MemoryInboxCollection()
    entrypoint = get_extension(container, Entrypoint, method_name="on_opinion_recorded")
    spy = mock.MagicMock(wraps=handlers)
    for _ in range(2):  # the same event delivered twice (a redelivery, a federated copy)
        ctx = WorkerContext(container, ElicenseWorker, entrypoint, data={"event_id": "e-1"})
        worker = worker_factory(ElicenseWorker, elicense=spy, inbox=inbox.get_dependency(ctx))
        worker.on_opinion_recorded(to_payload(opinion_message(license_ids=[])))
    assert spy.on_opinion.call_count == 1 and bus.types() == ["signing_key_published.440100", "license_issued"]
    assert list(inbox.collection.docs) == ["elicense.on_opinion_recorded:e-1"]


def test_the_sweeper_publishes_an_event_a_broker_outage_left_pending(handlers, store, bus, outbox_clock):
    container = ServiceContainer(worker_over(handlers), {"AMQP_URI": "memory://"})
    dependency(container, "elicense").setup()  # Component builds its handlers as at start-up
    bus.away = True
    lic = issue(handlers)
    [left] = store.pending(lic["license_id"])
    [key_left] = store.pending(lic["key_id"])  # the region's first key, made with the licence
    assert bus.published == [] and left["event_type"] == "license_issued"
    assert key_left["event_type"] == "signing_key_published.440100"
    bus.away = False
    sweeper = get_extension(container, OutboxSweeper)
    assert sweeper is dependency(container, "sweeper")
    assert sweeper.sweep_once() == 0  # not due yet: its retry time has not come
    outbox_clock.ahead = 60.0
    assert sweeper.sweep_once() == 2
    assert [(t, h["event_id"]) for t, _, h in bus.published] == [
        ("license_issued", left["id"]), ("signing_key_published.440100", f"signing_key_published:440100:{lic['key_id']}")]
    assert store.pending(lic["license_id"]) == [] and store.pending(lic["key_id"]) == []
    assert sweeper.sweep_once() == 0
