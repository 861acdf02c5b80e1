"""The catalog's worker: its one entrypoint, the `get_package` RPC that workers of other services
call (they cannot use gRPC inside eventlet), takes the look-up's arguments to the use case and
answers with the package as a plain dict, its status the proto enum's name as before; the
OutboxSweeper (no timer of its own) finds the handlers' store and publishes what a failed publish
left pending."""
from unittest import mock

import pytest
from nameko.containers import ServiceContainer
from nameko.testing.services import entrypoint_hook, worker_factory
from test_catalog_store_contract import definition, event

from services.catalog.definitions import VersionStatus
from services.catalog.fakes import MemoryCatalogStore
from services.catalog.handlers import Catalog
from services.catalog.worker import CatalogWorker
from services.common.errors import NotFound
from services.common.testing import FlakyBus, dependency, make_due
from services.common.worker import OutboxSweeper, ReliableRpc


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


def test_get_package_is_an_rpc_entrypoint():
    [entrypoint] = [e for e in ServiceContainer(CatalogWorker, {"AMQP_URI": "memory://"}).entrypoints]
    assert isinstance(entrypoint, ReliableRpc) and entrypoint.method_name == "get_package"


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
