"""The write-behind (services/common/write_behind.py): the inbox records and outbox clean-ups it
holds are written in one bulk command per collection, duplicates are no error, a failed batch is kept
and written once the store answers, its bound drops the oldest, and `holds` sees what waits."""
import threading
import time

import pytest
from pymongo.errors import AutoReconnect, BulkWriteError

from services.common import write_behind
from services.common.write_behind import WriteBehind


class Database:
    name = "onething_test"


class Collection:
    """What the write-behind calls on a pymongo collection, in memory: bulk_write of InsertOne and
    UpdateOne($pull outbox ids), counting the commands; `away` makes every command fail."""

    def __init__(self, name="inbox"):
        self.name, self.database = name, Database()
        self.docs = {}
        self.commands = 0
        self.away = False

    def bulk_write(self, requests, ordered=True):
        if self.away:
            raise AutoReconnect("the store is away")
        self.commands += 1
        errors = []
        for i, request in enumerate(requests):
            if type(request).__name__ == "InsertOne":
                doc = request._doc
                if doc["_id"] in self.docs:
                    errors.append({"index": i, "code": 11000, "errmsg": "duplicate key"})
                else:
                    self.docs[doc["_id"]] = dict(doc)
            else:
                ids = set(request._doc["$pull"]["outbox"]["id"]["$in"])
                doc = self.docs[request._filter["_id"]]
                doc["outbox"] = [e for e in doc["outbox"] if e["id"] not in ids]
        if errors:
            raise BulkWriteError({"writeErrors": errors})


def test_inserts_and_clean_ups_wait_and_go_in_one_command_per_collection():
    wb = WriteBehind(delay_seconds=60)  # the flusher never gets there first
    inbox, cases = Collection("inbox"), Collection("cases")
    cases.docs = {"C1": {"_id": "C1", "outbox": [{"id": "a"}, {"id": "b"}]},
                  "C2": {"_id": "C2", "outbox": [{"id": "c"}]}}
    for i in range(5):
        wb.insert(inbox, {"_id": f"h:{i}"})
    wb.pull_outbox(cases, "C1", ["a"])
    wb.pull_outbox(cases, "C2", ["c"])
    wb.pull_outbox(cases, "C1", ["b"])
    assert inbox.docs == {} and wb.pending() == 8
    assert wb.holds(inbox, "h:3") and not wb.holds(inbox, "h:9") and not wb.holds(cases, "h:3")
    assert wb.flush() is True
    assert sorted(inbox.docs) == [f"h:{i}" for i in range(5)] and inbox.commands == 1
    assert cases.docs["C1"]["outbox"] == [] and cases.docs["C2"]["outbox"] == [] and cases.commands == 1
    assert wb.pending() == 0 and not wb.holds(inbox, "h:3")


def test_a_record_written_before_is_no_error():
    wb = WriteBehind(delay_seconds=60)
    inbox = Collection()
    inbox.docs["h:1"] = {"_id": "h:1", "first": True}
    wb.insert(inbox, {"_id": "h:1"})
    wb.insert(inbox, {"_id": "h:2"})
    assert wb.flush() is True
    assert inbox.docs["h:1"] == {"_id": "h:1", "first": True} and "h:2" in inbox.docs


def test_another_write_error_keeps_the_batch():
    wb = WriteBehind(delay_seconds=60)

    class Refusing(Collection):
        def bulk_write(self, requests, ordered=True):
            raise BulkWriteError({"writeErrors": [{"index": 0, "code": 121, "errmsg": "validation failed"}]})

    refusing = Refusing()
    wb.insert(refusing, {"_id": "h:1"})
    assert wb.flush() is False and wb.pending() == 1 and wb.holds(refusing, "h:1")


def test_a_store_away_keeps_the_writes_until_it_answers(caplog):
    wb = WriteBehind(delay_seconds=60)
    inbox = Collection()
    inbox.away = True
    wb.insert(inbox, {"_id": "h:1"})
    wb.insert(inbox, {"_id": "h:2"})
    with caplog.at_level("WARNING", logger="services.common.write_behind"):
        assert wb.flush() is False
        assert wb.flush() is False  # still away: logged once
    assert wb.pending() == 2 and wb.holds(inbox, "h:1") and inbox.docs == {}
    assert sum("failed" in r.getMessage() for r in caplog.records) == 1
    inbox.away = False
    with caplog.at_level("WARNING", logger="services.common.write_behind"):
        assert wb.flush() is True
    assert sorted(inbox.docs) == ["h:1", "h:2"] and wb.pending() == 0
    assert any("works again" in r.getMessage() for r in caplog.records)


def test_past_its_bound_the_oldest_writes_are_dropped_with_a_warning(caplog):
    wb = WriteBehind(delay_seconds=60, limit=3)
    inbox = Collection()
    inbox.away = True
    for i in range(5):
        wb.insert(inbox, {"_id": f"h:{i}"})
    with caplog.at_level("WARNING", logger="services.common.write_behind"):
        wb.flush()
    assert wb.pending() == 3 and wb.dropped == 2
    assert not wb.holds(inbox, "h:0") and wb.holds(inbox, "h:4")
    assert any("dropped the oldest" in r.getMessage() for r in caplog.records)


def test_the_flusher_writes_within_its_delay_without_being_asked():
    wb = WriteBehind(delay_seconds=0.02)
    inbox = Collection()
    wb.insert(inbox, {"_id": "h:1"})
    deadline = time.monotonic() + 5
    while "h:1" not in inbox.docs and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "h:1" in inbox.docs and wb.pending() == 0


def test_many_threads_writing_lose_nothing():
    wb = WriteBehind(delay_seconds=0.01)
    inbox = Collection()

    def write(t):
        for i in range(200):
            wb.insert(inbox, {"_id": f"{t}:{i}"})

    threads = [threading.Thread(target=write, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wb.flush()
    assert len(inbox.docs) == 1600
    assert inbox.commands < 1600  # batched, not one command each


def test_with_no_delay_each_write_goes_at_once():
    wb = WriteBehind(delay_seconds=0)
    inbox, cases = Collection(), Collection("cases")
    cases.docs = {"C1": {"_id": "C1", "outbox": [{"id": "a"}]}}
    wb.insert(inbox, {"_id": "h:1"})
    wb.pull_outbox(cases, "C1", ["a"])
    assert "h:1" in inbox.docs and cases.docs["C1"]["outbox"] == [] and wb.pending() == 0


def test_the_process_has_one_with_the_configured_delay(monkeypatch):
    monkeypatch.setattr(write_behind, "_default", None)
    monkeypatch.setenv("ONETHING_WRITE_BEHIND_MS", "25")
    one = write_behind.default()
    assert one is write_behind.default() and one.delay == pytest.approx(0.025)
