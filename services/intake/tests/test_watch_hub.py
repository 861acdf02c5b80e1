"""The watch hub without servers: one look per interval whatever the number of watches, fanned out to
each; a watch ends at a final status, when its case is gone, at its time limit and when its client
has gone; a store that cannot be read ends the watches with the error. And watch_step, the rule the
hub shares with Intake.watch."""
import asyncio
import dataclasses
import datetime
import time

import pytest

from services.intake import domain
from services.intake.handlers import watch_step
from services.intake.watch_hub import WatchHub, readers

SUB, REV, APR, REJ = domain.SUBMITTED, domain.IN_REVIEW, domain.APPROVED, domain.REJECTED


def a_case(case_no, *statuses, note_only=()):
    history = [domain.HistoryEntry(status=s, at=f"2026-11-27T10:00:0{i}+08:00", note=str(s), note_only=i in note_only)
               for i, s in enumerate(statuses)]
    return domain.Case(case_no=case_no, package_code="XSECS", package_version=1, region_code="440100",
                       applicant={"id_number": "A"}, status=statuses[-1], history=history, version=len(statuses),
                       submitted_at=datetime.datetime(2026, 11, 27, tzinfo=datetime.UTC))


class Cases:
    """What the database holds, and the queries made of it."""

    def __init__(self, *cases):
        self.cases = {c.case_no: c for c in cases}
        self.stamp_queries, self.case_queries = [], []
        self.fail = None

    def stamps(self, case_nos):
        self.stamp_queries.append(list(case_nos))
        if self.fail:
            raise self.fail
        return {no: self.cases[no].version for no in case_nos if no in self.cases}

    def read(self, case_nos):
        self.case_queries.append(list(case_nos))
        return {no: self.cases[no] for no in case_nos if no in self.cases}

    def move(self, case_no, status, note_only=False):
        case = self.cases[case_no]
        self.cases[case_no] = dataclasses.replace(case.changed(status, "moved", "2026-11-27T11:00:00+08:00",
                                                               note_only=note_only), version=case.version + 1)


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 20))


async def collect(hub, case, deadline=None, is_active=lambda: True):
    return [v.status for v in [v async for v in hub.watch(case, deadline or time.monotonic() + 10, is_active)]]


def test_one_look_per_interval_fans_out_to_every_watch_whatever_their_number():
    db = Cases(*(a_case(f"C{i}", SUB) for i in range(50)))
    hub = WatchHub(db.stamps, db.read, interval=0.01)

    async def scenario():
        watches = [asyncio.create_task(collect(hub, db.cases[f"C{i % 50}"])) for i in range(500)]
        while len(hub) < 500:
            await asyncio.sleep(0.005)
        looks = hub.looks
        await asyncio.sleep(0.1)  # nothing changes: stamps only, one query per look
        # a look is counted as it starts; its query may still be on the executor (one at most)
        assert db.case_queries == [] and hub.looks - 1 <= len(db.stamp_queries) <= hub.looks and hub.looks > looks
        assert all(len(q) == 50 for q in db.stamp_queries)  # every watched case, each once
        for i in range(50):
            db.move(f"C{i}", REV)
        for i in range(50):
            db.move(f"C{i}", REJ if i % 2 else APR)
        await asyncio.sleep(0.1)
        for i in range(1, 50, 2):
            assert len(db.cases[f"C{i}"].history) == 3
        for i in range(0, 50, 2):
            db.move(f"C{i}", REJ)
        return await asyncio.gather(*watches)

    got = run(scenario())
    assert len(db.stamp_queries) == hub.looks  # one query of stamps per look, for 500 watches
    assert all(len(q) <= 50 for q in db.case_queries) and len(db.case_queries) <= 3
    for i, statuses in enumerate(got):
        assert statuses == ([REV, REJ] if (i % 50) % 2 else [REV, APR, REJ])
    assert len(hub) == 0


def test_changes_between_two_looks_are_all_sent_in_order_notes_skipped_and_it_ends_at_a_final_status():
    db = Cases(a_case("C1", SUB))
    hub = WatchHub(db.stamps, db.read, interval=0.05)

    async def scenario():
        watch = asyncio.create_task(collect(hub, db.cases["C1"]))
        await asyncio.sleep(0.02)
        db.move("C1", REV)
        db.move("C1", REV, note_only=True)
        db.move("C1", REJ)
        db.move("C1", APR)  # after the final status: never sent
        return await watch

    assert run(scenario()) == [REV, REJ]


