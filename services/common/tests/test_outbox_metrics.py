"""The outbox gauges (services/common/outbox_metrics.py): what they say of the collections they are
given (unit: collections in memory), what they do when the store is away (no samples, no
exception, one log line per outage), how each service's `register(role)` serves them, and (integration)
what they read from elicense's real store, whose licences and signing keys both keep an outbox."""
import importlib
import logging

import pytest
from prometheus_client.registry import CollectorRegistry
from pymongo.errors import ServerSelectionTimeoutError

from services.common import outbox_metrics, write_behind
from services.common.outbox_metrics import BACKLOG_PIPELINE, OutboxGauges, StoreGauges, outbox_gauges, register_once
from services.common.registry import NAMES


class MemoryOutboxes:
    """A collection of aggregates in memory that answers the backlog aggregation as MongoDB does
    (no row when no entry is pending). `away`: the store does not answer."""

    def __init__(self, *outboxes, away=False):
        self.docs = [{"_id": i, "outbox": list(box)} for i, box in enumerate(outboxes)]
        self.away = away
        self.asked = 0

    def aggregate(self, pipeline):
        self.asked += 1
        if self.away:
            raise ServerSelectionTimeoutError("127.0.0.1:27017: [Errno 111] Connection refused")
        assert pipeline == list(BACKLOG_PIPELINE)
        ats = [e["at"] for d in self.docs for e in d["outbox"]]
        return iter([{"_id": None, "pending": len(ats), "oldest": min(ats)}] if ats else [])


def entry(at):
    return {"id": f"e{at}", "event_type": "case_submitted", "at": at, "attempts": 0, "next_at": at + 10}


