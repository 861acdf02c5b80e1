"""好差评 statistics roll up on the real broker and store (issue 11): the evaluation worker, run by
`nameko run` as the province (ONETHING_REGION=440000), takes Shenzhen's evaluation events as the
link delivers them (published on the province's evaluation.events with `site` 440300) and its
statistics then show Shenzhen's figures as Shenzhen shows them; the same events again change
nothing; run as a city, the worker counts none of them.

Each worker runs on a vhost and databases of its own, so nothing else of the test run competes for
its queues. The events are the ones a city's own use cases publish (in memory here)."""
import contextlib
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
import uuid

import pytest

from infra import procs
from services.common.audit import MemoryAuditLog
from services.common.bus import Bus, RecordingBus
from services.common.config import ROOT
from services.evaluation.domain import Grade, Rateable, StatisticsGroup
from services.evaluation.fakes import FakeEvaluationStore
from services.evaluation.wiring import build_evaluation

pytestmark = pytest.mark.integration
APPLICANT = "11010519491231002X"
PROVINCE, GUANGZHOU, SHENZHEN = "440000", "440100", "440300"
HANDLERS = {"evaluation_received": "on_city_rated", "bad_review_opened": "on_city_bad_review_opened",
            "bad_review_closed": "on_city_bad_review_closed"}
WAIT_SECONDS = 60


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


def city_events(region, prefix):
    """(the city's evaluation, what its use cases published): a good rating, a 差评 put right on time
    and one still open, as (event type, payload, headers) with the city's `site` header."""
    clock = Clock(dt.datetime(2024, 3, 4, 2, 0, tzinfo=dt.UTC))
    city = build_evaluation(store=FakeEvaluationStore(RecordingBus("evaluation")), audit=MemoryAuditLog("evaluation"),
                            bad_review_days=5, site=region, clock=clock)
    for case_no, grade, channel in ((f"{prefix}1", Grade.SATISFIED, "online"),
                                    (f"{prefix}2", Grade.VERY_DISSATISFIED, "online"),
                                    (f"{prefix}3", Grade.DISSATISFIED, "window")):
        city.case_delivered(Rateable(case_no, APPLICANT, region, "KBQY", "gaj"))
        city.submit(case_no, APPLICANT, channel, grade, {}, "等了三次" if grade.bad else "", "")
    clock.now = dt.datetime(2024, 3, 5, 2, 0, tzinfo=dt.UTC)
    city.record_callback(f"{prefix}2", "已回访", "staff-1")
    city.close(f"{prefix}2", "已改进", "chief-1")
    return city, [(kind, payload, dict(headers, site=region)) for kind, payload, headers in city.store.bus.published]


