"""What every catalog store promises (the port the handlers use), run against the in-memory fake
(services.catalog.fakes) and the real MongoDB store alike: a version saved and read back as the
domain's values (definitions.PackageVersion, its status a VersionStatus), a second save of the same
version refused, a status change refused when the status it expects is stale, a draft replaced
only while it is one, the events a write adds (or an event added to a version without changing it)
published after the commit and removed, kept pending when the bus fails and published by the sweep
later; the versions a site above published (definitions.UpstreamVersion) kept once each, read
back, the latest per code, their problem noted. The last tests are the real store's own: the
stored strings are those the collection has always held."""
import datetime
import time
import uuid

import pytest

from onething.catalog.v1 import catalog_pb2
from services.catalog.definitions import PackageVersion, UpstreamVersion, VersionStatus
from services.catalog.fakes import MemoryCatalogStore
from services.common.bus import RecordingBus, outbox_entry
from services.common.testing import FlakyBus, make_due

DRAFT, PUBLISHED, RETIRED = VersionStatus.DRAFT, VersionStatus.PUBLISHED, VersionStatus.RETIRED
T0 = datetime.datetime(2026, 11, 27, 9, 0, tzinfo=datetime.UTC)


class Clock:
    """Times the store stamps: T0, then a minute later each call."""

    def __init__(self):
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return T0 + datetime.timedelta(minutes=self.calls - 1)


@pytest.fixture(params=["memory", pytest.param("mongo", marks=pytest.mark.integration)])
def kind(request):
    if request.param == "mongo":
        request.getfixturevalue("own_database")("catalog")
    return request.param


@pytest.fixture
def make_store(kind):
    def make(bus=None, clock=None):
        if kind == "memory":
            return MemoryCatalogStore(bus, clock=clock)
        from services.catalog.store import CatalogStore
        return CatalogStore(bus, clock=clock)
    return make


@pytest.fixture
def bus():
    return FlakyBus("catalog")


@pytest.fixture
def store(make_store, bus):
    return make_store(bus, Clock())


def new_code():
    return f"T{uuid.uuid4().hex[:10].upper()}"


def definition(code, name="测试一件事"):
    return {"code": code, "home": "national", "base": {"code": code, "name": name, "items": []}, "overlays": {},
            "bodies": {}, "departments": {"gaj": "公安局"}, "fields": {}, "regions": {}}


def event(code, version=1):
    return outbox_entry("package_version_changed", catalog_pb2.PackageVersion(code=code, version=version))


def published(bus, code):
    """The ids of the events about `code` the bus took (the real store's sweep may publish others')."""
    return [h["event_id"] for _, payload, h in bus.published if payload.get("code") == code]


# -- versions --------------------------------------------------------------------------------------


def test_a_version_is_read_back_as_it_was_saved_with_the_domains_values(store):
    code = new_code()
    assert store.version(code, 1) is None and store.latest(code) is None and store.versions(code) == []
    assert store.add_version(code, 1, PUBLISHED, definition(code), "d1")
    found = store.version(code, 1)
    assert found == PackageVersion(code=code, version=1, status=PUBLISHED, digest="d1", definition=definition(code),
                                   created_at=T0, published_at=T0, retired_at=None)
    assert found.status is PUBLISHED and found.name == "测试一件事"
    assert store.latest(code) == found and store.latest(code, PUBLISHED) == found
    assert store.latest(code, DRAFT) is None
    assert code in store.codes()


def test_a_draft_has_no_publication_time_and_versions_come_in_order(store):
    code = new_code()
    assert store.add_version(code, 2, DRAFT, definition(code, "新版"), "d2")
    assert store.add_version(code, 1, PUBLISHED, definition(code), "d1")
    assert [(v.version, v.status) for v in store.versions(code)] == [(1, PUBLISHED), (2, DRAFT)]
    assert store.version(code, 2).published_at is None
    assert store.latest(code).version == 2 and store.latest(code, PUBLISHED).version == 1


def test_a_second_save_of_the_same_version_is_refused_and_changes_nothing(store, bus):
    code = new_code()
    assert store.add_version(code, 1, PUBLISHED, definition(code), "d1")
    assert not store.add_version(code, 1, DRAFT, definition(code, "别的"), "other", [event(code)])
    found = store.version(code, 1)
    assert (found.status, found.digest, found.name) == (PUBLISHED, "d1", "测试一件事")
    assert published(bus, code) == [] and store.pending(f"{code}:1") == []


