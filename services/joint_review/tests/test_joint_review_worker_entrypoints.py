"""joint_review's worker under nameko's own test tools (entrypoint_hook): each event handler decodes
its payload (a real event message, as intake and elicense send it) and calls its use case with the
decoded message; through the handlers wiring builds from in-memory adapters, each does what it is
for; the inbox skips an event processed before; a domain refusal is absorbed; the clock check is
the timer's; the OutboxSweeper publishes what a broker outage left pending."""
import datetime
import logging
from unittest import mock

import eventlet
import pytest
from nameko.testing.services import entrypoint_hook
from nameko.testing.utils import get_extension
from nameko.timer import Timer

from onething.elicense.v1 import events_pb2 as license_events
from onething.intake.v1 import events_pb2 as intake_events
from services.common.errors import FailedPrecondition
from services.common.events import to_payload
from services.common.testing import FlakyBus
from services.common.worker import OutboxSweeper
from services.joint_review import domain
from services.joint_review.handlers import JointReview
from services.joint_review.tests.test_review_handlers import (  # noqa: F401 - the package fixture
    APPLICANT,
    C01,
    C02,
    C03,
    C04,
    C05,
    C06,
    C07,
    CASE_NO,
    DEPT,
    LIC01,
    LIC05,
    NEWBORN,
    REGION,
    package,
    submitted,
    submitted_event,
)
from services.joint_review.worker import JointReviewWorker


def supplemented(case_no=CASE_NO, rounds=None):
    return intake_events.CaseSupplemented(
        case_no=case_no, item_codes=[C02], rounds=rounds or {C02: 1}, acted_by="applicant",
        materials=[{"material_code": "M01", "name": "父母居民身份证", "object_key": f"cases/{case_no}/M01/u2",
                    "sha256": "cd" * 32, "size": 2048, "content_type": "application/pdf"}])


def withdrawn(case_no=CASE_NO):
    return intake_events.CaseWithdrawn(case_no=case_no, reason="不再办理", applicant_id="11010519491231002X",
                                       region_code=REGION, package_code="XSECS", acted_by="applicant")


def issued(item_code=C01, license_id=LIC01, case_no=CASE_NO):
    return license_events.LicenseIssued(license_id=license_id, case_no=case_no, item_code=item_code,
                                        type_code="CSYXZM", holder_code="440106202611200014",
                                        document_key=f"licenses/{license_id}.pdf")


@pytest.fixture
def worker(service_container):
    return lambda handlers: service_container(JointReviewWorker, handlers)


@pytest.fixture
def spy():
    return mock.create_autospec(JointReview, instance=True)


def sent(bus, kind, start=0):
    return [p for t, p, _ in bus.published[start:] if t == kind]


# --- each handler decodes its event and calls its use case with it ---------------------------------


@pytest.mark.parametrize("entrypoint, use_case, message", [
    ("on_case_supplemented", "case_supplemented", supplemented()),
    ("on_case_withdrawn", "case_withdrawn", withdrawn()),
    ("on_license_issued", "license_issued", issued()),
])
def test_each_handler_decodes_its_event_and_calls_its_use_case_with_it(worker, spy, entrypoint, use_case, message):
    container = worker(spy)
    with entrypoint_hook(container, entrypoint) as hook:
        hook(to_payload(message))
    getattr(spy, use_case).assert_called_once_with(message)  # the decoded protobuf message, field for field
    called = [name for name, _, _ in spy.method_calls]
    assert called == [use_case]


def test_case_submitted_is_decoded_once_into_the_submitted_case(worker, spy, package):
    """Decoded once, into domain.CaseSubmitted: the snapshot intake took of the package (what
    new_session reads of it)."""
    container = worker(spy)
    with entrypoint_hook(container, "on_case_submitted") as hook:
        hook(to_payload(submitted_event(package)))
    [call] = spy.open_session.call_args_list
    [case] = call.args
    assert isinstance(case, domain.CaseSubmitted) and (case.case_no, case.region_code) == (CASE_NO, REGION)
    assert case.applicant == APPLICANT and case.parties == (NEWBORN,)
    assert case.delivery == {"channel": "DELIVERY_CHANNEL_ELECTRONIC"}
    assert [(m["material_code"], m["size"]) for m in case.materials] == [  # int64: a string, as the JSON has it
        ("M01", "1024"), ("M02", "1024"), ("M03", "1024"), ("M04", "1024")]
    pkg = case.package
    assert (pkg["code"], pkg["name"], pkg["lead_department"]) == ("XSECS", package["name"], "wsjk")
    assert [(i["code"], i["department_code"], i.get("prerequisites", [])) for i in pkg["items"]] == [
        (i["code"], i["department_code"], i["prerequisites"]) for i in package["items"]]
    assert [name for name, _, _ in spy.method_calls] == ["open_session"]


