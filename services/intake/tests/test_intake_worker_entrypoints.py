"""intake's worker through nameko's own machinery: the worker's container as `nameko run` builds it
(not started: no broker is needed), each event handler driven by `entrypoint_hook` with the
payload a publisher sends (services.common.events.to_payload of a real event message). Each
handler listens to its event, decodes the payload once into the domain's value and calls the
right use case with it; an event id already in the inbox is skipped; a domain refusal is absorbed
and an outage raised for a retry; the OutboxSweeper finds the handlers' store and publishes what a
failed publish left pending."""
import datetime
from unittest import mock

import eventlet
import pytest
from nameko.containers import ServiceContainer
from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR
from nameko.testing.services import entrypoint_hook, replace_dependencies

from onething.common.v1 import common_pb2
from onething.delivery.v1 import delivery_pb2
from onething.delivery.v1 import events_pb2 as delivery_events
from onething.elicense.v1 import events_pb2 as license_events
from onething.evaluation.v1 import evaluation_pb2
from onething.evaluation.v1 import events_pb2 as evaluation_events
from onething.joint_review.v1 import events_pb2 as review_events
from onething.joint_review.v1 import joint_review_pb2
from services.common.audit import MemoryAuditLog
from services.common.errors import FailedPrecondition
from services.common.events import to_payload
from services.common.testing import FlakyBus, MemoryInboxCollection, dependency
from services.intake import domain
from services.intake.convert import date, timestamp
from services.intake.fakes import Clock, FakeIntakeStore, MemoryBlobs
from services.intake.handlers import Intake
from services.intake.wiring import build_intake
from services.intake.worker import IntakeWorker

CASE = "440100XSECS202611260001"
APPLICANT = common_pb2.Applicant(id_number="11010519491231002X", name="李华")
MAIL, ELECTRONIC = common_pb2.DELIVERY_CHANNEL_MAIL, common_pb2.DELIVERY_CHANNEL_ELECTRONIC

