"""The catalog's worker: the `get_package` RPC that workers of other services call (they cannot use
gRPC inside eventlet) takes the look-up's arguments to the use case and answers with the package as
a plain dict, its status the proto enum's name as before; the `package_published` handler decodes
the event once, with the site that sent it (its `site` header), and hands it to the use case only
when that site is the catalog's upstream; a refusal is acknowledged, an outage raised for a retry,
an event id seen before skipped; the OutboxSweeper (no timer of its own) finds the handlers' store
and publishes what a failed publish left pending."""
import json
from unittest import mock

import pytest
from nameko.containers import ServiceContainer, WorkerContext
from nameko.testing.services import entrypoint_hook, worker_factory
from nameko.testing.utils import get_extension
from test_catalog_store_contract import definition, event

from services.catalog import codec, definitions
from services.catalog.definitions import UpstreamVersion, VersionStatus
from services.catalog.fakes import MemoryCatalogStore
from services.catalog.handlers import Catalog
from services.catalog.worker import CatalogWorker, SendingSite
from services.common.bus import RecordingBus
from services.common.errors import FailedPrecondition, NotFound
from services.common.events import to_payload
from services.common.testing import FlakyBus, MemoryInboxCollection, dependency, make_due
from services.common.worker import Inbox, OutboxSweeper, ReliableEventHandler, ReliableRpc


@pytest.fixture(scope="module")
def catalog(make_catalog):
    c = make_catalog()
    c.load()
    return c


@pytest.fixture
def container(green_waiting):
    """The worker's container as `nameko run` builds it (not started: no broker is needed); nameko's
    entrypoint_hook runs its workers (green_waiting: without eventlet's monkey patch)."""
    built = ServiceContainer(CatalogWorker, {"AMQP_URI": "memory://"})
    yield built
    built.kill()


def test_the_worker_has_the_rpc_and_the_package_published_handler():
    entrypoints = {e.method_name: e for e in ServiceContainer(CatalogWorker, {"AMQP_URI": "memory://"}).entrypoints}
    assert set(entrypoints) == {"get_package", "on_package_published"}
    assert isinstance(entrypoints["get_package"], ReliableRpc)
    handler = entrypoints["on_package_published"]
    assert isinstance(handler, ReliableEventHandler)
    assert (handler.source_service, handler.event_type) == ("catalog", "package_published")
    assert isinstance(CatalogWorker.inbox, Inbox) and CatalogWorker.inbox.database == "catalog"


def test_get_package_calls_the_use_case_with_the_look_ups_values():
    handlers = mock.create_autospec(Catalog, instance=True)
    handlers.get_package.return_value = {"code": "XSECS", "version": 2, "status": VersionStatus.RETIRED}
    worker = worker_factory(CatalogWorker, catalog=handlers)
    answer = worker.get_package("XSECS", "440300", {"maternity": "no"}, 2)
    handlers.get_package.assert_called_once_with("XSECS", "440300", {"maternity": "no"}, 2)
    assert answer == {"code": "XSECS", "version": 2, "status": "VERSION_STATUS_RETIRED"}
    worker.get_package("XSECS", "440100")  # no situations, no version: the defaults, the latest published
    handlers.get_package.assert_called_with("XSECS", "440100", {}, 0)


def test_get_package_through_the_container_answers_the_resolved_package(container, catalog):
    dependency(container, "catalog").instance = catalog  # what Component.setup builds with build_catalog
    with entrypoint_hook(container, "get_package") as get_package:
        pkg = get_package("XSECS", "440300", {"maternity": "no"})
    assert pkg["code"] == "XSECS" and pkg["region_code"] == "440300" and pkg["version"] == 1
    assert pkg["status"] == "VERSION_STATUS_PUBLISHED" and type(pkg["status"]) is str
    assert next(s for s in pkg["situations"] if s["key"] == "maternity")["answer"] == "no"
    assert pkg == dict(catalog.get_package("XSECS", "440300", {"maternity": "no"}), status="VERSION_STATUS_PUBLISHED")


def test_a_refused_look_up_reaches_the_caller(container, catalog):
    dependency(container, "catalog").instance = catalog
    with pytest.raises(NotFound), entrypoint_hook(container, "get_package") as get_package:
        get_package("NOPE", "440100")


def test_the_worker_sweeps_with_the_one_sweeper_of_its_catalog():
    sweeper = CatalogWorker.sweeper
    assert isinstance(sweeper, OutboxSweeper) and sweeper.component == "catalog"
    assert not hasattr(CatalogWorker, "sweep_outbox")  # the timer it had before is gone


def test_the_sweeper_publishes_what_a_failed_publish_left_pending(container, make_catalog):
    bus = FlakyBus("catalog")
    store = MemoryCatalogStore(bus)
    dependency(container, "catalog").instance = make_catalog(store=store)
    bus.away = True
    left = event("XSECS")
    store.add_version("XSECS", 1, VersionStatus.PUBLISHED, definition("XSECS"), "d1", [left])
    assert bus.published == [] and [e["id"] for e in store.pending("XSECS:1")] == [left["id"]]
    bus.away = False
    sweeper = dependency(container, "sweeper")
    assert sweeper.sweep_once() == 0  # not due yet: its writer's retry time has not come
    make_due(store, "XSECS:1")
    assert sweeper.sweep_once() == 1
    assert [(t, h["event_id"]) for t, _, h in bus.published] == [("package_version_changed", left["id"])]
    assert store.pending("XSECS:1") == [] and sweeper.sweep_once() == 0


