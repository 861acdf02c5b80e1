"""Fixtures the elicense handler tests share: a RecordingBus, the one in-memory licence store
(services.elicense.fakes) publishing on it, in-memory blobs, an audit log in memory, and the
handlers built from them by the service's own wiring."""
import pytest

from services.common.audit import MemoryAuditLog
from services.common.bus import RecordingBus
from services.elicense.fakes import MemoryBlobs, MemoryLicenseStore
from services.elicense.wiring import build_elicense


@pytest.fixture
def bus():
    return RecordingBus("elicense")


@pytest.fixture
def store(bus):
    return MemoryLicenseStore(bus)


@pytest.fixture
def blobs():
    return MemoryBlobs()


@pytest.fixture
def elicense(store, blobs):
    return build_elicense(store=store, blobs=blobs, audit=MemoryAuditLog("elicense"))

