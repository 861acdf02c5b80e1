"""The licence store's contract, run against the in-memory twin (services.elicense.fakes) and the
MongoDB store (integration): what the handlers rely on, so a test passing on the fake says
something about the real thing."""
import time
import uuid

import pytest

from services.common.testing import FlakyBus
from services.elicense import domain
from services.elicense.domain import LicenseIssued, LicenseRevoked, LicenseStatus, SigningKey


@pytest.fixture(params=["memory", pytest.param("mongo", marks=pytest.mark.integration)])
def make_store(request):
    if request.param == "memory":
        from services.elicense.fakes import MemoryLicenseStore
        return MemoryLicenseStore
    from services.elicense.store import LicenseStore
    request.getfixturevalue("own_database")("elicense")
    return LicenseStore


@pytest.fixture
def bus():
    return FlakyBus("elicense")


@pytest.fixture
def store(make_store, bus):
    return make_store(bus)


def unique(prefix="C"):
    return f"{prefix}{uuid.uuid4().hex[:12].upper()}"


def licence(case_no=None, item_code="110000000001", holder_code=None, status=LicenseStatus.VALID, **more):
    case_no = case_no or unique()
    return {"license_id": f"1.2.156.3005.2.CSYXZM.440100WSJK.{uuid.uuid4().hex[:12]}.001.X", "case_no": case_no,
            "item_code": item_code, "holder_code": holder_code or unique("H"), "type_code": "CSYXZM",
            "status": status, "issued_at": "2026-11-27T10:00:00+00:00", **more}


def issued(fields):
    return LicenseIssued(license_id=fields["license_id"], case_no=fields["case_no"], item_code=fields["item_code"],
                         type_code=fields["type_code"], holder_code=fields["holder_code"],
                         document_key=f"licenses/{fields['case_no']}/{fields['license_id']}.pdf")


def revoked(fields, reason="登记错误"):
    return LicenseRevoked(license_id=fields["license_id"], case_no=fields["case_no"],
                          holder_code=fields["holder_code"], reason=reason, revoked_by="officer-1")


def published_for(bus, license_id):
    return [(t, p) for t, p, _ in bus.published if p.get("license_id") == license_id]


# --- licences -----------------------------------------------------------------------------------


def test_a_licence_is_kept_and_found_by_id_case_item_holder_and_case(store):
    fields = licence(holder_name="李华")
    assert store.insert(fields)
    got = store.get(fields["license_id"])
    assert got == fields and got["status"] is LicenseStatus.VALID
    assert store.for_case_item(fields["case_no"], fields["item_code"]) == fields
    assert store.for_case_item(fields["case_no"], "999999999999") is None
    assert store.by_holder(fields["holder_code"]) == [fields]
    assert store.by_case(fields["case_no"]) == [fields]
    assert store.get("1.2.156.3005.2.X.Y.1.001.Z") is None
    assert store.by_case(unique()) == [] and store.by_holder(unique("H")) == []
    got["holder_name"] = "王五"  # the caller's copy: the store keeps its own
    assert store.get(fields["license_id"])["holder_name"] == "李华"


def test_one_licence_per_id_and_per_case_item(store, bus):
    fields = licence()
    assert store.insert(fields, [issued(fields)])
    again = dict(fields, holder_name="another")
    assert not store.insert(again, [issued(again)])  # the same id
    twin = licence(case_no=fields["case_no"], item_code=fields["item_code"])
    assert not store.insert(twin, [issued(twin)])  # another id for the same case item
    assert store.get(twin["license_id"]) is None and "holder_name" not in store.get(fields["license_id"])
    assert [t for t, _ in published_for(bus, fields["license_id"])] == ["license_issued"]
    assert published_for(bus, twin["license_id"]) == []
    other_item = licence(case_no=fields["case_no"], item_code="110000000002")
    assert store.insert(other_item)


def test_a_status_change_is_refused_when_the_expected_status_is_stale(store, bus):
    fields = licence()
    store.insert(fields)
    assert store.change_status(fields["license_id"], LicenseStatus.VALID, LicenseStatus.REVOKED,
                               {"revoked_at": "2026-11-27T11:00:00+00:00", "revoke_reason": "登记错误"},
                               [revoked(fields)])
    late = licence()
    # a writer that still believes the licence valid: refused, nothing of it kept or published
    assert not store.change_status(fields["license_id"], LicenseStatus.VALID, LicenseStatus.SUPERSEDED,
                                   {"superseded_by": late["license_id"]}, [revoked(fields, "superseded")])
    assert not store.change_status("1.2.156.3005.2.X.Y.1.001.Z", LicenseStatus.VALID, LicenseStatus.REVOKED)
    got = store.get(fields["license_id"])
    assert got["status"] is LicenseStatus.REVOKED and got["revoke_reason"] == "登记错误"
    assert "superseded_by" not in got
    assert [p["reason"] for _, p in published_for(bus, fields["license_id"])] == ["登记错误"]
    assert store.pending(fields["license_id"]) == []
    with pytest.raises(ValueError):
        store.change_status(fields["license_id"], LicenseStatus.REVOKED, LicenseStatus.VALID, {"status": "x"})