def test_a_status_change_expecting_the_current_status_moves_it_and_stamps_the_time(store):
    code = new_code()
    store.add_version(code, 1, DRAFT, definition(code), "d1")
    assert store.set_status(code, 1, DRAFT, PUBLISHED)
    assert store.set_status(code, 1, PUBLISHED, RETIRED)
    found = store.version(code, 1)
    assert found.status is RETIRED
    assert (found.created_at, found.published_at, found.retired_at) == (
        T0, T0 + datetime.timedelta(minutes=1), T0 + datetime.timedelta(minutes=2))


def test_a_status_change_expecting_a_stale_status_is_refused_and_changes_nothing(store, bus):
    code = new_code()
    store.add_version(code, 1, PUBLISHED, definition(code), "d1")
    assert not store.set_status(code, 1, DRAFT, PUBLISHED, [event(code)])  # someone published it meanwhile
    assert not store.set_status(code, 2, PUBLISHED, RETIRED)  # no such version
    found = store.version(code, 1)
    assert found.status is PUBLISHED and found.retired_at is None
    assert published(bus, code) == [] and store.pending(f"{code}:1") == []


def test_a_draft_is_replaced_only_while_it_is_a_draft(store):
    code = new_code()
    store.add_version(code, 1, DRAFT, definition(code), "d1")
    assert store.replace_draft(code, 1, definition(code, "改过"), "d1b")
    assert (store.version(code, 1).name, store.version(code, 1).digest) == ("改过", "d1b")
    store.set_status(code, 1, DRAFT, PUBLISHED)
    assert not store.replace_draft(code, 1, definition(code, "再改"), "d1c")
    assert store.version(code, 1).digest == "d1b"
    assert not store.replace_draft(new_code(), 1, definition(code), "none")


# -- the outbox ------------------------------------------------------------------------------------


def test_the_events_of_a_write_are_published_after_it_and_removed(store, bus):
    code = new_code()
    added, changed = event(code), event(code)
    assert store.add_version(code, 1, DRAFT, definition(code), "d1", [added])
    assert store.set_status(code, 1, DRAFT, PUBLISHED, [changed])
    assert published(bus, code) == [added["id"], changed["id"]]
    assert bus.published[0][0] == "package_version_changed" and bus.published[0][1] == {"code": code, "version": 1}
    assert store.pending(f"{code}:1") == []


def test_events_a_failing_bus_did_not_take_stay_pending_and_the_sweep_publishes_them(store, bus):
    code = new_code()
    bus.away = True
    added = event(code)
    assert store.add_version(code, 1, PUBLISHED, definition(code), "d1", [added])  # the write stands
    [pending] = store.pending(f"{code}:1")
    assert pending["id"] == added["id"] and pending["attempts"] == 1 and pending["next_at"] > time.time()
    assert store.version(code, 1).status is PUBLISHED
    bus.away = False
    store.sweep()  # not due yet: the writer's retry time has not come
    assert published(bus, code) == [] and len(store.pending(f"{code}:1")) == 1
    make_due(store, f"{code}:1")
    assert store.sweep() >= 1
    assert published(bus, code) == [added["id"]]
    assert store.pending(f"{code}:1") == []


def test_a_store_without_a_bus_keeps_its_events_for_the_sweep_of_one_with_a_bus(make_store, bus):
    code = new_code()
    quiet = make_store(None)
    assert quiet.add_version(code, 1, PUBLISHED, definition(code), "d1", [event(code)])
    assert len(quiet.pending(f"{code}:1")) == 1 and quiet.sweep() == 0
    if isinstance(quiet, MemoryCatalogStore):  # the fake's data lives in the instance
        quiet.bus = bus
        sweeping = quiet
    else:
        sweeping = make_store(bus)
    make_due(sweeping, f"{code}:1")
    assert sweeping.sweep() >= 1 and sweeping.pending(f"{code}:1") == []
    assert len(published(bus, code)) == 1


def test_events_about_a_version_are_added_without_changing_it_and_published(store, bus):
    code = new_code()
    store.add_version(code, 1, PUBLISHED, definition(code), "d1")
    before = store.version(code, 1)
    announced = event(code)
    assert store.add_events(code, 1, [announced])
    assert published(bus, code) == [announced["id"]] and store.pending(f"{code}:1") == []
    assert store.version(code, 1) == before  # status, digest and moments untouched
    assert not store.add_events(code, 2, [event(code, 2)])  # no such version: nothing kept
    assert store.pending(f"{code}:2") == [] and len(published(bus, code)) == 1


