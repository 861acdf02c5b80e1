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


def test_a_bus_call_that_does_not_answer_times_out_as_an_outage():
    import eventlet

    from services.common.outages import is_outage

    def never_answers():
        eventlet.sleep(5)

    with pytest.raises(worker.CallTimedOut) as err:
        worker.with_timeout(never_answers, 0.05)()
    assert isinstance(err.value, Exception) and is_outage(err.value)
    assert worker.with_timeout(lambda x: x * 2, 1)(21) == 42


def test_a_bus_call_whose_far_side_hit_an_outage_is_an_outage_and_a_remote_bug_is_not():
    from nameko.exceptions import RemoteError

    from services.common.outages import is_outage
    assert is_outage(RemoteError("ServerSelectionTimeoutError", "no server"))
    assert is_outage(RemoteError("ConnectionError", "reset"))
    assert not is_outage(RemoteError("KeyError", "'holder'"))
    assert not is_outage(ValueError("bad"))


def test_a_reply_the_broker_cannot_take_does_not_kill_the_worker_and_the_request_is_not_acknowledged():
    from services.common.worker import ReliableRpc

    class Consumer:
        acked = []

        def handle_result(self, message, result, exc_info):
            raise ConnectionError("the broker went away")  # what nameko's Responder raises then

    class Container:
        service_name = "elicense"

    ext = ReliableRpc()
    ext.rpc_consumer, ext.container, ext.method_name = Consumer(), Container(), "get_license"
    assert ext.handle_result("message", None, {"license_id": "x"}, None) == ({"license_id": "x"}, None)
    assert Consumer.acked == []
