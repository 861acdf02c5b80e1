"""What every delivery store promises (the port the handlers use), run against the in-memory fake
(services.delivery.fakes) and the real MongoDB store alike: a delivery saved and read back as the
domain's values, a conditional update refused when the status it expects is stale, the events a
save adds published after the commit and removed, kept pending when the bus fails and published by
the sweep later, revocations and wrong pickup codes counted once. The last tests are the real
store's own: the stored strings are those the collection has always held."""
import time
import uuid

import pytest

from onething.delivery.v1 import events_pb2
from services.common.bus import RecordingBus, outbox_entry
from services.common.testing import FlakyBus, make_due
from services.delivery import domain
from services.delivery.fakes import MemoryDeliveryStore


@pytest.fixture(params=["memory", pytest.param("mongo", marks=pytest.mark.integration)])
def kind(request):
    if request.param == "mongo":
        request.getfixturevalue("own_database")("delivery")
    return request.param


@pytest.fixture
def make_store(kind):
    def make(bus=None):
        if kind == "memory":
            return MemoryDeliveryStore(bus)
        from services.delivery.store import DeliveryStore
        return DeliveryStore(bus)
    return make


@pytest.fixture
def bus():
    return FlakyBus("delivery")


@pytest.fixture
def store(make_store, bus):
    return make_store(bus)


def new_case():
    return f"C{uuid.uuid4().hex[:12]}"


def window_delivery(case_no, status=domain.READY_FOR_PICKUP):
    return {"case_no": case_no, "channel": domain.WINDOW, "status": status, "results": [], "attempt": 1,
            "applicant_id": "11010519491231002X", "region_code": "440100", "pickup_code": "042517",
            "history": [{"status": domain.PREPARED, "at": "2026-11-27T09:00:00+00:00", "note": "", "by": ""},
                        {"status": status, "at": "2026-11-27T09:00:00+00:00", "note": "", "by": ""}]}


def ready_event(case_no):
    return outbox_entry("delivery_ready_for_pickup", events_pb2.DeliveryReadyForPickup(
        case_no=case_no, channel=domain.CHANNEL_NUMBERS[domain.WINDOW]), case_no)


def completed_event(case_no):
    return outbox_entry("delivery_completed", events_pb2.DeliveryCompleted(
        case_no=case_no, channel=domain.CHANNEL_NUMBERS[domain.WINDOW], completed_by="clerk-7"), case_no)


# -- deliveries ------------------------------------------------------------------------------------


def test_a_delivery_is_read_back_as_it_was_saved_with_the_domains_values(store):
    case_no = new_case()
    body = window_delivery(case_no)
    assert store.get(case_no) is None
    assert store.insert(body, [])
    got = store.get(case_no)
    assert got == body
    assert got["status"] is domain.READY_FOR_PICKUP and got["channel"] is domain.WINDOW
    assert [h["status"] for h in got["history"]] == [domain.PREPARED, domain.READY_FOR_PICKUP]
    assert all(isinstance(h["status"], domain.Status) for h in got["history"])


def test_a_second_insert_of_the_same_case_is_refused_and_changes_nothing(store, bus):
    case_no = new_case()
    assert store.insert(window_delivery(case_no), [ready_event(case_no)])
    other = dict(window_delivery(case_no), pickup_code="999999")
    assert not store.insert(other, [ready_event(case_no)])
    assert store.get(case_no)["pickup_code"] == "042517"
    assert bus.types() == ["delivery_ready_for_pickup"] and store.pending(case_no) == []


def test_an_update_expecting_the_current_status_replaces_the_delivery(store):
    case_no = new_case()
    store.insert(window_delivery(case_no), [])
    done = window_delivery(case_no, domain.COMPLETED)
    assert store.update(case_no, domain.READY_FOR_PICKUP, done, [])
    assert store.get(case_no) == done


def test_an_update_expecting_a_stale_status_is_refused_and_changes_nothing(store, bus):
    case_no = new_case()
    store.insert(window_delivery(case_no), [])
    store.update(case_no, domain.READY_FOR_PICKUP, window_delivery(case_no, domain.COMPLETED), [])
    again = dict(window_delivery(case_no, domain.COMPLETED), failure_reason="second clerk")
    assert not store.update(case_no, domain.READY_FOR_PICKUP, again, [completed_event(case_no)])
    assert "failure_reason" not in store.get(case_no)
    assert bus.published == [] and store.pending(case_no) == []
    assert not store.update(new_case(), domain.READY_FOR_PICKUP, again, [])  # no such delivery


# -- the outbox ------------------------------------------------------------------------------------


def test_the_events_of_a_save_are_published_after_it_and_removed(store, bus):
    case_no = new_case()
    ready = ready_event(case_no)
    assert store.insert(window_delivery(case_no), [ready])
    assert bus.types() == ["delivery_ready_for_pickup"] and store.pending(case_no) == []
    [(_, payload, headers)] = bus.published
    assert payload["case_no"] == case_no and headers["event_id"] == ready["id"] and headers["case_no"] == case_no
    assert store.update(case_no, domain.READY_FOR_PICKUP, window_delivery(case_no, domain.COMPLETED),
                        [completed_event(case_no)])
    assert bus.types() == ["delivery_ready_for_pickup", "delivery_completed"] and store.pending(case_no) == []