# (entrypoint, source service, event type, use case, the event as published, what the use case gets)
HANDLERS = [
    ("on_case_concluded", "joint_review", "case_concluded", "case_concluded",
     review_events.CaseConcluded(case_no=CASE, approved=True, reason="符合条件", license_ids=["L1", "L2"],
                                 applicant=APPLICANT, region_code="440100", package_code="XSECS",
                                 lead_department="wsjk"),
     domain.CaseConcluded(case_no=CASE, approved=True, reason="符合条件", license_ids=("L1", "L2"))),
    ("on_rectification_requested", "joint_review", "rectification_requested", "rectification_requested",
     review_events.RectificationRequested(case_no=CASE, item_code="110000000003", department_code="gaj",
                                          material_codes=["M02", "M03"], reason="照片模糊", defects=["模糊"], round=2),
     domain.RectificationRequested(case_no=CASE, item_code="110000000003", department_code="gaj",
                                   material_codes=("M02", "M03"), reason="照片模糊", round=2)),
    ("on_delivery_completed", "delivery", "delivery_completed", "delivery_completed",
     delivery_events.DeliveryCompleted(case_no=CASE, channel=MAIL, applicant_id="11010519491231002X",
                                       completed_by="李华", attempt=2),
     domain.DeliveryCompleted(case_no=CASE, attempt=2)),
    ("on_evaluation_received", "evaluation", "evaluation_received", "evaluation_received",
     evaluation_events.EvaluationReceived(case_no=CASE, grade=evaluation_pb2.GRADE_DISSATISFIED, bad_review=True,
                                          acted_by="applicant"),
     domain.EvaluationReceived(case_no=CASE)),
    ("on_tasks_assigned", "joint_review", "tasks_assigned", "tasks_assigned",
     review_events.TasksAssigned(case_no=CASE, holders=[
         review_events.TaskHolder(department_code="gaj", region_code="440100"),
         review_events.TaskHolder(department_code="wsjk", region_code="440106")]),
     domain.TasksAssigned(case_no=CASE, holders=(domain.TaskHolder("gaj", "440100"),
                                                 domain.TaskHolder("wsjk", "440106")))),
    ("on_session_opened", "joint_review", "session_opened", "session_opened",
     review_events.SessionOpened(case_no=CASE, region_code="440100", package_code="XSECS", item_codes=["I1", "I2"],
                                 department_codes=["gaj", "wsjk"], opened_at=timestamp("2026-11-26T10:00:00+08:00")),
     domain.SessionOpened(case_no=CASE, item_codes=("I1", "I2"), department_codes=("gaj", "wsjk"))),
    ("on_task_overdue", "joint_review", "task_overdue", "task_overdue",
     review_events.TaskOverdue(case_no=CASE, item_code="I1", department_code="gaj", region_code="440100",
                               elapsed_days=6, limit_days=5),
     domain.TaskOverdue(case_no=CASE, item_code="I1", department_code="gaj", elapsed_days=6, limit_days=5)),
    ("on_session_concluded", "joint_review", "session_concluded", "session_concluded",
     review_events.SessionConcluded(case_no=CASE, kind=review_events.SESSION_KIND_INSPECTION,
                                    report_key="inspections/x.pdf", passed=False,
                                    concluded_at=timestamp("2026-11-27T10:00:00+08:00")),
     domain.SessionConcluded(case_no=CASE, kind="INSPECTION", report_key="inspections/x.pdf", passed=False,
                             concluded_at="2026-11-27T02:00:00+00:00")),
    ("on_session_withdrawn", "joint_review", "session_withdrawn", "session_withdrawn",
     review_events.SessionWithdrawn(case_no=CASE, region_code="440100", license_ids=["L1"], after_conclusion=True,
                                    overridden=joint_review_pb2.SESSION_STATUS_REJECTED,
                                    withdrawn_at=timestamp("2026-11-27T09:00:00+00:00"),
                                    reason="不再办理"),
     domain.SessionWithdrawn(case_no=CASE, after_conclusion=True, overridden="rejected")),
    ("on_delivery_dispatched", "delivery", "delivery_dispatched", "delivery_dispatched",
     delivery_events.DeliveryDispatched(case_no=CASE, channel=MAIL, carrier=delivery_pb2.CARRIER_EMS,
                                        tracking_number="EA473124829CN", dispatched_by="clerk-7", attempt=2),
     domain.DeliveryDispatched(case_no=CASE, attempt=2, by_mail=True, carrier="EMS", tracking_number="EA473124829CN")),
    ("on_delivery_ready_for_pickup", "delivery", "delivery_ready_for_pickup", "delivery_ready_for_pickup",
     delivery_events.DeliveryReadyForPickup(case_no=CASE, channel=common_pb2.DELIVERY_CHANNEL_WINDOW,
                                            applicant_id="11010519491231002X", region_code="440100"),
     domain.DeliveryReadyForPickup(case_no=CASE)),
    ("on_delivery_failed", "delivery", "delivery_failed", "delivery_failed",
     delivery_events.DeliveryFailed(case_no=CASE, channel=MAIL, applicant_id="11010519491231002X",
                                    region_code="440100", reason="查无此人", attempt=3),
     domain.DeliveryFailed(case_no=CASE, attempt=3, reason="查无此人")),
    ("on_license_revoked", "elicense", "license_revoked", "license_revoked",
     license_events.LicenseRevoked(license_id="L1", case_no=CASE, holder_code="11010519491231002X",
                                   reason="superseded", revoked_by="officer-1", superseded_by="L9"),
     domain.LicenseRevoked(case_no=CASE, license_id="L1", reason="superseded", superseded_by="L9")),
    ("on_bad_review_opened", "evaluation", "bad_review_opened", "bad_review_opened",
     evaluation_events.BadReviewOpened(case_no=CASE, channel=evaluation_pb2.CHANNEL_ONLINE,
                                       grade=evaluation_pb2.GRADE_VERY_DISSATISFIED,
                                       department_code="wsjk", region_code="440100", package_code="XSECS",
                                       deadline=date("2026-12-03"), opened_at=timestamp("2026-11-26T10:00:00+08:00")),
     domain.BadReviewOpened(case_no=CASE, channel="online", department_code="wsjk", deadline="2026-12-03")),
    ("on_bad_review_closed", "evaluation", "bad_review_closed", "bad_review_closed",
     evaluation_events.BadReviewClosed(case_no=CASE, channel=evaluation_pb2.CHANNEL_WINDOW, department_code="wsjk",
                                       region_code="440100", package_code="XSECS", deadline=date("2026-12-03"),
                                       closed_by="officer-2", on_time=True, result="已整改"),
     domain.BadReviewClosed(case_no=CASE, channel="window", department_code="wsjk", on_time=True, result="已整改")),
]