# --- the outbox ---------------------------------------------------------------------------------


def test_events_of_a_save_are_published_after_the_commit_and_removed(store, bus):
    fields = licence()
    assert store.insert(fields, [issued(fields)])
    [(event_type, payload, headers)] = [p for p in bus.published if p[1].get("license_id") == fields["license_id"]]
    assert event_type == "license_issued" and payload["document_key"].endswith(".pdf")
    assert headers["case_no"] == fields["case_no"] and headers["event_id"]
    assert store.pending(fields["license_id"]) == []
    store.change_status(fields["license_id"], LicenseStatus.VALID, LicenseStatus.SUPERSEDED,
                        {"superseded_by": "NEW"}, [LicenseRevoked(
                            license_id=fields["license_id"], case_no=fields["case_no"],
                            holder_code=fields["holder_code"], reason="superseded", revoked_by="elicense:X",
                            superseded_by="NEW")])
    assert published_for(bus, fields["license_id"])[-1] == ("license_revoked", {
        "license_id": fields["license_id"], "case_no": fields["case_no"], "holder_code": fields["holder_code"],
        "reason": "superseded", "revoked_by": "elicense:X", "superseded_by": "NEW"})
    assert store.pending(fields["license_id"]) == []


def test_an_event_the_broker_refused_stays_pending_and_the_sweep_publishes_it_after_its_backoff(store, bus):
    fields = licence()
    bus.away = True
    assert store.insert(fields, [issued(fields)])  # the change is committed all the same
    assert store.get(fields["license_id"]) is not None
    [entry] = store.pending(fields["license_id"])
    assert entry["event_type"] == "license_issued" and entry["attempts"] == 1 and "away" in entry["last_error"]
    bus.away = False
    store.sweep()
    assert published_for(bus, fields["license_id"]) == []  # not before its next try is due
    time.sleep(max(0.0, entry["next_at"] - time.time()) + 0.2)
    assert store.sweep() >= 1
    assert [t for t, _ in published_for(bus, fields["license_id"])] == ["license_issued"]
    assert store.pending(fields["license_id"]) == []
    store.sweep()
    assert len(published_for(bus, fields["license_id"])) == 1  # once


def test_without_a_bus_nothing_is_published_and_the_events_wait(make_store):
    store = make_store(None)
    fields = licence()
    assert store.insert(fields, [issued(fields)])
    assert [e["event_type"] for e in store.pending(fields["license_id"])] == ["license_issued"]
    assert store.sweep() == 0


# --- serial numbers and signing keys ------------------------------------------------------------


def test_a_reserved_serial_number_is_kept_for_its_licence(store):
    key = unique("CSYXZM.440100WSJK.")
    first = store.serial_for(key, unique("R"))
    reservation = unique("R")
    second = store.serial_for(key, reservation)
    assert second == first + 1
    assert store.serial_for(key, reservation) == second  # a retry: the same number, no gap
    assert store.serial_for(unique("CSYXZM.440300WSJK."), unique("R")) == 1  # numbered per issuer


def test_keys_are_added_once_and_only_the_newest_stays_active(store):
    region = unique("R")
    first = store.add_key(SigningKey(f"{region}-1", region, "priv-1", "pub-1"))
    assert first == SigningKey(f"{region}-1", region, "priv-1", "pub-1", active=True, created_at=0.0)
    assert store.add_key(SigningKey(f"{region}-1", region, "priv-x", "pub-x")) == first  # idempotent: the first
    assert store.active_key(region) == first and store.key(f"{region}-1") == first
    later = store.add_key(SigningKey(f"{region}-2", region, "priv-2", "pub-2", created_at=2000.0))
    store.deactivate_keys_before(region, 2000.0)
    assert store.active_key(region) == later
    assert [(k.key_id, k.active) for k in store.keys(region)] == [(f"{region}-1", False), (f"{region}-2", True)]
    assert store.key("nope") is None and store.active_key(unique("R")) is None and store.keys(unique("R")) == []


# --- the stored form (the real store only) ------------------------------------------------------


@pytest.mark.integration
def test_statuses_are_stored_as_they_always_were(own_database):
    """Stored strings are data: a status is kept as LICENSE_STATUS_*, and documents written before
    the domain had its enum read as they are."""
    from services.elicense.store import LicenseDoc, LicenseStore
    own_database("elicense")
    store = LicenseStore(None)
    fields = licence()
    store.insert(fields)
    coll = LicenseDoc._get_collection()
    assert coll.find_one({"_id": fields["license_id"]})["fields"]["status"] == "LICENSE_STATUS_VALID"
    store.change_status(fields["license_id"], domain.VALID, domain.REVOKED, {"revoked_at": "2026-11-27"})
    assert coll.find_one({"_id": fields["license_id"]})["fields"]["status"] == "LICENSE_STATUS_REVOKED"
    old = licence()
    coll.insert_one({"_id": old["license_id"], "fields": dict(old, status="LICENSE_STATUS_SUPERSEDED"), "outbox": []})
    assert store.get(old["license_id"])["status"] is LicenseStatus.SUPERSEDED