# -- package_published ------------------------------------------------------------------------------


def published_payload(code="XSECS", version=1, name="新生儿出生一件事"):
    """A province's package_published payload, as its outbox sends it."""
    part = {"code": code, "home": "national", "base": {"code": code, "name": name, "items": []}, "overlays": {},
            "bodies": {}, "departments": {}, "fields": {}, "regions": {}}
    return to_payload(codec.package_published(code, version, name, part)), part


def test_a_publication_from_the_upstream_goes_to_the_use_case_with_its_site():
    handlers = mock.create_autospec(Catalog, instance=True)
    handlers.takes_from.return_value = True
    handlers.receive.return_value = ("XSECS", 4, "published")
    payload, part = published_payload(version=3)
    worker = worker_factory(CatalogWorker, catalog=handlers, sending_site="440000")
    worker.on_package_published(payload)
    handlers.takes_from.assert_called_once_with("440000")
    handlers.receive.assert_called_once_with("440000", UpstreamVersion(
        site="440000", code="XSECS", version=3, digest=definitions.digest(part), definition=part))


def test_a_publication_from_another_site_is_not_decoded_further_nor_applied():
    handlers = mock.create_autospec(Catalog, instance=True)
    handlers.takes_from.return_value = False
    worker = worker_factory(CatalogWorker, catalog=handlers, sending_site="440100")
    worker.on_package_published(dict(published_payload()[0], definition_json="{not even json"))
    handlers.takes_from.assert_called_once_with("440100")
    handlers.receive.assert_not_called()


def test_an_outage_is_raised_for_a_retry():
    handlers = mock.create_autospec(Catalog, instance=True)
    handlers.takes_from.return_value = True
    handlers.receive.side_effect = ConnectionError("store away")
    worker = worker_factory(CatalogWorker, catalog=handlers, sending_site="440000")
    with pytest.raises(ConnectionError):
        worker.on_package_published(published_payload()[0])


def test_the_sending_site_is_the_events_site_header(container):
    entrypoint = get_extension(container, ReliableEventHandler)
    for data, site in (({"site": "440000"}, "440000"), ({}, ""), ({"site": 440000}, "")):
        assert SendingSite().get_dependency(WorkerContext(container, CatalogWorker, entrypoint, data=data)) == site


@pytest.fixture
def city(make_catalog):
    """A city's catalog (广州, taking 广东's versions) in the container, its inbox in memory."""
    store = MemoryCatalogStore(RecordingBus("catalog"))
    return make_catalog(store=store, site="440100", upstream="440000")


def hook(container, city, site, event_id, payload):
    dependency(container, "catalog").instance = city
    inbox = dependency(container, "inbox")
    if inbox.collection is None:
        inbox.collection = MemoryInboxCollection()
    with entrypoint_hook(container, "on_package_published", context_data={"site": site, "event_id": event_id},
                         timeout=10) as handle:
        handle(payload)


@pytest.fixture
def province_payloads(make_catalog):
    bus = RecordingBus("catalog")
    make_catalog(bus=bus, site="440000").load()
    return {payload["code"]: payload for event_type, payload, _ in bus.published if event_type == "package_published"}


def test_through_the_container_a_publication_makes_the_citys_version_once(container, city, province_payloads):
    hook(container, city, "440000", "e-1", province_payloads["XSECS"])
    pkg = city.get_package("XSECS", "440100")
    assert (pkg["version"], pkg["levels"]) == (1, ["national", "440000", "440100"])
    hook(container, city, "440000", "e-1", dict(province_payloads["XSECS"], name="ignored: seen"))  # redelivered
    hook(container, city, "440000", "e-2", province_payloads["XSECS"])  # the same version under another id
    assert [v["version"] for v in city.versions("XSECS")] == [1]
    assert set(dependency(container, "inbox").collection.docs) == {
        "catalog.on_package_published:e-1", "catalog.on_package_published:e-2"}


def test_through_the_container_the_citys_own_and_other_sites_publications_are_ignored(container, city,
                                                                                      province_payloads):
    for i, site in enumerate(("440100", "440300", "")):
        hook(container, city, site, f"e-{i}", province_payloads["XSECS"])
    assert city.store.codes() == [] and city.store.upstreams == {}


def test_through_the_container_a_refusal_is_acknowledged(container, city, province_payloads):
    payload = province_payloads["XSECS"]
    spoiled = json.loads(payload["definition_json"])
    spoiled["base"]["name"] = "改过"  # no longer the content its digest names
    hook(container, city, "440000", "e-1", dict(payload, definition_json=json.dumps(spoiled, ensure_ascii=False)))
    hook(container, city, "440000", "e-2", dict(payload, definition_json="[]"))
    assert city.store.upstreams == {} and "catalog.on_package_published:e-2" in dependency(
        container, "inbox").collection.docs


def test_through_the_container_a_version_the_citys_overlay_does_not_fit_is_acknowledged(container, city,
                                                                                       province_payloads):
    handlers = mock.create_autospec(Catalog, instance=True)
    handlers.takes_from.return_value = True
    handlers.receive.side_effect = FailedPrecondition("the overlays of 440100 do not fit it")
    hook(container, handlers, "440000", "e-1", province_payloads["XSECS"])  # no exception: acknowledged
    handlers.receive.assert_called_once()
    assert "catalog.on_package_published:e-1" in dependency(container, "inbox").collection.docs
