"""The one outbox sweeper of every worker: it sweeps the store of the worker's component on a
timer, and a sweep that fails is logged every time (one line for an outage, the traceback for a
bug); the sweep that once failed on every run unseen is what this guards against."""
import logging
import types

import eventlet
import pymongo.errors
import pytest

from services.common.worker import OutboxSweeper


class Store:
    def __init__(self, results):
        self.results = list(results)
        self.calls = 0

    def sweep(self):
        self.calls += 1
        result = self.results.pop(0) if self.results else 0
        if isinstance(result, Exception):
            raise result
        return result


def _sweeper(store, interval=0.01, component="things"):
    sweeper = OutboxSweeper(component, interval=interval)
    handlers = types.SimpleNamespace(store=store)
    dependency = types.SimpleNamespace(attr_name="things", instance=handlers)
    threads = []

    def spawn(fn, identifier=None):
        threads.append(eventlet.spawn(fn))
        return threads[-1]

    sweeper.container = types.SimpleNamespace(service_name="probe", dependencies=[dependency],
                                              spawn_managed_thread=spawn)
    return sweeper


def _run(sweeper, until, limit=2.0):
    sweeper.start()
    waited = 0.0
    while not until() and waited < limit:
        eventlet.sleep(0.01)
        waited += 0.01
    sweeper.stop()


def test_it_sweeps_the_components_store_again_and_again():
    store = Store([2, 0, 1])
    sweeper = _sweeper(store)
    _run(sweeper, lambda: store.calls >= 4)
    assert store.calls >= 4 and sweeper.runs >= 4 and sweeper.failures == 0


def test_a_failing_sweep_is_logged_every_time_and_the_sweeper_keeps_going(caplog):
    store = Store([KeyError("id"), pymongo.errors.ServerSelectionTimeoutError("no server"), KeyError("id"), 1])
    sweeper = _sweeper(store)
    with caplog.at_level(logging.INFO, logger="probe"):
        _run(sweeper, lambda: store.calls >= 4)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(errors) == 2 and all(r.exc_info and r.exc_info[0] is KeyError for r in errors)
    assert len(warnings) == 1 and "ServerSelectionTimeoutError" in warnings[0].getMessage()
    assert warnings[0].exc_info is None  # an outage: one line, no traceback
    assert sweeper.failures == 3
    assert any("published 1 pending" in r.getMessage() for r in caplog.records)


def test_a_sweeper_naming_no_component_says_so():
    sweeper = _sweeper(Store([]), component="nothing")
    with pytest.raises(LookupError, match="probe has no component called 'nothing'"):
        sweeper.sweep_once()


def test_a_custom_store_look_up_is_used():
    other = Store([5])
    sweeper = _sweeper(Store([]))
    sweeper.store_of = lambda handlers: other
    assert sweeper.sweep_once() == 5