def samples(collector):
    """{(metric name, labels as a tuple of pairs): value} of one collect()."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in collector.collect() for s in family.samples}


PENDING, AGE = "onething_outbox_pending", "onething_outbox_oldest_age_seconds"


def test_the_pending_events_of_every_collection_are_counted_and_the_oldest_gives_the_age():
    licences = MemoryOutboxes([entry(1000.0), entry(1030.0)], [], [entry(1010.0)])
    keys = MemoryOutboxes([entry(990.5)])
    gauges = OutboxGauges(clock=lambda: 1100.0).add("elicense", [lambda: licences, lambda: keys])
    assert samples(gauges) == {(PENDING, (("service", "elicense"),)): 4.0,
                               (AGE, (("service", "elicense"),)): pytest.approx(109.5)}


def test_an_empty_outbox_reads_zero_pending_and_zero_age():
    gauges = OutboxGauges(clock=lambda: 5000.0).add("delivery", [lambda: MemoryOutboxes([], [])])
    assert samples(gauges) == {(PENDING, (("service", "delivery"),)): 0.0, (AGE, (("service", "delivery"),)): 0.0}


def test_an_entry_stamped_by_a_clock_ahead_of_ours_is_no_negative_age():
    gauges = OutboxGauges(clock=lambda: 1999.0).add("intake", [lambda: MemoryOutboxes([entry(2000.0)])])
    assert samples(gauges)[(AGE, (("service", "intake"),))] == 0.0


def test_a_store_that_is_away_gives_no_sample_no_exception_and_one_line_per_outage(caplog):
    cases = MemoryOutboxes([entry(1000.0)], away=True)
    gauges = OutboxGauges(clock=lambda: 1060.0).add("intake", [lambda: cases])
    with caplog.at_level(logging.DEBUG, logger="services.common.outbox_metrics"):
        assert samples(gauges) == {}
        assert samples(gauges) == {}
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "onething_outbox_* of intake" in warnings[0].getMessage()
    assert "ServerSelectionTimeoutError" in warnings[0].getMessage() and warnings[0].exc_info is None
    assert cases.asked == 2  # each scrape asks again

    caplog.clear()
    cases.away = False
    with caplog.at_level(logging.INFO, logger="services.common.outbox_metrics"):
        assert samples(gauges)[(PENDING, (("service", "intake"),))] == 1.0
    assert [r.getMessage() for r in caplog.records] == ["onething_outbox_* of intake: the store answers again"]


def test_a_store_not_connected_yet_gives_no_sample():
    def not_connected():
        raise ConnectionError("You have not defined a default connection")  # mongoengine's, before connect()

    assert samples(OutboxGauges().add("catalog", [not_connected])) == {}


def test_an_answer_it_does_not_understand_gives_no_sample_either():
    class Odd:
        def aggregate(self, pipeline):
            return iter([{"_id": None, "pending": "many", "oldest": "yesterday"}])

    assert samples(OutboxGauges().add("catalog", [lambda: Odd()])) == {}


def test_a_real_client_whose_server_is_gone_gives_no_sample_within_the_scrape_budget():
    import socket

    import pymongo
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = pymongo.MongoClient(f"mongodb://127.0.0.1:{port}/", directConnection=True,
                                 serverSelectionTimeoutMS=600_000)  # the scrape budget ends it, not this
    try:
        gauges = OutboxGauges(timeout_seconds=0.3).add("intake", [lambda: client["t_domainmetrics"]["cases"]])
        assert samples(gauges) == {}
    finally:
        client.close()


@pytest.mark.parametrize("service, collections, message", [
    ("", [object], "name the service"),
    ("intake", [], "name the collections of intake's aggregates"),
])
def test_an_outbox_named_wrong_is_refused_with_what_is_missing(service, collections, message):
    with pytest.raises(ValueError, match=message):
        OutboxGauges().add(service, collections)


def test_a_reading_with_no_time_is_refused():
    with pytest.raises(ValueError, match="needs some time"):
        OutboxGauges(timeout_seconds=0)


def test_several_services_are_one_metric_with_a_sample_each_and_fail_on_their_own():
    registry = CollectorRegistry()
    cases, sessions = MemoryOutboxes([entry(10.0)]), MemoryOutboxes([entry(1.0), entry(2.0)], away=True)
    gauges = outbox_gauges(registry)
    assert outbox_gauges(registry) is gauges
    gauges.clock = lambda: 100.0
    gauges.add("intake", [lambda: cases]).add("joint_review", [lambda: sessions])
    assert samples(gauges) == {(PENDING, (("service", "intake"),)): 1.0, (AGE, (("service", "intake"),)): 90.0}
    sessions.away = False
    assert registry.get_sample_value(PENDING, {"service": "joint_review"}) == 2.0
    assert registry.get_sample_value(AGE, {"service": "joint_review"}) == 99.0
    assert [m.name for m in registry.collect()].count(PENDING) == 1


def test_a_role_no_process_plays_is_refused():
    with pytest.raises(ValueError, match="use one of api, worker"):
        outbox_metrics.check_role("desk")


def test_registering_asks_the_store_nothing_and_twice_registers_once():
    cases = MemoryOutboxes([entry(1.0)])
    registry = CollectorRegistry()
    first = register_once("intake", registry, lambda: [OutboxGauges().add("intake", [lambda: cases])])
    assert cases.asked == 0  # the names come from describe(), not from a query
    assert register_once("intake", registry, lambda: pytest.fail("built again")) == first
    assert registry.get_sample_value(PENDING, {"service": "intake"}) == 1.0


def test_registering_is_all_or_nothing():
    registry = CollectorRegistry()
    outbox_gauges(registry).add("intake", [MemoryOutboxes])
    with pytest.raises(ValueError, match="Duplicated"):
        register_once("other", registry, lambda: [StoreGaugesOfNothing(), OutboxGauges()])
    assert "onething_nothing" not in {m.name for m in registry.collect()}  # the first of the two taken back


class StoreGaugesOfNothing(StoreGauges):
    def families(self):
        from prometheus_client.core import GaugeMetricFamily
        return [GaugeMetricFamily("onething_nothing", "nothing")]

    def measure(self):
        return self.families()


# --- every service's worker serves its outbox ----------------------------------------------------

OUTBOX_COLLECTIONS = {"catalog": ["package_versions"], "intake": ["cases"], "joint_review": ["sessions"],
                      "elicense": ["licenses", "signing_keys"], "delivery": ["deliveries"],
                      "evaluation": ["evaluations"]}


@pytest.mark.parametrize("service", NAMES)
def test_each_services_worker_serves_its_outbox_and_its_api_does_not(service):
    metrics = importlib.import_module(f"services.{service}.metrics")
    registry = CollectorRegistry()
    assert metrics.register("api", registry) == []
    [outbox] = [c for c in metrics.register("worker", registry) if isinstance(c, OutboxGauges)]
    assert outbox is outbox_gauges(registry)
    collections = [getter.__self__._meta["collection"] for getter in outbox.collections(service)]
    assert collections == OUTBOX_COLLECTIONS[service]
    assert metrics.register("worker", registry) == metrics.register("worker", registry)  # again: no duplicated names
    with pytest.raises(ValueError, match="role"):
        metrics.register("desk", registry)


# --- against the real store -------------------------------------------------------------------------


@pytest.mark.integration
def test_the_gauges_read_the_pending_events_of_elicenses_licences_and_keys(own_database):
    from services.common.testing import FlakyBus
    from services.elicense import domain
    from services.elicense.store import LicenseDoc, LicenseStore, SigningKeyDoc

    own_database("elicense")
    bus = FlakyBus("elicense", away=True)  # the broker away: what is saved stays pending
    store = LicenseStore(bus)
    gauges = OutboxGauges(clock=lambda: now).add("elicense", [LicenseDoc._get_collection,
                                                              SigningKeyDoc._get_collection])
    now = 0.0
    assert samples(gauges) == {(PENDING, (("service", "elicense"),)): 0.0, (AGE, (("service", "elicense"),)): 0.0}

    for n in (1, 2):
        fields = {"license_id": f"1.2.156.3005.2.CSYXZM.440100WSJK.metrics{n}.001.X", "case_no": f"C{n}",
                  "item_code": "110000000001", "holder_code": f"H{n}", "type_code": "CSYXZM",
                  "status": domain.LicenseStatus.VALID, "issued_at": "2026-11-27T10:00:00+00:00"}
        assert store.insert(fields, [domain.LicenseIssued(
            license_id=fields["license_id"], case_no=fields["case_no"], item_code=fields["item_code"],
            type_code="CSYXZM", holder_code=fields["holder_code"], document_key="k")])
    key = domain.SigningKey("440100-metrics-1", "440100", "priv", "pub", created_at=1000.0)
    store.add_key(key, [domain.published(key, "440100")])
    pending = [e for d in (LicenseDoc, SigningKeyDoc) for doc in d._get_collection().find()
               for e in doc.get("outbox", [])]
    assert len(pending) == 3
    now = max(e["at"] for e in pending) + 100.0
    assert samples(gauges) == {(PENDING, (("service", "elicense"),)): 3.0,
                               (AGE, (("service", "elicense"),)): pytest.approx(now - min(e["at"] for e in pending))}

    bus.away = False  # the broker back: once swept, nothing waits
    for d in (LicenseDoc, SigningKeyDoc):  # every entry due now (services.common.testing.make_due)
        for doc in d._get_collection().find({}, {"outbox": 1}):
            d._get_collection().update_one({"_id": doc["_id"]},
                                           {"$set": {"outbox": [dict(e, next_at=0) for e in doc["outbox"]]}})
    assert store.sweep() == 3
    write_behind.flush()  # the published entries' removal, which waits a moment to go in one batch
    assert samples(gauges)[(PENDING, (("service", "elicense"),))] == 0.0


@pytest.mark.integration
def test_the_backlog_starts_on_the_outbox_index(own_database):
    from services.intake.store import CaseDoc
    own_database("intake")
    collection = CaseDoc._get_collection()  # the store's indexes made
    collection.insert_many([{"_id": f"c{i}", "outbox": [entry(float(i))] if i % 5 == 0 else []} for i in range(50)])
    plan = collection.database.command("explain", {"aggregate": collection.name, "pipeline": list(BACKLOG_PIPELINE),
                                                   "cursor": {}})
    assert "IXSCAN" in str(plan) and "COLLSCAN" not in str(plan)
    assert outbox_metrics.backlog(collection) == (10, 0.0)
