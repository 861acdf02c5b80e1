"""The in-memory outbox every service's fake store runs (services/common/memory.py MemoryOutbox),
with the rules of services.common.mongo's: a write's entries published after it and removed, a
failed publish kept pending with its next try pushed back, an unroutable entry not holding the
next back, the sweep of what is due; and the bus of the tests that can be away
(services/common/testing.py FlakyBus)."""
import time

import pytest
from google.protobuf import empty_pb2

from services.common.bus import RecordingBus, Unroutable, outbox_entry
from services.common.memory import MemoryOutbox
from services.common.mongo import backoff
from services.common.testing import FlakyBus, make_due


class Store(MemoryOutbox):
    """A fake store of the simplest kind: {key: {"outbox": [...]}} in `docs`."""

    def __init__(self, bus=None):
        super().__init__(bus)
        self.docs = {}

    def save(self, key, entries):
        with self._lock:
            self.docs.setdefault(key, {"outbox": []})["outbox"].extend(entries)
        return self.publish(key, entries)


def entry(kind="thing_happened", at=None):
    made = outbox_entry(kind, empty_pb2.Empty(), "C1")
    if at is not None:
        made.update(at=at, next_at=at)
    return made


def ids(entries):
    return [e["id"] for e in entries]


def test_the_entries_of_a_write_are_published_after_it_and_removed():
    bus = RecordingBus("test")
    store = Store(bus)
    first, second = entry(), entry("other_thing")
    assert store.save("k", [first, second]) == 2
    assert [(t, h["event_id"]) for t, _, h in bus.published] == [("thing_happened", first["id"]),
                                                                  ("other_thing", second["id"])]
    assert store.pending("k") == [] and store.pending() == [] and store.pending("nothing") == []


def test_a_failed_publish_stays_pending_with_its_next_try_pushed_back_and_stops_the_round():
    bus = FlakyBus("test", away=True)
    store = Store(bus)
    first, second = entry(), entry()
    before = time.time()
    assert store.save("k", [first, second]) == 0  # the write stands; nothing raised
    assert bus.tries == 1 and bus.published == []  # the broker is away: the second is not tried
    kept, untried = store.pending("k")
    assert kept["id"] == first["id"] and kept["attempts"] == 1 and "away" in kept["last_error"]
    assert before + backoff(1) <= kept["next_at"] <= time.time() + backoff(1)
    assert untried == second and "last_error" not in untried


def test_an_unroutable_entry_stays_pending_and_does_not_hold_the_next_back():
    bus = FlakyBus("test", unroutable={"nobody_listens"})
    store = Store(bus)
    lost, sent = entry("nobody_listens"), entry()
    assert store.save("k", [lost, sent]) == 1
    assert bus.types() == ["thing_happened"]
    [kept] = store.pending("k")
    assert kept["id"] == lost["id"] and kept["attempts"] == 1
    assert kept["last_error"] == "no queue is bound for test.events/nobody_listens"


def test_each_failure_pushes_the_next_try_further_back_up_to_five_minutes():
    assert [backoff(n) for n in (1, 2, 3, 8, 9, 20)] == [2, 4, 8, 256, 300, 300]
    bus = FlakyBus("test", away=True)
    store = Store(bus)
    store.save("k", [entry()])
    for attempts in (2, 3):
        store.make_due("k")
        assert store.sweep() == 0
        [kept] = store.pending("k")
        assert kept["attempts"] == attempts and kept["next_at"] > time.time() + backoff(attempts) - 1


def test_the_sweep_publishes_only_what_is_due():
    bus = FlakyBus("test", away=True)
    store = Store(bus)
    left = entry()
    store.save("k", [left])
    bus.away = False
    assert store.sweep() == 0 and store.pending("k") != []  # its next try has not come
    make_due(store, "k")
    assert store.sweep() == 1 and bus.types() == ["thing_happened"] and store.pending("k") == []
    assert store.sweep() == 0  # once


def test_an_entry_without_a_next_try_is_due_its_grace_after_it_was_written(monkeypatch):
    monkeypatch.setenv("ONETHING_SWEEP_GRACE_SECONDS", "10")
    store = Store(None)
    old, new = entry(), entry()
    for e, at in ((old, time.time() - 60), (new, time.time())):
        e["at"] = at
        del e["next_at"]  # written before next_at existed
    store.save("k", [old, new])
    store.bus = bus = RecordingBus("test")
    assert store.sweep() == 1 and [h["event_id"] for _, _, h in bus.published] == [old["id"]]
    assert store.sweep(older_than=0) == 1 and store.pending("k") == []


def test_the_sweep_takes_at_most_limit_aggregates_and_nothing_without_a_bus():
    store = Store(None)
    for key in ("a", "b", "c"):
        store.save(key, [entry(at=0)])
    assert store.sweep() == 0 and len(store.pending()) == 3
    store.bus = RecordingBus("test")
    assert store.sweep(limit=2) == 2 and len(store.pending()) == 1
    assert store.sweep(limit=2) == 1 and store.pending() == []


def test_a_store_whose_time_moves_decides_what_is_due_by_its_own_clock():
    class Clocked(Store):
        now = 1000.0

        def outbox_now(self):
            return self.now

    bus = FlakyBus("test", away=True)
    store = Clocked(bus)
    store.save("k", [entry(at=1000.0)])
    assert store.pending("k")[0]["next_at"] == 1000.0 + backoff(1)
    bus.away = False
    assert store.sweep() == 0
    store.now += backoff(1)
    assert store.sweep() == 1


def test_a_bus_without_publish_entry_gets_the_raw_event_and_the_case():
    class RawBus:
        def __init__(self):
            self.sent = []

        def publish_raw(self, event_type, payload, headers):
            self.sent.append((event_type, payload, headers))

    bus = RawBus()
    store = Store(bus)
    store.save("k", [entry()])
    assert bus.sent == [("thing_happened", {}, {"case_no": "C1"})]


def test_a_flaky_bus_fails_the_next_n_publishes_then_records():
    bus = FlakyBus("test", failures=2)
    for _ in range(2):
        with pytest.raises(ConnectionError, match="the broker is away"):
            bus.publish_entry(entry())
    bus.publish_entry(entry())
    assert bus.tries == 3 and bus.types() == ["thing_happened"]
    assert bus.published[0][2]["producer"] == "test"


def test_a_flaky_bus_can_have_no_queue_for_an_event_type():
    bus = FlakyBus("test", unroutable={"nobody_listens"})
    with pytest.raises(Unroutable, match=r"no queue is bound for test\.events/nobody_listens"):
        bus.publish_entry(entry("nobody_listens"))
    bus.publish_entry(entry())
    assert bus.tries == 2 and bus.types() == ["thing_happened"]
