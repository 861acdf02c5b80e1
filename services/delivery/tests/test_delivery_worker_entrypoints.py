"""delivery's worker: each event handler listens to its event, decodes the payload (as the
publisher encodes it, services.common.events.to_payload) into the domain's values and calls the
right use case with them; an event id already in the inbox is skipped; the OutboxSweeper finds
the handlers' store and publishes what a failed publish left pending."""
from unittest import mock

import pytest
from nameko.containers import ServiceContainer, WorkerContext
from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR, Entrypoint
from nameko.testing.services import worker_factory
from nameko.testing.utils import get_extension
from test_delivery_handlers import CODE, FakeBlobs

from onething.common.v1 import common_pb2
from onething.elicense.v1 import events_pb2 as license_events
from onething.joint_review.v1 import events_pb2 as review_events
from onething.joint_review.v1 import joint_review_pb2 as review_pb2
from services.common.bus import RecordingBus
from services.common.events import to_payload
from services.common.testing import FlakyBus, MemoryInboxCollection, dependency, make_due
from services.delivery import domain, wire
from services.delivery.fakes import MemoryDeliveryStore
from services.delivery.handlers import Delivery
from services.delivery.worker import DeliveryWorker

CASE = "440100XSECS202611260001"
ADDRESS = common_pb2.Address(recipient="李华", phone="13800000000", region_code="440106", line="天河路100号1栋101",
                             postcode="510620")


def case_concluded(channel=common_pb2.DELIVERY_CHANNEL_MAIL, **changes):
    fields = dict(case_no=CASE, approved=True, reason="", license_ids=["L1", "L2"],
                  applicant=common_pb2.Applicant(id_number="11010519491231002X", name="李华"),
                  delivery=common_pb2.DeliveryPreference(channel=channel, address=ADDRESS),
                  region_code="440100", package_code="XSECS", lead_department="wsjk")
    fields.update(changes)
    return to_payload(review_events.CaseConcluded(**fields))


def handlers_mock():
    return mock.create_autospec(Delivery, instance=True)


@pytest.mark.parametrize("method, source, event_type", [
    ("on_case_concluded", "joint_review", "case_concluded"),
    ("on_session_withdrawn", "joint_review", "session_withdrawn"),
    ("on_license_revoked", "elicense", "license_revoked"),
])
def test_each_handler_listens_to_its_event_and_is_retried_on_error(method, source, event_type):
    (ext,) = getattr(getattr(DeliveryWorker, method), ENTRYPOINT_EXTENSIONS_ATTR)
    assert (ext.source_service, ext.event_type, ext.requeue_on_error) == (source, event_type, True)


def test_case_concluded_is_decoded_into_the_domains_values_and_delivered():
    delivery, elicense = handlers_mock(), mock.Mock()
    elicense.get_license.return_value = {"document_key": "licenses/L1.pdf"}
    worker = worker_factory(DeliveryWorker, delivery=delivery, elicense=elicense)
    worker.on_case_concluded(case_concluded())
    (event, licenses), _ = delivery.on_case_concluded.call_args
    assert event == domain.CaseConcluded(
        case_no=CASE, approved=True, channel=domain.MAIL, license_ids=("L1", "L2"),
        address={"recipient": "李华", "phone": "13800000000", "region_code": "440106", "line": "天河路100号1栋101",
                 "postcode": "510620"},
        applicant_id="11010519491231002X", region_code="440100", package_code="XSECS", lead_department="wsjk")
    assert event.channel is domain.MAIL
    # the licence look-up goes to elicense over the bus
    assert licenses("L1") == {"document_key": "licenses/L1.pdf"}
    elicense.get_license.assert_called_once_with("L1")


