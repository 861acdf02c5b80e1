"""The licence store's contract, run against the in-memory twin (services.elicense.fakes) and the
MongoDB store (integration): what the handlers rely on, so a test passing on the fake says
something about the real thing."""
import dataclasses
import time
import uuid

import pytest

from services.common.audit import MemoryAuditLog
from services.common.memory import MemoryOutbox
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


@pytest.mark.integration
def test_reservations_an_earlier_version_kept_among_the_counters_are_honoured_and_moved(own_database):
    """Earlier versions kept reservations in `counters`, which made every serial drawn read them all
    (the local server's findAndModify reads the whole collection): they are honoured where they are
    and moved to their own collection, once, however often the move runs."""
    from services.elicense.store import CounterDoc, LicenseStore, ReservationDoc, move_reservations
    own_database("elicense")
    store = LicenseStore(bus=None)
    key = unique("CSYXZM.440100WSJK.")
    counters = CounterDoc._get_collection()
    counters.insert_one({"_id": key, "value": 7})
    counters.insert_many([{"_id": f"reserved:C{i}:110000000001", "value": i + 1} for i in range(7)])
    assert store.serial_for(key, "C3:110000000001") == 4  # read where an earlier version put it
    assert move_reservations(limit=3) == 7 and move_reservations() == 0
    assert [d["_id"] for d in counters.find()] == [key]  # only the counter is left to read
    assert ReservationDoc._get_collection().count_documents({}) == 7
    assert store.serial_for(key, "C3:110000000001") == 4 and store.serial_for(key, "C9:110000000001") == 8
    assert counters.find_one({"_id": key})["value"] == 8
    # once moved, a serial looks in the reservations' own collection only
    store.legacy_reservations = False
    counters.insert_one({"_id": "reserved:C5:110000000009", "value": 3})  # an earlier version, after the move
    assert store.serial_for(key, "C3:110000000001") == 4 and store.serial_for(key, "C5:110000000009") == 9


def test_keys_are_added_once_and_a_rotation_retires_the_older_ones(store):
    region = unique("R")
    first = store.add_key(SigningKey(f"{region}-1", region, "priv-1", "pub-1"))
    assert first == SigningKey(f"{region}-1", region, "priv-1", "pub-1", active=True, created_at=0.0)
    assert store.add_key(SigningKey(f"{region}-1", region, "priv-x", "pub-x")) == first  # idempotent: the first
    assert store.active_key(region) == first and store.key(f"{region}-1") == first
    later = store.add_key(SigningKey(f"{region}-2", region, "priv-2", "pub-2", created_at=2000.0))
    assert not store.retire_key(f"{region}-2", 1999.0)  # made after the moment: stays
    assert store.retire_key(f"{region}-1", 2000.0)
    assert not store.retire_key(f"{region}-1", 2001.0)  # retired already: once
    assert not store.retire_key("nope", 2000.0)
    assert store.active_key(region) == later
    assert [(k.key_id, k.active, k.retired_at) for k in store.keys(region)] == [
        (f"{region}-1", False, 2000.0), (f"{region}-2", True, 0.0)]
    assert [k.key_id for k in store.every_key() if k.region_code == region] == [f"{region}-1", f"{region}-2"]
    assert store.key("nope") is None and store.active_key(unique("R")) is None and store.keys(unique("R")) == []


def announced(key, site="440100", until=0.0):
    return domain.published(SigningKey(key.key_id, key.region_code, key.private_key, key.public_key,
                                       active=not until, created_at=key.created_at, retired_at=until), site)


def make_key_due(store, key_id):
    """Every pending entry of a signing key's outbox due now (services.common.testing.make_due, for
    the collection of keys)."""
    if isinstance(store, MemoryOutbox):
        store.make_due(key_id)
        return
    from services.elicense.store import SigningKeyDoc
    coll = SigningKeyDoc._get_collection()
    outbox = coll.find_one({"_id": key_id}, {"outbox": 1})["outbox"]
    coll.update_one({"_id": key_id}, {"$set": {"outbox": [dict(e, next_at=0) for e in outbox]}})


def key_events(bus, key_id):
    return [(p, h) for t, p, h in bus.published if t == "signing_key_published.440100" and p.get("key_id") == key_id]


def test_a_keys_events_go_out_from_its_own_outbox_with_the_id_derived_from_the_key(store, bus):
    region = unique("R")
    key = SigningKey(f"{region}-1", region, "priv-1", "pub-1", created_at=1000.0)
    assert store.add_key(key, [announced(key)]) == key
    [(payload, headers)] = key_events(bus, key.key_id)
    assert payload == {"site_region": "440100", "key_id": key.key_id, "algorithm": "SIGNING_ALGORITHM_ED25519",
                       "public_key": "pub-1", "valid_from": "1970-01-01T00:16:40Z", "issuer_region": region}
    assert headers["event_id"] == f"signing_key_published:440100:{key.key_id}" and headers["case_no"] == ""
    assert store.pending(key.key_id) == []
    twin = SigningKey(f"{region}-1", region, "priv-x", "pub-x")
    assert store.add_key(twin, [announced(twin)]) == key  # the loser's event is not kept
    assert len(key_events(bus, key.key_id)) == 1 and store.pending(key.key_id) == []
    assert store.retire_key(key.key_id, 3000.0, [announced(key, until=3000.0)])
    payload, headers = key_events(bus, key.key_id)[-1]
    assert payload["valid_until"] == "1970-01-01T00:50:00Z"
    assert headers["event_id"] == f"signing_key_published:440100:{key.key_id}:until:3000000"
    assert not store.retire_key(key.key_id, 4000.0, [announced(key, until=4000.0)])
    assert len(key_events(bus, key.key_id)) == 2 and store.pending(key.key_id) == []