def test_an_event_of_a_newer_producer_is_decoded_all_the_same(worker, spy):
    container = worker(spy)
    payload = dict(to_payload(issued()), issued_by_site="440000")  # a field this version does not know
    with entrypoint_hook(container, "on_license_issued") as hook:
        hook(payload)
    spy.license_issued.assert_called_once_with(issued())


# --- and through the handlers wiring builds, does what it is for -----------------------------------


def test_case_submitted_opens_the_session_and_assigns_the_first_tasks(worker, review_of_fakes, recording_bus,
                                                                      package):
    container = worker(review_of_fakes)
    with entrypoint_hook(container, "on_case_submitted") as hook:
        hook(to_payload(submitted_event(package)))
    session = review_of_fakes.get_session(CASE_NO)
    assert session["status"] is domain.SessionStatus.OPEN
    assert recording_bus.types()[-1] == "session_opened"
    assert [p["item_code"] for t, p, _ in recording_bus.published if t.startswith("task_assigned.")] == [
        C01, C02, "110000000006", "110000000007"]
    assert review_of_fakes.store.pending(CASE_NO) == []


def test_case_supplemented_sends_the_rectified_task_back_to_its_department(worker, review_of_fakes, recording_bus,
                                                                           package):
    review_of_fakes.open_session(submitted(package))
    review_of_fakes.record_opinion(CASE_NO, C02, DEPT[C02], domain.RECTIFY, "身份证复印件模糊", "officer-2",
                                   materials=["M01"])
    start = len(recording_bus.published)
    container = worker(review_of_fakes)
    with entrypoint_hook(container, "on_case_supplemented") as hook:
        hook(to_payload(supplemented()))
    task = domain.task_of(review_of_fakes.get_session(CASE_NO), C02)
    assert task["state"] is domain.TaskState.ASSIGNED and task["rectification"]["supplied_at"]
    [again] = [p for t, p, _ in recording_bus.published[start:] if t == f"task_assigned.jkzx.{REGION}"]
    assert again["item_code"] == C02 and again["round"] == 1
    assert [m["object_key"] for m in again["materials"]] == [f"cases/{CASE_NO}/M01/u2"]  # the new copy


def test_license_issued_completes_the_item_and_unlocks_the_next(worker, review_of_fakes, recording_bus, package):
    review_of_fakes.open_session(submitted(package))
    review_of_fakes.record_opinion(CASE_NO, C01, DEPT[C01], domain.APPROVE, "", "desk:wsjk:440100")
    container = worker(review_of_fakes)
    with entrypoint_hook(container, "on_license_issued") as hook:
        hook(to_payload(issued()))
    session = review_of_fakes.get_session(CASE_NO)
    task = domain.task_of(session, C01)
    assert task["state"] is domain.TaskState.DONE
    # the licence's type and document are kept with its id, for case_concluded's results
    assert (task["license_id"], task["license_issued_type_code"], task["license_document_key"]) == (
        LIC01, "CSYXZM", f"licenses/{LIC01}.pdf")
    [unlocked] = sent(recording_bus, f"task_assigned.gaj.{REGION}")
    assert unlocked["item_code"] == C03 and unlocked["license_ids"] == [LIC01]


def test_the_last_licence_concludes_the_case_with_every_licence_and_its_document(worker, review_of_fakes,
                                                                                 recording_bus, package):
    review_of_fakes.open_session(submitted(package))
    container = worker(review_of_fakes)
    review_of_fakes.record_opinion(CASE_NO, C01, DEPT[C01], domain.APPROVE, "", "desk:wsjk:440100")
    with entrypoint_hook(container, "on_license_issued") as hook:
        hook(to_payload(issued()))
    for code in (C02, C06, C07, C03, C04, C05):
        review_of_fakes.record_opinion(CASE_NO, code, DEPT[code], domain.APPROVE, "", f"desk:{DEPT[code]}:{REGION}")
    assert sent(recording_bus, "case_concluded") == []
    social_security = license_events.LicenseIssued(license_id=LIC05, case_no=CASE_NO, item_code=C05, type_code="SBK",
                                                   holder_code="440106202611200014",
                                                   document_key=f"licenses/{LIC05}.pdf")
    with entrypoint_hook(container, "on_license_issued") as hook:
        hook(to_payload(social_security))
    [concluded] = sent(recording_bus, "case_concluded")
    assert concluded["license_ids"] == [LIC01, LIC05]
    assert concluded["results"] == [
        {"license_id": LIC01, "item_code": C01, "type_code": "CSYXZM", "document_key": f"licenses/{LIC01}.pdf"},
        {"license_id": LIC05, "item_code": C05, "type_code": "SBK", "document_key": f"licenses/{LIC05}.pdf"}]