def test_case_concluded_results_are_decoded_with_their_document_keys():
    delivery = handlers_mock()
    worker = worker_factory(DeliveryWorker, delivery=delivery)
    worker.on_case_concluded(case_concluded(results=[
        review_events.ResultDocument(license_id="L1", item_code="110000000001", type_code="CSYXZM",
                                     document_key="licenses/L1.pdf"),
        review_events.ResultDocument(license_id="L2", item_code="110000000005", type_code="SBK")]))
    event = delivery.on_case_concluded.call_args.args[0]
    assert event.results == (
        domain.ResultDocument(license_id="L1", item_code="110000000001", type_code="CSYXZM",
                              document_key="licenses/L1.pdf"),
        domain.ResultDocument(license_id="L2", item_code="110000000005", type_code="SBK", document_key=""))
    assert event.document_key("L1") == "licenses/L1.pdf" and event.document_key("L2") == ""


@pytest.mark.parametrize("number, channel", [(common_pb2.DELIVERY_CHANNEL_ELECTRONIC, domain.ELECTRONIC),
                                             (common_pb2.DELIVERY_CHANNEL_WINDOW, domain.WINDOW),
                                             (common_pb2.DELIVERY_CHANNEL_UNSPECIFIED, domain.Channel.UNSPECIFIED),
                                             (42, domain.Channel.UNSPECIFIED)])
def test_each_channel_number_is_decoded_to_its_channel(number, channel):
    delivery = handlers_mock()
    worker = worker_factory(DeliveryWorker, delivery=delivery)
    worker.on_case_concluded(case_concluded(channel=number))
    assert delivery.on_case_concluded.call_args.args[0].channel is channel


def test_a_case_concluded_event_reaches_the_store_and_its_event_the_bus():
    """The handler with the real use case on the in-memory store: a WINDOW delivery waits for its
    applicant and delivery_ready_for_pickup goes out."""
    bus = RecordingBus("delivery")
    store = MemoryDeliveryStore(bus)
    elicense = mock.Mock()
    elicense.get_license.side_effect = lambda lid: {"document_key": f"licenses/{lid}.pdf"}
    worker = worker_factory(DeliveryWorker, delivery=Delivery(store, FakeBlobs(), pickup_code=lambda: CODE),
                            elicense=elicense)
    worker.on_case_concluded(case_concluded(common_pb2.DELIVERY_CHANNEL_WINDOW))
    body = store.get(CASE)
    assert body["status"] is domain.READY_FOR_PICKUP and body["channel"] is domain.WINDOW
    assert [r["object_key"] for r in body["results"]] == ["licenses/L1.pdf", "licenses/L2.pdf"]
    assert bus.types() == ["delivery_ready_for_pickup"] and store.pending(CASE) == []


def test_a_case_concluded_with_its_documents_is_delivered_without_asking_elicense():
    """Through the real use case: the keys come with the event; elicense is asked only for a
    licence whose result has none (a session stored before joint_review kept them)."""
    store = MemoryDeliveryStore(RecordingBus("delivery"))
    elicense = mock.Mock()
    elicense.get_license.side_effect = lambda lid: {"document_key": f"licenses/{lid}.pdf"}
    worker = worker_factory(DeliveryWorker, delivery=Delivery(store, FakeBlobs(), pickup_code=lambda: CODE),
                            elicense=elicense)
    worker.on_case_concluded(case_concluded(common_pb2.DELIVERY_CHANNEL_ELECTRONIC, results=[
        review_events.ResultDocument(license_id="L1", item_code="110000000001", document_key="results/L1.pdf"),
        review_events.ResultDocument(license_id="L2", item_code="110000000005", document_key="results/L2.pdf")]))
    assert [r["object_key"] for r in store.get(CASE)["results"]] == ["results/L1.pdf", "results/L2.pdf"]
    elicense.get_license.assert_not_called()

    worker.on_case_concluded(case_concluded(common_pb2.DELIVERY_CHANNEL_ELECTRONIC, case_no="C2", results=[
        review_events.ResultDocument(license_id="L1", item_code="110000000001"),
        review_events.ResultDocument(license_id="L2", item_code="110000000005", document_key="results/L2.pdf")]))
    assert [r["object_key"] for r in store.get("C2")["results"]] == ["licenses/L1.pdf", "results/L2.pdf"]
    elicense.get_license.assert_called_once_with("L1")


