"""A real Prometheus (infra/observe.py) on a port and folder of its own, with onething's alert rules,
against a target this test starts (a small prometheus_client server, announced by a file_sd target
file as every suite process announces itself) and the machine's RabbitMQ (rabbitmq_prometheus):
the target is scraped with its labels, the rules evaluate on what is scraped (DependencyDown goes
pending on a dependency the target reports down), and when the target is killed `up` turns 0 and
ProcessDown goes pending for it. promtool's unit tests (alerts_test.yml) cover when each alert fires;
here the rules run on live data."""
import os
import signal
import subprocess
import sys
import urllib.request

import pytest
import yaml

from infra import local, observe, procs
from services.common.testing import wait_for

pytestmark = pytest.mark.integration

PORTS = range(23900, 24000)  # this test's Prometheus: the first free one
RULES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "prometheus", "alerts.yml")

# the target: onething_dependency_up as a process reports it (s3 down), on a port the kernel picks
PROBE = """
import sys, time
from wsgiref.simple_server import make_server, WSGIRequestHandler
from prometheus_client import Gauge, make_wsgi_app
up = Gauge("onething_dependency_up", "1 when the dependency answers", ["dependency"])
up.labels("mongo").set(1)
up.labels("s3").set(0)
class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass
server = make_server("127.0.0.1", 0, make_wsgi_app(), handler_class=Quiet)
print(server.server_port, flush=True)
server.serve_forever()
"""


def _free_port():
    for port in PORTS:
        if not procs.port_open(observe.HOST, port):
            return port
    pytest.fail(f"no free port in {PORTS.start}-{PORTS.stop - 1} for this test's Prometheus")


def _query(where, expr):
    return observe.api(where, "/api/v1/query", query=expr)["result"]


def _alerts(where, name):
    return [a for a in observe.api(where, "/api/v1/alerts")["alerts"] if a["labels"]["alertname"] == name]


@pytest.fixture
def prometheus(tmp_path):
    """A Prometheus of this test's own: config, data, PID file and log under tmp_path; stopped by PID."""
    where = observe.Layout(str(tmp_path / "observe"), _free_port(), str(tmp_path / "run"), str(tmp_path / "log"))
    os.makedirs(where.targets)
    observe.write_config(where, observe.config_text([os.path.join(where.targets, "*.json")],
                                                    [os.path.join(where.brokers, "*.json")], [RULES],
                                                    scrape_interval="1s", evaluation_interval="1s"))
    try:
        observe.start(where)
        yield where
    finally:
        observe.stop(where)
        assert observe.pid(where) is None


@pytest.fixture
def probe():
    proc = subprocess.Popen([sys.executable, "-c", PROBE], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        port = int(proc.stdout.readline())
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()


def test_rules_evaluate_on_scraped_targets_and_a_killed_target_turns_up_to_0(prometheus, probe):
    proc, port = probe
    observe.write_target(prometheus.targets, "probe-api", observe.target_entry(
        f"127.0.0.1:{port}", process="probe-api", service="probe", role="api", site="440100"))

    wait_for(lambda: _query(prometheus, 'up{process="probe-api"} == 1'), "the probe scraped", timeout=60)
    [series] = _query(prometheus, 'onething_dependency_up{dependency="s3"}')
    assert series["metric"]["process"] == "probe-api" and series["metric"]["site"] == "440100"
    assert series["metric"]["job"] == "onething" and series["value"][1] == "0"

    groups = observe.api(prometheus, "/api/v1/rules")["groups"]
    loaded = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert {"ProcessDown", "DependencyDown", "DeskQueueWithoutConsumer", "SiteLinkDown"} <= set(loaded)
    assert all(rule["health"] == "ok" for group in groups for rule in group["rules"]), groups

    # the rule sees the dependency the probe reports down, and only that one (for: 1m keeps it pending)
    pending = wait_for(lambda: _alerts(prometheus, "DependencyDown"), "DependencyDown evaluated", timeout=60)
    assert [(a["labels"]["process"], a["labels"]["dependency"], a["state"]) for a in pending] == [
        ("probe-api", "s3", "pending")]
    assert _alerts(prometheus, "ProcessDown") == []

    os.kill(proc.pid, signal.SIGKILL)  # a crash: its target file stays behind
    proc.wait(timeout=10)
    wait_for(lambda: _query(prometheus, 'up{process="probe-api"} == 0'), "up turning 0", timeout=60)
    down = wait_for(lambda: _alerts(prometheus, "ProcessDown"), "ProcessDown evaluated", timeout=60)
    assert [(a["labels"]["process"], a["labels"]["severity"], a["state"]) for a in down] == [
        ("probe-api", "critical", "pending")]


def test_rabbitmq_is_scraped_per_queue(prometheus):
    local.ensure_prometheus_plugin()
    observe.write_target(prometheus.brokers, "rabbitmq", observe.target_entry(
        f"127.0.0.1:{local.RABBITMQ_PROMETHEUS_PORT}", process="rabbitmq", role="broker", site="440100"))
    found = wait_for(lambda: _query(prometheus, 'rabbitmq_queue_consumers{queue="onething.dead_letters"}'),
                     "RabbitMQ's per-queue series scraped", timeout=60)
    assert {s["metric"]["job"] for s in found} == {"rabbitmq"}
    assert {s["metric"]["vhost"] for s in found} >= {"onething"}


def test_rabbitmq_serves_the_catalogued_names():
    local.ensure_prometheus_plugin()
    with urllib.request.urlopen(f"http://127.0.0.1:{local.RABBITMQ_PROMETHEUS_PORT}{observe.PER_OBJECT}",
                                timeout=30) as answer:
        text = answer.read().decode()
    served = {line.split("{", 1)[0].split(" ", 1)[0] for line in text.splitlines() if line and not line.startswith("#")}
    with open(os.path.join(os.path.dirname(RULES), "catalogue.yml"), encoding="utf-8") as fh:
        catalogue = yaml.safe_load(fh)["metrics"]
    rabbitmq = {name for name, meta in catalogue.items() if meta.get("source") == "rabbitmq"}
    assert rabbitmq and rabbitmq <= served, sorted(rabbitmq - served)
