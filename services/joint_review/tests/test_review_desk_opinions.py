"""The opinions of the departments' desks, as joint_review takes them from the bus (protos/asyncapi/
desk.yaml): recorded only from the broker user of the desk that owns the task as the session keeps
it, on the round it was given on; the licences a task names travel with their validity; and the
worker's consumer passes the broker-checked user_id, never a header of that name, to the use case."""
import types

import pytest
from nameko.testing.services import entrypoint_hook
from nameko.testing.utils import get_extension

from onething.elicense.v1 import events_pb2 as license_events
from onething.joint_review.v1 import events_pb2
from services.common import worker as common_worker
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from services.common.events import to_payload
from services.joint_review import domain
from services.joint_review.tests.test_review_handlers import (  # noqa: F401 - the package fixture
    C01,
    C02,
    C03,
    CASE_NO,
    LIC01,
    REGION,
    issued,
    package,
    submitted,
)
from services.joint_review.worker import DESK_OPINIONS, JointReviewWorker, desk_opinions_queue

WSJK = f"desk-wsjk-{REGION}"  # the broker user of the desk that owns C01 (出生医学证明签发)


def opinion(item_code=C01, department="wsjk", decision="DECISION_APPROVE", reason="materials present", round_=0,
            **more):
    return events_pb2.DeskOpinion(case_no=CASE_NO, item_code=item_code, department_code=department,
                                  region_code=REGION, round=round_, decision=decision, reason=reason, **more)


def sent(bus, kind, start=0):
    return [p for t, p, _ in bus.published[start:] if t == kind]


@pytest.fixture
def review(review_of_fakes, package):
    review_of_fakes.open_session(submitted(package))
    return review_of_fakes


def version(review):
    return review.store.load(CASE_NO).version


# --- who may decide ------------------------------------------------------------------------------


def test_an_opinion_from_the_desk_that_owns_the_task_is_recorded_as_that_desk(review, recording_bus):
    task = review.desk_opinion(opinion(), WSJK)
    assert task["state"] is domain.TaskState.APPROVED and task["decided_by"] == f"desk:wsjk:{REGION}"
    [recorded] = sent(recording_bus, "opinion_recorded")
    assert recorded["decided_by"] == f"desk:wsjk:{REGION}" and recorded["decision"] == "DECISION_APPROVE"
    [record] = [r for r in review.audit.records if r["action"] == "opinion.record"]
    assert record["actor"]["sub"] == f"desk:wsjk:{REGION}" and record["outcome"] == "ok"


@pytest.mark.parametrize("sender, claims", [
    (f"desk-gaj-{REGION}", "wsjk"),    # another department's desk, naming the owner in the opinion
    (f"desk-gaj-{REGION}", "gaj"),     # another department's desk, naming itself: the stored task decides
    ("desk-wsjk-440300", "wsjk"),      # the owner's department in another region
    ("svc-intake", "wsjk"),            # a service of the platform
    ("", "wsjk"),                      # a message without a user id
])
def test_an_opinion_from_anyone_but_the_owning_desk_is_refused_and_changes_nothing(review, recording_bus, sender,
                                                                                   claims):
    before, start = version(review), len(recording_bus.published)
    with pytest.raises(PermissionDenied, match=f"taken from {WSJK} only"):
        review.desk_opinion(opinion(department=claims), sender)
    assert version(review) == before and recording_bus.published[start:] == []
    assert domain.task_of(review.get_session(CASE_NO), C01)["state"] is domain.TaskState.ASSIGNED
    [record] = [r for r in review.audit.records if r["action"] == "opinion.record"]
    assert record["actor"]["sub"] == f"broker:{sender or '-'}" and record["outcome"] == "PERMISSION_DENIED"


def test_the_owning_desk_may_not_decide_in_another_departments_name(review):
    before = version(review)
    with pytest.raises(PermissionDenied, match="belongs to department wsjk"):
        review.desk_opinion(opinion(department="gaj"), WSJK)
    assert version(review) == before