def test_session_withdrawn_is_decoded_and_cancels():
    delivery = handlers_mock()
    worker = worker_factory(DeliveryWorker, delivery=delivery)
    worker.on_session_withdrawn(to_payload(review_events.SessionWithdrawn(
        case_no=CASE, region_code="440100", license_ids=["L1"], after_conclusion=True,
        overridden=review_pb2.SESSION_STATUS_APPROVED, withdrawn_at=wire.timestamp_of_iso("2026-11-27T09:00:00+00:00"),
        reason="申请人撤回")))
    delivery.on_session_withdrawn.assert_called_once_with(
        domain.SessionWithdrawn(case_no=CASE, region_code="440100", after_conclusion=True))


def test_license_revoked_is_decoded_and_recorded():
    delivery = handlers_mock()
    worker = worker_factory(DeliveryWorker, delivery=delivery)
    worker.on_license_revoked(to_payload(license_events.LicenseRevoked(
        license_id="L1", case_no=CASE, holder_code="11010519491231002X", reason="信息有误", revoked_by="officer-1")))
    delivery.on_license_revoked.assert_called_once_with(
        domain.LicenseRevoked(license_id="L1", case_no=CASE, reason="信息有误"))


def test_a_domain_refusal_is_absorbed_and_an_outage_raised_for_a_retry():
    from services.common.errors import FailedPrecondition
    delivery = handlers_mock()
    worker = worker_factory(DeliveryWorker, delivery=delivery)
    delivery.on_session_withdrawn.side_effect = FailedPrecondition("the delivery is cancelled")
    assert worker.on_session_withdrawn(to_payload(review_events.SessionWithdrawn(case_no=CASE))) is None
    delivery.on_session_withdrawn.side_effect = ConnectionError("store away")
    with pytest.raises(ConnectionError):
        worker.on_session_withdrawn(to_payload(review_events.SessionWithdrawn(case_no=CASE)))


# -- the container's own dependencies: the inbox and the sweeper -----------------------------------


@pytest.fixture
def container():
    """The worker's container as `nameko run` builds it (not started: no broker is needed)."""
    return ServiceContainer(DeliveryWorker, {"AMQP_URI": "memory://"})


def test_an_event_id_already_in_the_inbox_is_skipped(container):
    inbox = dependency(container, "inbox")
    inbox.collection = MemoryInboxCollection()
    entrypoint = get_extension(container, Entrypoint, method_name="on_license_revoked")
    delivery = handlers_mock()
    payload = to_payload(license_events.LicenseRevoked(license_id="L1", case_no=CASE))
    for _ in range(2):  # the same event delivered twice (a redelivery, a federated copy)
        ctx = WorkerContext(container, DeliveryWorker, entrypoint, data={"event_id": "e-1"})
        worker_factory(DeliveryWorker, delivery=delivery, inbox=inbox.get_dependency(ctx)).on_license_revoked(payload)
    assert delivery.on_license_revoked.call_count == 1
    assert list(inbox.collection.docs) == ["delivery.on_license_revoked:e-1"]


def test_the_sweeper_publishes_what_a_failed_publish_left_pending(container):
    bus = FlakyBus("delivery")
    store = MemoryDeliveryStore(bus)
    handlers = Delivery(store, FakeBlobs(), pickup_code=lambda: CODE)
    dependency(container, "delivery").instance = handlers  # what Component.setup builds with build_delivery
    bus.away = True
    handlers.on_case_concluded(domain.CaseConcluded(case_no=CASE, approved=True, channel=domain.WINDOW,
                                                    applicant_id="11010519491231002X"), lambda _: {})
    [left] = store.pending(CASE)
    assert bus.published == [] and left["event_type"] == "delivery_ready_for_pickup"
    bus.away = False
    sweeper = dependency(container, "sweeper")
    assert sweeper.sweep_once() == 0  # not due yet: its writer's retry time has not come
    make_due(store, CASE)
    assert sweeper.sweep_once() == 1
    assert [(t, h["event_id"]) for t, _, h in bus.published] == [("delivery_ready_for_pickup", left["id"])]
    assert store.pending(CASE) == [] and sweeper.sweep_once() == 0