pytestmark = pytest.mark.usefixtures("green_waiting")  # entrypoint_hook without eventlet's monkey patch


@pytest.fixture
def container():
    """The worker's container as `nameko run` builds it (not started: no broker), with its inbox on
    a collection in memory (Inbox.setup would connect to MongoDB)."""
    built = ServiceContainer(IntakeWorker, {"AMQP_URI": "memory://"})
    dependency(built, "inbox").collection = MemoryInboxCollection()
    yield built
    built.kill()


def handlers_mock():
    return mock.create_autospec(Intake, instance=True)


def deliver(container, method, message, event_id=None):
    """The event as the broker hands it to the worker: the payload, the envelope's event id."""
    with entrypoint_hook(container, method, context_data={"event_id": event_id} if event_id else None) as hook:
        return hook(to_payload(message))


@pytest.mark.parametrize("method, source, event_type, use_case, message, value", HANDLERS,
                         ids=[h[0] for h in HANDLERS])
def test_each_handler_listens_to_its_event_decodes_it_and_calls_its_use_case(
        container, method, source, event_type, use_case, message, value):
    (ext,) = getattr(getattr(IntakeWorker, method), ENTRYPOINT_EXTENSIONS_ATTR)
    assert (ext.source_service, ext.event_type, ext.requeue_on_error) == (source, event_type, True)
    intake = handlers_mock()
    replace_dependencies(container, intake=intake)
    deliver(container, method, message)
    getattr(intake, use_case).assert_called_once_with(value)
    assert [c[0] for c in intake.method_calls] == [use_case]  # and nothing else


def test_every_event_handler_of_the_worker_is_covered():
    entrypoints = {name for name, attr in vars(IntakeWorker).items() if hasattr(attr, ENTRYPOINT_EXTENSIONS_ATTR)}
    assert entrypoints == {h[0] for h in HANDLERS}


@pytest.mark.parametrize("channel, attempt, expected", [(ELECTRONIC, 0, (1, False)), (MAIL, 1, (1, True))])
def test_a_dispatch_is_by_mail_or_not_and_attempt_0_is_the_first(container, channel, attempt, expected):
    intake = handlers_mock()
    replace_dependencies(container, intake=intake)
    deliver(container, "on_delivery_dispatched",
            delivery_events.DeliveryDispatched(case_no=CASE, channel=channel, attempt=attempt))
    got = intake.delivery_dispatched.call_args.args[0]
    assert (got.attempt, got.by_mail) == expected


def test_a_withdrawal_before_the_conclusion_overrides_nothing(container):
    intake = handlers_mock()
    replace_dependencies(container, intake=intake)
    deliver(container, "on_session_withdrawn", review_events.SessionWithdrawn(case_no=CASE, region_code="440100"))
    intake.session_withdrawn.assert_called_once_with(domain.SessionWithdrawn(case_no=CASE))


