"""Fixtures the elicense handler tests share: a RecordingBus, the handlers over the module's own
in-memory `store` (each test module defines it), and a flush that publishes the entries a handler
gives it and empties that licence's outbox, as services.common.mongo.flush_outbox does."""
import pytest

from services.common.bus import RecordingBus
from services.elicense import handlers
from services.elicense.store import LicenseDoc


@pytest.fixture
def bus():
    return RecordingBus("elicense")


@pytest.fixture
def blobs():
    """No object storage unless a module needs one."""
    return None


@pytest.fixture
def elicense(store, bus, blobs, monkeypatch):
    def fake_flush(doc_cls, license_id, to_bus, entries=None):
        assert doc_cls is LicenseDoc
        for entry in entries:
            to_bus.publish_raw(entry["event_type"], entry["payload"], {"case_no": entry.get("case_no", "")})
        store.docs[license_id]["outbox"] = []
        return len(entries)

    monkeypatch.setattr(handlers, "flush_outbox", fake_flush)
    return handlers.Elicense(store, blobs, bus)
