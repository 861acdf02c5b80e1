"""Catalogs for the catalog's tests: built by the wiring (services.catalog.wiring.build_catalog)
with the in-memory store of services.catalog.fakes, a recording bus and a memory audit log."""
import pathlib
import shutil

import pytest

from services.catalog.fakes import MemoryCatalogStore
from services.catalog.wiring import build_catalog
from services.common.audit import MemoryAuditLog
from services.common.bus import RecordingBus

DATA = pathlib.Path(__file__).resolve().parents[1] / "data"


def every_region(region_code):
    return True


# the tests take these as fixtures: a test module importing `conftest` could get another folder's
def fake_catalog(data_dir=DATA, store=None, bus=None, site=None, upstream=None):
    """A catalog on the in-memory store (with `bus`, a RecordingBus by default) serving every region;
    the catalog of site `site` taking the versions `upstream` publishes (defaults: the settings', one
    site 440100 with no upstream)."""
    store = store if store is not None else MemoryCatalogStore(bus if bus is not None else RecordingBus("catalog"))
    return build_catalog(store=store, audit=MemoryAuditLog("catalog"), data_dir=str(data_dir), serves=every_region,
                         site=site, upstream=upstream)


@pytest.fixture(scope="session")
def make_catalog():
    return fake_catalog


@pytest.fixture
def data(tmp_path):
    """A copy of the seed data folder, for a test to edit."""
    target = tmp_path / "data"
    shutil.copytree(DATA, target)
    return target


@pytest.fixture
def bus():
    return RecordingBus("catalog")


@pytest.fixture
def catalog(data, bus):
    """A catalog loaded from the copy of the seed data, on the in-memory store."""
    c = fake_catalog(data, bus=bus)
    c.load()
    return c