def test_an_event_id_already_in_the_inbox_is_skipped(container):
    intake = handlers_mock()
    replace_dependencies(container, intake=intake)
    overdue = review_events.TaskOverdue(case_no=CASE, item_code="I1", department_code="gaj")
    for _ in range(2):  # the same event delivered twice (a redelivery, a federated copy)
        deliver(container, "on_task_overdue", overdue, event_id="e-1")
    deliver(container, "on_task_overdue", overdue, event_id="e-2")  # another event: handled
    assert intake.task_overdue.call_count == 2
    assert sorted(dependency(container, "inbox").collection.docs) == [
        "intake.on_task_overdue:e-1", "intake.on_task_overdue:e-2"]


def test_a_domain_refusal_is_absorbed_and_an_outage_raised_for_a_retry(container):
    intake = handlers_mock()
    replace_dependencies(container, intake=intake)
    intake.case_concluded.side_effect = FailedPrecondition("the case is withdrawn")
    assert deliver(container, "on_case_concluded", review_events.CaseConcluded(case_no=CASE), event_id="e-3") is None
    assert "intake.on_case_concluded:e-3" in dependency(container, "inbox").collection.docs  # done with
    intake.case_concluded.side_effect = ConnectionError("store away")
    with pytest.raises(ConnectionError):
        deliver(container, "on_case_concluded", review_events.CaseConcluded(case_no=CASE), event_id="e-4")
    assert "intake.on_case_concluded:e-4" not in dependency(container, "inbox").collection.docs  # tried again


# -- with the real use cases, on the shared fake store ----------------------------------------------


def a_case(store, status=domain.SUBMITTED):
    at = datetime.datetime(2026, 11, 26, 2, 0, tzinfo=datetime.UTC)
    assert store.insert_case(domain.Case(
        case_no=CASE, package_code="XSECS", package_version=3, region_code="440100",
        applicant={"id_number": "11010519491231002X", "name": "李华"}, status=status, submitted_at=at,
        history=[domain.HistoryEntry(domain.SUBMITTED, at.isoformat(), "submitted")]))


def handlers_on(store):
    """What Component.setup builds (build_intake), on the fake store: catalog and elicense are not
    the worker's (with_catalog=False, as in worker._build)."""
    return build_intake(store=store, blobs=MemoryBlobs(), audit=MemoryAuditLog("intake"), clock=Clock(), with_catalog=False)


def test_the_events_of_a_case_move_it_in_the_store(container):
    store = FakeIntakeStore(FlakyBus("intake"))
    a_case(store)
    replace_dependencies(container, intake=handlers_on(store))
    deliver(container, "on_session_opened", review_events.SessionOpened(case_no=CASE, department_codes=["gaj"]))
    deliver(container, "on_case_concluded", review_events.CaseConcluded(case_no=CASE, approved=True,
                                                                         license_ids=["L1"]))
    deliver(container, "on_delivery_dispatched", delivery_events.DeliveryDispatched(
        case_no=CASE, channel=MAIL, carrier=delivery_pb2.CARRIER_EMS, tracking_number="EA473124829CN", attempt=1))
    deliver(container, "on_delivery_failed", delivery_events.DeliveryFailed(case_no=CASE, reason="查无此人", attempt=1))
    case = store.case(CASE)
    assert [h.status for h in case.history if not h.note_only] == [
        domain.SUBMITTED, domain.IN_REVIEW, domain.APPROVED, domain.DELIVERY_FAILED]
    assert "EA473124829CN" in case.history[3].note and case.history[3].note_only
    assert case.license_ids == ["L1"] and case.delivery_attempt == 1
    assert case.history[-1].at == "2026-11-26T02:00:00+00:00"  # the clock given to the wiring


