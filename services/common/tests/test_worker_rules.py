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


def test_a_reply_the_broker_cannot_take_does_not_kill_the_worker(caplog):
    from services.common.worker import ReliableRpc

    class Consumer:  # nameko's RpcConsumer sends the reply, then acknowledges the request
        def handle_result(self, message, result, exc_info):
            raise ConnectionError("the broker went away")

    class Container:
        service_name = "elicense"

    ext = ReliableRpc()
    ext.rpc_consumer, ext.container, ext.method_name = Consumer(), Container(), "get_license"
    with caplog.at_level("WARNING"):
        assert ext.handle_result("message", None, {"license_id": "x"}, None) == ({"license_id": "x"}, None)
    assert "reply to get_license not sent (ConnectionError" in caplog.text


def test_a_counter_tries_again_when_racing_first_upserts_collide_or_answer_nothing():
    from pymongo.errors import DuplicateKeyError

    from services.common.mongo import next_counter

    class Racing:
        def __init__(self, answers):
            self.answers = list(answers)

        def find_one_and_update(self, *args, **kwargs):
            answer = self.answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer

    assert next_counter(Racing([DuplicateKeyError("dup"), None, {"value": 3}]), "k") == 3
    with pytest.raises(RuntimeError):
        next_counter(Racing([None] * 5), "k")