def test_an_event_added_while_the_bus_is_away_waits_for_the_sweep(store, bus):
    code = new_code()
    store.add_version(code, 1, PUBLISHED, definition(code), "d1")
    bus.away = True
    announced = event(code)
    assert store.add_events(code, 1, [announced])
    assert [e["id"] for e in store.pending(f"{code}:1")] == [announced["id"]]
    bus.away = False
    make_due(store, f"{code}:1")
    assert store.sweep() >= 1 and published(bus, code) == [announced["id"]]


# -- what a site above published -------------------------------------------------------------------


def upstream(code, version, digest="u1", site="440000"):
    return UpstreamVersion(site=site, code=code, version=version, digest=digest, definition=definition(code))


def test_an_upstream_version_is_kept_once_and_read_back(store):
    code = new_code()
    assert store.upstream("440000", code, 1) is None and store.latest_upstream("440000", code) is None
    assert store.add_upstream(upstream(code, 1))
    kept = store.upstream("440000", code, 1)
    assert (kept.site, kept.code, kept.version, kept.digest, kept.problem) == ("440000", code, 1, "u1", "")
    assert kept.definition == definition(code) and kept.received_at == T0
    assert not store.add_upstream(upstream(code, 1, digest="other"))  # the first one stays
    assert store.upstream("440000", code, 1).digest == "u1"


def test_the_latest_upstream_version_is_the_highest_number_of_that_site_and_code(store):
    code, other = new_code(), new_code()
    store.add_upstream(upstream(code, 2, "u2"))
    store.add_upstream(upstream(code, 1, "u1"))
    store.add_upstream(upstream(code, 7, "u7", site="450000"))
    store.add_upstream(upstream(other, 3, "o3"))
    assert store.latest_upstream("440000", code).digest == "u2"
    assert store.latest_upstream("450000", code).version == 7
    assert {code, other} <= set(store.upstream_codes("440000")) and code in store.upstream_codes("450000")
    assert other not in store.upstream_codes("450000")


def test_a_problem_is_noted_on_a_kept_upstream_version_and_cleared(store):
    code = new_code()
    store.add_upstream(upstream(code, 1))
    assert store.note_upstream("440000", code, 1, "overlays/440100: only shorten")
    assert store.upstream("440000", code, 1).problem == "overlays/440100: only shorten"
    assert store.note_upstream("440000", code, 1, "")
    assert store.upstream("440000", code, 1).problem == ""
    assert not store.note_upstream("440000", code, 2, "no such version")


# -- the real store's stored form ------------------------------------------------------------------


@pytest.fixture
def mongo_store(own_database):
    from services.catalog.store import CatalogStore
    own_database("catalog")
    return CatalogStore(RecordingBus("catalog"))


@pytest.mark.integration
def test_the_collection_keeps_the_strings_it_has_always_held(mongo_store):
    from services.catalog.store import PackageVersionDoc
    code = new_code()
    mongo_store.add_version(code, 1, DRAFT, definition(code), "d1")
    mongo_store.add_version(code, 2, PUBLISHED, definition(code), "d2")
    mongo_store.set_status(code, 1, DRAFT, RETIRED)
    coll = PackageVersionDoc._get_collection()
    assert [d["status"] for d in coll.find({"code": code}).sort("version")] == ["retired", "published"]
    assert coll.find_one({"_id": f"{code}:2"})["version"] == 2


@pytest.mark.integration
def test_a_version_written_before_the_enums_reads_as_the_domains_values(mongo_store):
    from services.catalog.store import PackageVersionDoc
    code = new_code()
    PackageVersionDoc._get_collection().insert_one({
        "_id": f"{code}:1", "code": code, "version": 1, "status": "published", "digest": "d1",
        "definition": definition(code), "created_at": T0, "published_at": T0,
        "outbox": []})
    found = mongo_store.latest(code, PUBLISHED)
    assert found.status is PUBLISHED and found.published_at == T0 and found.retired_at is None
    assert mongo_store.set_status(code, 1, PUBLISHED, RETIRED)
    assert mongo_store.version(code, 1).status is RETIRED


@pytest.mark.integration
def test_upstream_versions_are_kept_in_their_own_collection(mongo_store):
    from services.catalog.store import PackageVersionDoc, UpstreamVersionDoc
    code = new_code()
    mongo_store.add_upstream(upstream(code, 3))
    raw = UpstreamVersionDoc._get_collection().find_one({"_id": f"440000:{code}:3"})
    assert (raw["site"], raw["code"], raw["version"], raw["digest"], raw["problem"]) == ("440000", code, 3, "u1", "")
    assert PackageVersionDoc._get_collection().find_one({"code": code}) is None