class Site:
    """An evaluation worker process run as the site of one region, on its own vhost and databases."""

    def __init__(self, region, test_env):
        from infra import local
        self.region, self.local = region, local
        tag = f"{region}_{uuid.uuid4().hex[:6]}"
        base = test_env["ONETHING_AMQP_URI"]
        self.vhost = f"{local.vhost_of(base)}_{tag}"
        self.amqp_uri = f"{base.rsplit('/', 1)[0]}/{self.vhost}"
        self.db_prefix = f"{test_env['ONETHING_DB_PREFIX']}{tag}_"  # dropped with the run's databases
        self.log = tempfile.NamedTemporaryFile(prefix=f"evaluation-worker-{region}-", suffix=".log", delete=False)
        self.process = None

    def start(self):
        self.local.ensure_vhost(self.vhost)
        env = dict(os.environ, ONETHING_AMQP_URI=self.amqp_uri, ONETHING_DB_PREFIX=self.db_prefix,
                   ONETHING_REGION=self.region,
                   ONETHING_WORKER_POOL="1")  # one message at a time: each queue is taken in order
        nameko = os.path.join(os.path.dirname(sys.executable), "nameko")
        self.process = subprocess.Popen(
            [nameko, "run", "--config", os.path.join(ROOT, "infra", "nameko.yaml"),
             "services.evaluation.worker:EvaluationWorker"],
            env=env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        self._wait_consuming()
        return self

    def _logged(self):
        with open(self.log.name, encoding="utf-8", errors="replace") as fh:
            return fh.read()[-4000:]

    def _wait_consuming(self):
        from kombu import Connection
        pending = {f"evt-evaluation-{event}--evaluation.{method}" for event, method in HANDLERS.items()}
        deadline = time.time() + WAIT_SECONDS
        with Connection(self.amqp_uri) as conn:
            while pending and time.time() < deadline:
                assert self.process.poll() is None, f"the worker stopped:\n{self._logged()}"
                for queue in list(pending):
                    channel = conn.channel()
                    try:
                        if channel.queue_declare(queue=queue, passive=True)[2]:
                            pending.discard(queue)
                    except Exception:  # not declared yet
                        pass
                    finally:
                        with contextlib.suppress(Exception):
                            channel.close()
                if pending:
                    time.sleep(0.2)
        assert not pending, f"no consumer on {sorted(pending)}:\n{self._logged()}"

    def stop(self):
        procs.end(self.process)
        self.log.close()
        os.unlink(self.log.name)
        self.local.delete_vhost(self.vhost)

    def publish(self, events):
        """Deliver events as the link does: onto this site's evaluation.events, headers as they were."""
        bus = Bus("evaluation", amqp_uri=self.amqp_uri)
        for kind, payload, headers in events:
            bus.publish_raw(kind, payload, headers)

    def processed(self, events):
        """True once the worker has handled every one of `events` (its inbox holds their ids)."""
        import pymongo

        from services.common.config import settings
        keys = [f"evaluation.{HANDLERS[kind]}:{headers['event_id']}" for kind, _, headers in events]
        with pymongo.MongoClient(settings().mongo_uri, directConnection=True) as client:
            inbox = client[f"{self.db_prefix}evaluation"]["inbox"]
            return inbox.count_documents({"_id": {"$in": keys}}) == len(keys)

    def wait_processed(self, events):
        deadline = time.time() + WAIT_SECONDS
        while not self.processed(events):
            assert self.process.poll() is None, f"the worker stopped:\n{self._logged()}"
            assert time.time() < deadline, f"the worker did not handle the events:\n{self._logged()}"
            time.sleep(0.1)

    @contextlib.contextmanager
    def evaluation(self):
        """This site's evaluation use cases in the test process, over the worker's database."""
        from services.common import mongo
        from services.evaluation.store import EvaluationStore
        mongo.disconnect("evaluation")
        mongo.connect("evaluation", db_name=f"{self.db_prefix}evaluation")
        try:
            yield build_evaluation(store=EvaluationStore(RecordingBus("evaluation")),
                                   audit=MemoryAuditLog("evaluation"), bad_review_days=5, site=self.region)
        finally:
            mongo.disconnect("evaluation")


@pytest.fixture
def run_site(test_env):
    started = []

    def run(region):
        site = Site(region, test_env)
        started.append(site)
        return site.start()

    yield run
    for site in started:
        site.stop()


def statistics(evaluation, group=StatisticsGroup.REGION, **filters):
    return evaluation.statistics(group, **filters)


def test_the_province_worker_rolls_up_a_citys_figures_once(run_site):
    prefix = f"S{uuid.uuid4().hex[:8]}"
    shenzhen, events = city_events(SHENZHEN, prefix)
    province = run_site(PROVINCE)
    province.publish(events)
    province.wait_processed(events)
    with province.evaluation() as evaluation:
        for group in StatisticsGroup:
            assert statistics(evaluation, group) == shenzhen.statistics(group), group
        assert statistics(evaluation, region_code=SHENZHEN) == [
            {"key": SHENZHEN, "ratings": 3, "satisfied": 1, "satisfaction_rate": 0.3333, "bad_reviews": 2,
             "rectifications_closed": 1, "closed_on_time": 1, "rectifications_open": 1}]
        assert statistics(evaluation, region_code=GUANGZHOU) == []
        before = statistics(evaluation, StatisticsGroup.DEPARTMENT)

    # the link delivers them again (at least once), and once more under new ids (a replay)
    replayed = [(kind, payload, dict(headers, event_id=uuid.uuid4().hex)) for kind, payload, headers in events]
    province.publish(events + replayed)
    province.wait_processed(replayed)  # each queue is taken in order: the duplicates came first
    with province.evaluation() as evaluation:
        assert statistics(evaluation, StatisticsGroup.DEPARTMENT) == before
        assert statistics(evaluation) == shenzhen.statistics(StatisticsGroup.REGION)


def test_a_city_worker_counts_none_of_the_events_it_is_sent(run_site):
    _, own = city_events(GUANGZHOU, f"G{uuid.uuid4().hex[:8]}")       # its own, back down from the province
    _, sibling = city_events(SHENZHEN, f"S{uuid.uuid4().hex[:8]}")    # another city's
    _, provincial = city_events(PROVINCE, f"P{uuid.uuid4().hex[:8]}")  # the province's
    guangzhou = run_site(GUANGZHOU)
    guangzhou.publish(own + sibling + provincial)
    guangzhou.wait_processed(own + sibling + provincial)
    with guangzhou.evaluation() as evaluation:
        assert statistics(evaluation) == []
        assert evaluation.store.rolled_up_statistics("region_code") == []