def test_events_a_failing_bus_did_not_take_stay_pending_and_the_sweep_publishes_them(store, bus):
    case_no = new_case()
    bus.away = True
    ready = ready_event(case_no)
    assert store.insert(window_delivery(case_no), [ready])  # the save stands; the event waits
    [pending] = store.pending(case_no)
    assert pending["id"] == ready["id"] and pending["attempts"] == 1 and pending["next_at"] > time.time()
    assert store.get(case_no)["status"] is domain.READY_FOR_PICKUP
    bus.away = False
    make_due(store, case_no)
    assert store.sweep() >= 1
    assert [h["event_id"] for t, _, h in bus.published if h["case_no"] == case_no] == [ready["id"]]
    assert store.pending(case_no) == []


def test_a_store_without_a_bus_keeps_its_events_for_the_sweep_of_one_with_a_bus(make_store, bus):
    case_no = new_case()
    quiet = make_store(None)
    assert quiet.insert(window_delivery(case_no), [ready_event(case_no)])
    assert len(quiet.pending(case_no)) == 1 and quiet.sweep() == 0
    if isinstance(quiet, MemoryDeliveryStore):  # the fake's data lives in the instance
        quiet.bus = bus
        sweeping = quiet
    else:
        sweeping = make_store(bus)
    make_due(sweeping, case_no)
    assert sweeping.sweep() >= 1 and sweeping.pending(case_no) == []
    assert [t for t, _, h in bus.published if h["case_no"] == case_no] == ["delivery_ready_for_pickup"]


# -- revocations and wrong pickup codes ------------------------------------------------------------


def test_a_revocation_is_kept_once_and_only_for_its_case(store):
    case_no, other = new_case(), new_case()
    store.add_revocation(f"{case_no}-L1", case_no, "2026-11-27T09:00:00+00:00", "信息有误")
    store.add_revocation(f"{case_no}-L1", case_no, "2026-11-28T09:00:00+00:00", "again")  # redelivered
    store.add_revocation(f"{other}-L1", other, "2026-11-27T09:00:00+00:00", "")
    assert store.revocations(case_no) == {f"{case_no}-L1": {"revoked_at": "2026-11-27T09:00:00+00:00",
                                                            "reason": "信息有误"}}
    assert store.revocations(new_case()) == {}


def test_wrong_pickup_codes_are_counted_and_lock_at_the_limit(store):
    case_no = new_case()
    store.insert(window_delivery(case_no), [])
    assert store.record_pickup_failure(case_no, 3, "2026-11-27T09:30:00+00:00") == (1, False)
    assert store.record_pickup_failure(case_no, 3, "2026-11-27T09:30:00+00:00") == (2, False)
    assert store.record_pickup_failure(case_no, 3, "2026-11-27T09:30:00+00:00") == (3, True)
    body = store.get(case_no)
    assert body["pickup_failures"] == 0 and body["pickup_locked_until"] == "2026-11-27T09:30:00+00:00"
    assert body["status"] is domain.READY_FOR_PICKUP


# -- the real store's stored form ------------------------------------------------------------------


@pytest.fixture
def mongo_store(own_database):
    from services.delivery.store import DeliveryStore
    own_database("delivery")
    return DeliveryStore(RecordingBus("delivery"))


@pytest.mark.integration
def test_the_collection_keeps_the_strings_it_has_always_held(mongo_store):
    from services.delivery.store import DeliveryDoc
    case_no = new_case()
    mongo_store.insert(window_delivery(case_no), [])
    stored = DeliveryDoc._get_collection().find_one({"_id": case_no})["body"]
    assert stored["status"] == "DELIVERY_STATUS_READY_FOR_PICKUP" and stored["channel"] == "DELIVERY_CHANNEL_WINDOW"
    assert [h["status"] for h in stored["history"]] == ["DELIVERY_STATUS_PREPARED",
                                                        "DELIVERY_STATUS_READY_FOR_PICKUP"]


@pytest.mark.integration
def test_a_delivery_written_before_the_enums_reads_as_the_domains_values(mongo_store):
    from services.delivery.store import DeliveryDoc
    case_no = new_case()
    DeliveryDoc._get_collection().insert_one({"_id": case_no, "outbox": [], "body": {
        "case_no": case_no, "channel": "DELIVERY_CHANNEL_UNSPECIFIED", "status": "DELIVERY_STATUS_CANCELLED",
        "results": [], "attempt": 0,
        "history": [{"status": "DELIVERY_STATUS_CANCELLED", "at": "2026-11-27T09:00:00+00:00", "note": "",
                     "by": ""}]}})
    body = mongo_store.get(case_no)
    assert body["status"] is domain.CANCELLED and body["channel"] is domain.Channel.UNSPECIFIED
    assert body["history"][0]["status"] is domain.CANCELLED
    assert mongo_store.update(case_no, domain.CANCELLED, dict(body, attempt=1), [])