def test_case_withdrawn_closes_the_session_once(worker, review_of_fakes, recording_bus, package):
    review_of_fakes.open_session(submitted(package))
    container = worker(review_of_fakes)
    with entrypoint_hook(container, "on_case_withdrawn") as hook:
        hook(to_payload(withdrawn()))
    assert review_of_fakes.get_session(CASE_NO)["status"] is domain.SessionStatus.WITHDRAWN
    [event] = sent(recording_bus, "session_withdrawn")
    assert event["case_no"] == CASE_NO and event["reason"] == "不再办理" and not event.get("after_conclusion")


def test_the_clock_check_escalates_tasks_past_their_limit(worker, review_of_fakes, recording_bus, clock, package):
    review_of_fakes.open_session(submitted(package))
    container = worker(review_of_fakes)
    [timer] = [e for e in container.entrypoints if isinstance(e, Timer)]
    assert timer.method_name == "check_clocks"  # the worker's one timer: the outbox has its sweeper
    clock.at += datetime.timedelta(days=60)
    with entrypoint_hook(container, "check_clocks") as hook:
        hook()
    overdue = sent(recording_bus, "task_overdue")
    assert {p["item_code"] for p in overdue} == {C01, C02, "110000000006", "110000000007"}
    assert all(p["elapsed_days"] > p["limit_days"] for p in overdue)
    with entrypoint_hook(container, "check_clocks") as hook:
        hook()
    assert len(sent(recording_bus, "task_overdue")) == 4  # once


# --- the inbox and the failure rules -------------------------------------------------------------------


def test_an_event_processed_before_is_skipped(worker, spy):
    container = worker(spy)
    for _ in range(2):  # redelivered, or a duplicate over a site link
        with entrypoint_hook(container, "on_case_withdrawn", context_data={"event_id": "e-1"}) as hook:
            hook(to_payload(withdrawn()))
    with entrypoint_hook(container, "on_case_withdrawn", context_data={"event_id": "e-2"}) as hook:
        hook(to_payload(withdrawn()))
    assert spy.case_withdrawn.call_count == 2
    inbox = next(d for d in container.dependencies if d.attr_name == "inbox")
    assert inbox.collection.ids == {"joint_review.on_case_withdrawn:e-1", "joint_review.on_case_withdrawn:e-2"}


def test_a_domain_refusal_is_absorbed_and_recorded_and_any_other_failure_is_raised(worker, spy, caplog):
    spy.license_issued.side_effect = FailedPrecondition("the session is concluded")
    spy.case_supplemented.side_effect = RuntimeError("session kept changing")
    container = worker(spy)
    with caplog.at_level(logging.WARNING):
        with entrypoint_hook(container, "on_license_issued", context_data={"event_id": "e-3"}) as hook:
            assert hook(to_payload(issued())) is None
    assert "not applied: the session is concluded" in caplog.text
    with entrypoint_hook(container, "on_license_issued", context_data={"event_id": "e-3"}) as hook:
        hook(to_payload(issued()))
    assert spy.license_issued.call_count == 1  # the refused event counts as processed
    with entrypoint_hook(container, "on_case_supplemented", context_data={"event_id": "e-4"}) as hook:
        with pytest.raises(RuntimeError, match="kept changing"):  # retried by the queue, then dead-lettered
            hook(to_payload(supplemented()))


# --- the outbox sweeper -----------------------------------------------------------------------------------


def test_the_sweeper_publishes_what_a_broker_outage_left_pending(worker, review_of_fakes, package):
    store = review_of_fakes.store
    store.bus = bus = FlakyBus("joint_review", away=True)
    review_of_fakes.open_session(submitted(package))            # committed; every publish failed
    assert [e["event_type"] for e in store.pending(CASE_NO)][-1] == "session_opened"
    container = worker(review_of_fakes)
    sweeper = get_extension(container, OutboxSweeper)
    assert sweeper.component == "review" and bus.published == []
    bus.away = False
    assert sweeper.sweep_once() == 0                                # the next try is not due yet
    store.make_due(CASE_NO)                                         # its backoff over
    assert sweeper.sweep_once() == 6  # four tasks, who takes part (tasks_assigned), the opening
    assert bus.types()[-1] == "session_opened" and store.pending(CASE_NO) == []
    assert sweeper.sweep_once() == 0


def test_the_running_sweeper_publishes_a_leftover_entry(worker, review_of_fakes, recording_bus, package):
    store = review_of_fakes.store
    store.bus = None                                                 # a writer that died before publishing
    review_of_fakes.open_session(submitted(package))
    store.make_due(CASE_NO)
    store.bus = recording_bus
    container = worker(review_of_fakes)
    sweeper = get_extension(container, OutboxSweeper)
    sweeper.interval = 0.01
    sweeper.start()
    try:
        with eventlet.Timeout(5):
            while store.pending(CASE_NO):
                eventlet.sleep(0.01)
    finally:
        sweeper.stop()
    assert recording_bus.types()[-1] == "session_opened" and sweeper.runs >= 1 and sweeper.failures == 0