# --- what it may decide ----------------------------------------------------------------------------


def test_an_opinion_on_an_earlier_round_is_refused(review, recording_bus):
    review.desk_opinion(opinion(item_code=C02, department="jkzx", decision="DECISION_RECTIFY", reason="复印件模糊",
                                material_codes=["M01"]), f"desk-jkzx-{REGION}")
    task = domain.task_of(review.get_session(CASE_NO), C02)
    assert task["state"] is domain.TaskState.RECTIFYING and task["rounds"] == 1
    assert sent(recording_bus, "rectification_requested")[0]["material_codes"] == ["M01"]
    before = version(review)
    with pytest.raises(FailedPrecondition, match="answers round 0 of item 110000000002, but the task is in round 1"):
        review.desk_opinion(opinion(item_code=C02, department="jkzx"), f"desk-jkzx-{REGION}")
    assert version(review) == before


@pytest.mark.parametrize("change, words", [
    ({"decision": "DECISION_UNSPECIFIED"}, "APPROVE, REJECT or RECTIFY"),
    ({"decision": 9}, "APPROVE, REJECT or RECTIFY"),  # a number the enum does not declare
    ({"decision": "DECISION_REJECT", "reason": " "}, "needs a reason"),
    ({"decision": "DECISION_RECTIFY", "reason": "模糊"}, "names the materials"),
])
def test_an_opinion_that_decides_nothing_clear_is_refused(review, change, words):
    before = version(review)
    with pytest.raises(InvalidArgument, match=words):
        review.desk_opinion(opinion(**change), WSJK)
    assert version(review) == before


def test_an_opinion_on_no_known_case_or_item_is_not_found(review):
    with pytest.raises(NotFound):
        review.desk_opinion(events_pb2.DeskOpinion(case_no="440100XSECS209912310001", item_code=C01), WSJK)
    with pytest.raises(NotFound):
        review.desk_opinion(opinion(item_code="999999999999"), WSJK)


def test_the_same_opinion_twice_is_recorded_once(review, recording_bus):
    review.desk_opinion(opinion(), WSJK)
    review.desk_opinion(opinion(), WSJK)
    assert len(sent(recording_bus, "opinion_recorded")) == 1


def test_a_desk_never_decides_a_task_an_officer_claimed(review):
    review.claim(CASE_NO, C01, "wsjk", "officer-1")
    with pytest.raises(FailedPrecondition, match="claimed by officer-1"):
        review.desk_opinion(opinion(), WSJK)


# --- the licences a task names, with their validity ----------------------------------------------


def test_a_task_names_its_licences_valid_until_elicense_revokes_them(review, recording_bus):
    review.desk_opinion(opinion(), WSJK)
    review.license_issued(issued(C01, LIC01, type_code="CSYXZM"))
    [registration] = sent(recording_bus, f"task_assigned.gaj.{REGION}")
    assert registration["item_code"] == C03 and registration["site"] == REGION
    assert registration["licenses"] == [{"license_id": LIC01, "type_code": "CSYXZM", "valid": True}]


def test_a_licence_revoked_before_the_task_is_assigned_is_named_invalid(review, recording_bus):
    review.desk_opinion(opinion(), WSJK)
    revoked = license_events.LicenseRevoked(license_id=LIC01, case_no=CASE_NO, reason="信息有误")
    # revoked between its issue and the next assignment: the event order does not matter to the task
    session = review.get_session(CASE_NO)
    domain.task_of(session, C01)["license_id"] = LIC01  # as if license_issued had been stored without advancing
    assert domain.license_revoked(session, LIC01) and not domain.license_revoked(session, LIC01)
    [entry] = domain.task_licenses(session, domain.task_of(session, C03))
    assert entry == {"license_id": LIC01, "type_code": "CSYXZM", "valid": False}
    # and through the use cases: recorded once, then named invalid on a later assignment
    review.license_issued(issued(C01, LIC01, type_code="CSYXZM"))
    before = version(review)
    review.license_revoked(revoked)
    assert version(review) == before + 1
    review.license_revoked(revoked)  # redelivered: nothing saved
    assert version(review) == before + 1
    assert domain.task_licenses(review.get_session(CASE_NO), domain.task_of(review.get_session(CASE_NO), C03)) == [
        {"license_id": LIC01, "type_code": "CSYXZM", "valid": False}]


