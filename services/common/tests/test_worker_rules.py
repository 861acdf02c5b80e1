"""The failure rules of every worker's event handlers."""
import pytest
from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR

from services.common import worker
from services.common.errors import FailedPrecondition


class Handlers:
    name = "test"
    calls = []

    @worker.event_handler("src", "happened")
    def on_happened(self, payload):
        self.calls.append(payload)
        if payload.get("fail") == "domain":
            raise FailedPrecondition("the task is already decided")
        if payload.get("fail") == "outage":
            raise ConnectionError("store away")


def test_handlers_requeue_on_error():
    (ext,) = getattr(Handlers.on_happened, ENTRYPOINT_EXTENSIONS_ATTR)
    assert ext.requeue_on_error is True and (ext.source_service, ext.event_type) == ("src", "happened")


def test_domain_error_is_acknowledged_and_an_outage_is_raised_for_redelivery():
    h = Handlers()
    assert h.on_happened({"fail": "domain", "case_no": "C1"}) is None
    with pytest.raises(ConnectionError):
        h.on_happened({"fail": "outage"})
    assert len(Handlers.calls) == 2