def test_announcing_a_key_again_waits_once_in_its_outbox_and_goes_out_each_time(store, bus):
    region = unique("R")
    key = store.add_key(SigningKey(f"{region}-1", region, "priv-1", "pub-1", created_at=1000.0))
    bus.away = True
    assert store.announce_key(key.key_id, [announced(key)]) == 1
    assert store.announce_key(key.key_id, [announced(key)]) == 0  # the same id pending already
    [entry] = store.pending(key.key_id)
    assert entry["id"] == f"signing_key_published:440100:{key.key_id}" and entry["attempts"] == 1
    bus.away = False
    make_key_due(store, key.key_id)
    assert store.sweep() >= 1
    assert [h["event_id"] for _, h in key_events(bus, key.key_id)] == [entry["id"]]
    assert store.pending(key.key_id) == []
    assert store.announce_key(key.key_id, [announced(key)]) == 1  # a later start announces it again
    assert [h["event_id"] for _, h in key_events(bus, key.key_id)] == [entry["id"]] * 2
    assert store.announce_key("nope", [announced(key)]) == 0


def directory_key(region, key_id=None, public="pub-1", site="440300", **more):
    return domain.PublishedKey(site_region=site, key_id=key_id or f"{region}-1@{site}", issuer_region=region,
                               public_key=public, **more)


def test_the_key_directory_keeps_a_key_once_and_changes_only_its_dates(store):
    region = unique("R")
    key = directory_key(region, valid_from=1000.0)
    assert store.directory_key(key.key_id) is None
    assert store.add_directory_key(key, received_at=1500.0)
    assert store.directory_key(key.key_id) == key
    assert not store.add_directory_key(directory_key(region, public="pub-x"))  # known: never replaced
    assert store.directory_key(key.key_id) == key
    retired = dataclasses.replace(key, valid_until=3000.0)
    assert store.update_directory_key(retired)
    assert store.directory_key(key.key_id) == retired and not retired.active
    assert not store.update_directory_key(directory_key(region, public="pub-x", valid_until=9000.0))
    assert not store.update_directory_key(directory_key(region, site="440100", key_id=key.key_id))
    assert not store.update_directory_key(directory_key(unique("R")))  # unknown
    assert store.directory_key(key.key_id) == retired
    other = directory_key(region, key_id=f"{region}-7@440300")
    assert store.add_directory_key(other)
    assert store.directory_keys(region) == [retired, other] and store.directory_keys(unique("R")) == []
    assert store.key(key.key_id) is None and store.keys(region) == []  # the site's own keys are apart


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


@pytest.mark.integration
def test_directory_keys_and_dated_keys_are_stored_in_plain_fields(own_database):
    """The key directory's algorithm is kept as its name; a key kept before keys were dated (no
    retired_at, no outbox) reads as it was."""
    from services.elicense.store import DirectoryKeyDoc, LicenseStore, SigningKeyDoc
    own_database("elicense")
    store = LicenseStore(None)
    key = directory_key("440300", valid_from=1000.0)
    store.add_directory_key(key, received_at=1500.0)
    kept = DirectoryKeyDoc._get_collection().find_one({"_id": key.key_id})
    assert (kept["algorithm"], kept["site_region"], kept["issuer_region"], kept["received_at"]) == (
        "Ed25519", "440300", "440300", 1500.0)
    SigningKeyDoc._get_collection().insert_one({"_id": "440100-1", "region_code": "440100", "private_key": "p",
                                                "public_key": "q", "active": False})
    assert store.key("440100-1") == SigningKey("440100-1", "440100", "p", "q", active=False)
    assert store.pending("440100-1") == []


@pytest.mark.parametrize("moved, looks_there", [(0, False), (ConnectionError("the store is away"), True)])
def test_after_the_move_at_start_a_serial_looks_only_in_the_reservations(monkeypatch, moved, looks_there):
    """build_elicense moves the earlier version's reservations; once that worked the store stops
    looking for them among the counters, and while it has not (the store away at start) it goes on."""
    from services.elicense import wiring
    from services.elicense.fakes import MemoryBlobs

    def move():
        if isinstance(moved, Exception):
            raise moved
        return moved
    monkeypatch.setattr(wiring, "move_reservations", move)
    elicense = wiring.build_elicense(bus=None, blobs=MemoryBlobs(), audit=MemoryAuditLog("elicense"), site="440100")
    assert elicense.store.legacy_reservations is looks_there