def test_task_assignments_record_each_department_of_a_region_once(container):
    """The departments a change of the session gave tasks reach intake in one tasks_assigned; each
    department and region is recorded on the case once, whatever the items and rounds, all of one
    event in one write; the history is not touched. An event naming a holder without its department
    is a refusal (acknowledged, nothing recorded), one for a case intake does not have changes
    nothing, and the same event id twice is skipped by the inbox."""
    store = FakeIntakeStore(FlakyBus("intake"))
    a_case(store)
    replace_dependencies(container, intake=handlers_on(store))

    def assigned(*holders, case_no=CASE):
        return review_events.TasksAssigned(case_no=case_no, holders=[
            review_events.TaskHolder(department_code=d, region_code=r) for d, r in holders])
    version = store.case(CASE).version
    deliver(container, "on_tasks_assigned", assigned(("wsjk", "440100"), ("gaj", "440100"), ("gaj", "440100")),
            event_id="t-1")
    assert store.case(CASE).version == version + 1  # the departments of one change: one write
    deliver(container, "on_tasks_assigned", assigned(("gaj", "440100")), event_id="t-2")  # after 补正: held already
    deliver(container, "on_tasks_assigned", assigned(("gaj", "440300"), ("wsjk", "440100")), event_id="t-3")
    version = store.case(CASE).version
    deliver(container, "on_tasks_assigned", assigned(("ybj", "440100")), event_id="t-1")  # the same id: skipped
    deliver(container, "on_tasks_assigned", assigned(("", "440100"), ("ybj", "440100")), event_id="t-6")  # refused
    deliver(container, "on_tasks_assigned", assigned(), event_id="t-8")  # names no department: refused
    deliver(container, "on_tasks_assigned", assigned(("ybj", "440100"), case_no="440100XSECS202611269999"),
            event_id="t-7")
    case = store.case(CASE)
    assert case.task_holders == [domain.TaskHolder("wsjk", "440100"), domain.TaskHolder("gaj", "440100"),
                                 domain.TaskHolder("gaj", "440300")]
    assert case.version == version and [h.note for h in case.history] == ["submitted"]
    assert {"intake.on_tasks_assigned:t-6", "intake.on_tasks_assigned:t-7", "intake.on_tasks_assigned:t-8"} <= set(
        dependency(container, "inbox").collection.docs)


def test_the_sweeper_publishes_what_a_failed_publish_left_pending(container):
    bus = FlakyBus("intake")
    store = FakeIntakeStore(bus)
    a_case(store)
    handlers = handlers_on(store)
    dependency(container, "intake").instance = handlers  # what Component.setup builds
    bus.away = True
    handlers.withdraw({"case_no": CASE, "applicant_id": "11010519491231002X", "reason": "不再办理"})
    [left] = store.pending(CASE)
    assert bus.published == [] and left["event_type"] == "case_withdrawn"
    bus.away = False
    sweeper = dependency(container, "sweeper")
    assert sweeper.sweep_once() == 0  # not due yet: its writer's retry time has not come
    store.make_due(CASE)
    assert sweeper.sweep_once() == 1
    assert [(t, h["event_id"]) for t, _, h in bus.published] == [("case_withdrawn", left["id"])]
    assert store.pending(CASE) == [] and sweeper.sweep_once() == 0


def test_the_sweeper_runs_on_its_own_in_the_container(container):
    bus = FlakyBus("intake")
    store = FakeIntakeStore(bus)
    a_case(store)
    handlers = handlers_on(store)
    dependency(container, "intake").instance = handlers
    bus.away = True
    handlers.withdraw({"case_no": CASE, "applicant_id": "11010519491231002X"})
    bus.away = False
    store.make_due(CASE)
    sweeper = dependency(container, "sweeper")
    sweeper.interval = 0.01
    sweeper.start()
    try:
        for _ in range(200):
            if bus.published:
                break
            eventlet.sleep(0.01)
    finally:
        sweeper.stop()
    assert bus.types() == ["case_withdrawn"] and store.pending(CASE) == [] and sweeper.runs >= 1