def test_a_revoked_licence_joint_review_does_not_know_changes_nothing(review):
    before = version(review)
    assert review.license_revoked(license_events.LicenseRevoked(license_id="L-other", case_no=CASE_NO)) is not None
    assert version(review) == before
    assert review.license_revoked(license_events.LicenseRevoked(license_id=LIC01,
                                                                case_no="440100XSECS209912310001")) is None


# --- the worker's consumer ---------------------------------------------------------------------------


@pytest.fixture
def spy():
    from unittest import mock

    from services.joint_review.handlers import JointReview
    return mock.create_autospec(JointReview, instance=True)


@pytest.fixture
def container(service_container, spy):
    return service_container(JointReviewWorker, spy)


def test_the_worker_consumes_the_desks_opinions_for_its_own_site():
    queue = desk_opinions_queue("440300")
    assert (queue.name, queue.routing_key, queue.durable, queue.auto_delete) == (
        DESK_OPINIONS, "opinion.*.*.440300", True, False)
    assert (queue.exchange.name, queue.exchange.type, queue.exchange.durable) == ("desk.opinions", "topic", True)


def test_the_consumer_follows_the_failure_rules_of_every_handler(container):
    ext = get_extension(container, common_worker.ReliableConsumer)
    assert isinstance(ext, common_worker.FailureRules) and ext.requeue_on_error is True
    assert ext.method_name == "on_desk_opinion" and ext.queue.name == DESK_OPINIONS
    assert ext.queue.routing_key == f"opinion.*.*.{REGION}"  # ONETHING_REGION: this site


def test_an_opinion_is_decoded_and_handed_over_with_the_user_the_broker_checked(container, spy):
    with entrypoint_hook(container, "on_desk_opinion", context_data={"user_id": WSJK, "event_id": f"{WSJK}/o-1"}) \
            as hook:
        hook(to_payload(opinion()))
    spy.desk_opinion.assert_called_once_with(opinion(), WSJK)


def message(headers, **properties):
    return types.SimpleNamespace(headers=headers, properties=properties)


def test_the_sender_and_the_message_id_come_from_the_properties_never_from_headers(container):
    ext = get_extension(container, common_worker.ReliableConsumer)
    data = ext.unpack_message_headers(message(
        {"user_id": WSJK, "event_id": "forged", "case_no": CASE_NO, "traceparent": "00-ab-cd-01"},
        user_id=f"desk-gaj-{REGION}", message_id="opinion:1"))
    assert data["user_id"] == f"desk-gaj-{REGION}" and data["event_id"] == f"desk-gaj-{REGION}/opinion:1"
    assert data["case_no"] == CASE_NO and data["traceparent"] == "00-ab-cd-01"
    data = ext.unpack_message_headers(message({"user_id": WSJK, "event_id": "forged"}))
    assert data["user_id"] == "" and data["event_id"] == ""  # no inbox key: the domain's own idempotence


def test_one_senders_message_id_never_stands_in_for_anothers(container, spy):
    calls = [(f"desk-gaj-{REGION}", "opinion:x"), (WSJK, "opinion:x"), (WSJK, "opinion:x")]
    for user, message_id in calls:
        with entrypoint_hook(container, "on_desk_opinion",
                             context_data={"user_id": user, "event_id": f"{user}/{message_id}"}) as hook:
            hook(to_payload(opinion()))
    assert [c.args[1] for c in spy.desk_opinion.call_args_list] == [f"desk-gaj-{REGION}", WSJK]