def test_a_case_already_final_sends_nothing_more_and_a_case_gone_ends_the_watch():
    db = Cases(a_case("F", SUB, REJ), a_case("G", SUB))
    hub = WatchHub(db.stamps, db.read, interval=0.01)

    async def scenario():
        assert await collect(hub, db.cases["F"]) == []
        watch = asyncio.create_task(collect(hub, db.cases["G"]))
        await asyncio.sleep(0.03)
        del db.cases["G"]
        return await watch

    assert run(scenario()) == []
    assert db.stamp_queries and all(q == ["G"] for q in db.stamp_queries)


def test_a_watch_whose_client_went_away_is_dropped_and_the_poller_stops_with_the_last_watch():
    db = Cases(a_case("C1", SUB), a_case("C2", SUB))
    hub = WatchHub(db.stamps, db.read, interval=0.01)
    active = {"C1": True}

    async def scenario():
        gone = asyncio.create_task(collect(hub, db.cases["C1"], is_active=lambda: active["C1"]))
        cancelled = asyncio.create_task(collect(hub, db.cases["C2"]))
        await asyncio.sleep(0.03)
        assert len(hub) == 2
        active["C1"] = False  # is_active() turns False: ended at the next look
        assert await gone == []
        cancelled.cancel()  # the stream closed: it leaves at once
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert len(hub) == 0
        await asyncio.sleep(0.05)
        looks = len(db.stamp_queries)
        await asyncio.sleep(0.05)
        assert len(db.stamp_queries) == looks  # no watch, no look
        assert hub._task.done()

    run(scenario())


def test_a_watch_ends_at_its_time_limit():
    db = Cases(a_case("C1", SUB))
    hub = WatchHub(db.stamps, db.read, interval=0.01)
    t0 = time.monotonic()
    assert run(collect(hub, db.cases["C1"], deadline=time.monotonic() + 0.1)) == []
    assert 0.1 <= time.monotonic() - t0 < 1


def test_a_store_that_cannot_be_read_ends_the_watches_with_its_error():
    db = Cases(a_case("C1", SUB))
    hub = WatchHub(db.stamps, db.read, interval=0.01)
    db.fail = ConnectionError("the database is away")
    with pytest.raises(ConnectionError):
        run(collect(hub, db.cases["C1"]))


def test_watch_step_is_the_rule_of_intake_watch():
    case = a_case("C1", SUB, REV, REV, REJ, APR, note_only=(2,))
    views, sent, done = watch_step(case, 1)
    assert [v.status for v in views] == [REV, REJ] and sent == 5 and done
    assert [len(v.history) for v in views] == [2, 4]  # each as of its change
    assert watch_step(a_case("C1", SUB, REV), 1)[1:] == (2, False)
    assert watch_step(None, 3) == ([], 3, True)


def test_the_fake_store_is_read_case_by_case():
    from services.intake.fakes import FakeIntakeStore
    store = FakeIntakeStore()
    store.insert_case(a_case("C1", SUB))
    stamps, cases = readers(store)
    assert stamps(["C1", "C9"]) == {"C1": 1} and list(cases(["C1"])) == ["C1"]


def test_a_watch_that_comes_while_a_look_is_under_way_waits_for_the_next_one():
    db = Cases(a_case("C1", SUB), a_case("C2", SUB))
    slow = db.stamps

    def stamps(case_nos):
        time.sleep(0.05)  # the query under way (on the executor) when C2's watch comes
        return slow(case_nos)
    hub = WatchHub(stamps, db.read, interval=0.01)

    async def scenario():
        first = asyncio.create_task(collect(hub, db.cases["C1"]))
        await asyncio.sleep(0.03)
        second = asyncio.create_task(collect(hub, db.cases["C2"]))
        await asyncio.sleep(0.2)
        assert len(hub) == 2 and not second.done()  # not taken for a case gone
        db.move("C1", REJ)
        db.move("C2", REJ)
        return await first, await second

    assert run(scenario()) == ([REJ], [REJ])
    assert sorted(no for query in db.case_queries for no in query) == ["C1", "C2"]