def test_a_refused_opinion_is_acknowledged_not_retried(container, spy, caplog):
    spy.desk_opinion.side_effect = PermissionDenied("taken from desk-wsjk-440100 only")
    with caplog.at_level("WARNING"), entrypoint_hook(
            container, "on_desk_opinion", context_data={"user_id": "x", "event_id": "x/1"}) as hook:
        assert hook(to_payload(opinion())) is None
    [record] = [r for r in caplog.records if r.name == DESK_OPINIONS]  # the queue's logger
    assert record.getMessage() == f"message for case {CASE_NO} not applied: taken from desk-wsjk-440100 only"


def test_license_revoked_is_decoded_and_handed_to_its_use_case(container, spy):
    revoked = license_events.LicenseRevoked(license_id=LIC01, case_no=CASE_NO, reason="信息有误", revoked_by="op")
    with entrypoint_hook(container, "on_license_revoked") as hook:
        hook(to_payload(revoked))
    spy.license_revoked.assert_called_once_with(revoked)


def test_only_a_queue_consumer_has_a_sender():
    sender = common_worker.Sender()
    ctx = types.SimpleNamespace(entrypoint=object(), context_data={"user_id": WSJK})
    assert sender.get_dependency(ctx) == ""  # an event handler: a header called user_id proves nothing


def test_a_retry_copy_keeps_the_sender_the_broker_checked_and_a_desk_cannot_claim_one(container):
    """A failed opinion goes to the retry queue as a copy the worker sends, so its user_id is the
    worker's own login; the desk the broker checked the first time travels in x-onething-sender,
    believed only beside the worker's login."""
    ext = get_extension(container, common_worker.ReliableConsumer)
    own = ext.own_login = "joint_review"
    copy = ext.unpack_message_headers(message({"x-onething-sender": WSJK, "case_no": CASE_NO},
                                              user_id=own, message_id="opinion:1"))
    assert copy["user_id"] == WSJK and copy["event_id"] == f"{WSJK}/opinion:1"  # the original's inbox key
    assert "x-onething-sender" not in copy
    forged = ext.unpack_message_headers(message({"x-onething-sender": WSJK}, user_id=f"desk-gaj-{REGION}",
                                                message_id="opinion:2"))
    assert forged["user_id"] == f"desk-gaj-{REGION}"  # a desk naming another sender is still itself


def test_the_retry_copy_is_sent_with_the_workers_login_and_the_original_sender(container, monkeypatch):
    import sys
    sent = []

    class Publisher:
        def __init__(self, *args, **kwargs):
            pass

        def publish(self, body, **kwargs):
            sent.append(kwargs)

    monkeypatch.setattr("nameko.amqp.publish.Publisher", Publisher)
    monkeypatch.setitem(container.config, "AMQP_URI", "amqp://joint_review:pw@127.0.0.1:5672/onething")
    ext = get_extension(container, common_worker.ReliableConsumer)
    own = "joint_review"
    original = types.SimpleNamespace(
        headers={"case_no": CASE_NO, "x-onething-sender": "desk-forged"}, body=b"{}", content_type="application/json",
        content_encoding="utf-8", properties={"user_id": WSJK, "message_id": "opinion:1"},
        delivery_info={"exchange": "desk.opinions", "routing_key": "opinion.wsjk.440100.440100"})
    try:
        raise ConnectionError("the store is away")
    except ConnectionError:
        outcome = ext._after_failure(original, sys.exc_info())
    assert outcome == "outage"
    [copy] = sent
    assert copy["user_id"] == own and copy["headers"]["x-onething-sender"] == WSJK  # the forged header replaced
    assert copy["message_id"] == "opinion:1" and copy["routing_key"] == f"{DESK_OPINIONS}.retry"


def test_the_login_is_read_from_the_amqp_uri():
    assert common_worker.broker_login("amqp://joint_review:secret@127.0.0.1:5672/onething") == "joint_review"
    assert common_worker.broker_login("amqp://a%40b:x@h/v") == "a@b"
    assert common_worker.broker_login("amqp://127.0.0.1/") == ""
