"""The ops endpoint of real processes on the real servers.

An api (evaluation: no S3) against a SecantusDB server of this test's own, on port 27117 with its own
data folder: gRPC health SERVING and /readyz 200 while the database answers; the database stopped,
NOT_SERVING and /readyz 503 naming mongo; started again on the same data, SERVING again; its calls
counted on /metrics; its target file gone when it stops.

A worker under eventlet (`nameko run`) answering /healthz while a scrape is held up by a slow
collector, and handling events meanwhile: a slow scrape does not stall the hub."""
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from infra import procs
from services.common import mongo
from services.common.bus import Bus
from services.common.config import ROOT, process_environment
from services.common.testing import running_worker, wait_for
from services.common.tests import ops_probe

pytestmark = pytest.mark.integration

MONGO_PORT = 27117
API_PORT, API_OPS_PORT, WORKER_OPS_PORT = 23056, 23080, 23081
EVALUATION = "onething.evaluation.v1.EvaluationService"
BIN = os.path.dirname(sys.executable)


def get(port, path):
    """(status, body) of one request to an ops endpoint; (None, why) when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return None, str(exc)


def metric(text, name, **labels):
    """The value of one series in a /metrics page (None when it is not there)."""
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


class OwnMongo:
    """A SecantusDB server of this test alone (no authentication), stopped and started by its PID."""

    def __init__(self, folder, log_path):
        self.folder, self.log_path = folder, log_path
        self.process = None

    def start(self):
        assert not procs.port_open("127.0.0.1", MONGO_PORT), f"port {MONGO_PORT} is held by another process"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [os.path.join(BIN, "secantusd-py"), "--host", "127.0.0.1", "--port", str(MONGO_PORT),
                 "--storage-path", self.folder, "--log-level", "WARNING", "--standalone"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        procs.wait_for_port("127.0.0.1", MONGO_PORT, 60, "the test's own SecantusDB")

    def stop(self):
        procs.end(self.process)
        self.process = None
        wait_for(lambda: not procs.port_open("127.0.0.1", MONGO_PORT), "the test's SecantusDB to let go of its port")


@pytest.fixture
def own_mongo(tmp_path):
    server = OwnMongo(str(tmp_path / "mongo"), str(tmp_path / "mongo.log"))
    os.makedirs(server.folder)
    server.start()
    yield server
    server.stop()


def health_of(service=""):
    try:
        with grpc.insecure_channel(f"127.0.0.1:{API_PORT}") as channel:
            return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                             timeout=3).status
    except grpc.RpcError:
        return None


def both(status):
    """The overall health and the evaluation service's are both `status`."""
    return health_of("") == status and health_of(EVALUATION) == status


def test_an_api_is_not_serving_while_its_database_is_away_and_serving_again_when_it_is_back(
        test_env, own_mongo, tmp_path):
    var_dir = str(tmp_path / "var")
    target = os.path.join(var_dir, "observe", "targets", "evaluation-api.json")
    env = process_environment({
        "ONETHING_MONGO_URI": f"mongodb://127.0.0.1:{MONGO_PORT}", "ONETHING_DB_PREFIX": f"ops{uuid.uuid4().hex[:6]}_",
        "ONETHING_EVALUATION_PORT": str(API_PORT), "ONETHING_OPS_PORT": str(API_OPS_PORT),
        "ONETHING_PROCESS_NAME": "evaluation-api", "ONETHING_VAR_DIR": var_dir,
        "ONETHING_READINESS_INTERVAL_SECONDS": "0.3", "ONETHING_READINESS_TIMEOUT_SECONDS": "1",
        "ONETHING_MONGO_TIMEOUT_MS": "1000"})
    with open(tmp_path / "api.log", "ab") as log:
        api = subprocess.Popen([sys.executable, "-m", "services.evaluation.api"], env=env, cwd=ROOT, stdout=log,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        def up():
            assert api.poll() is None, f"the api exited; see {tmp_path / 'api.log'}"
            return both(health_pb2.HealthCheckResponse.SERVING)
        wait_for(up, "the api to be SERVING")
        with open(target, encoding="utf-8") as fh:
            assert json.load(fh) == [{"targets": [f"127.0.0.1:{API_OPS_PORT}"], "labels": {
                "process": "evaluation-api", "service": "evaluation", "role": "api", "site": "440100"}}]
        status, body = get(API_OPS_PORT, "/readyz")
        assert status == 200 and json.loads(body)["ready"] is True, body
        assert get(API_OPS_PORT, "/healthz")[0] == 200

        own_mongo.stop()
        wait_for(lambda: both(health_pb2.HealthCheckResponse.NOT_SERVING), "NOT_SERVING while the database is away")
        status, body = get(API_OPS_PORT, "/readyz")
        answer = json.loads(body)
        assert status == 503 and answer["down"] == ["mongo"] and answer["dependencies"]["amqp"]["up"] is True, body
        assert get(API_OPS_PORT, "/healthz")[0] == 200  # alive all the same: nothing to restart
        assert metric(get(API_OPS_PORT, "/metrics")[1], "onething_dependency_up", dependency="mongo") == 0.0

        own_mongo.start()  # the same data folder
        wait_for(lambda: both(health_pb2.HealthCheckResponse.SERVING), "SERVING once the database is back")
        assert get(API_OPS_PORT, "/readyz")[0] == 200

        with grpc.insecure_channel(f"127.0.0.1:{API_PORT}") as channel, pytest.raises(grpc.RpcError) as err:
            channel.unary_unary(f"/{EVALUATION}/GetStatistics")(b"", timeout=5)  # no token
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        page = get(API_OPS_PORT, "/metrics")[1]
        assert metric(page, "grpc_server_handled_total", grpc_service=EVALUATION, grpc_method="GetStatistics",
                      grpc_code="UNAUTHENTICATED") == 1.0
        assert metric(page, "grpc_server_started_total", grpc_service=EVALUATION, grpc_method="GetStatistics") == 1.0

        api.send_signal(signal.SIGTERM)
        assert api.wait(30) == 0
        assert not os.path.exists(target)  # a clean stop takes its target away
    finally:
        if api.poll() is None:
            api.kill()
            api.wait(10)


@pytest.fixture
def probe_worker(test_env):
    mongo.connect(ops_probe.DB)
    env = {"ONETHING_OPS_PORT": str(WORKER_OPS_PORT), "ONETHING_READINESS_INTERVAL_SECONDS": "0.5"}
    with running_worker("services.common.tests.ops_probe:OpsProbe",
                        os.path.join(test_env["ONETHING_VAR_DIR"], "ops_probe.log"),
                        "evt-ops_src-counted--ops_probe.on_counted", env) as process:
        yield process
    mongo.disconnect(ops_probe.DB)


def send(n, event_id=None):
    event_id = event_id or uuid.uuid4().hex
    Bus(ops_probe.SOURCE).publish_entry({"id": event_id, "event_type": "counted", "at": 0, "payload": {"n": n},
                                         "case_no": f"C-{n}"})
    return event_id


def test_a_worker_answers_and_handles_events_while_a_slow_scrape_is_held(test_env, probe_worker):
    db = ops_probe.db()
    run = uuid.uuid4().hex[:6]
    wait_for(lambda: get(WORKER_OPS_PORT, "/readyz")[0] == 200, "the worker to be ready")
    target = os.path.join(test_env["ONETHING_VAR_DIR"], "observe", "targets", "ops_probe-worker.json")
    with open(target, encoding="utf-8") as fh:
        assert json.load(fh)[0]["labels"]["role"] == "worker"

    db.holds.insert_one({"_id": "scrape"})
    held: dict = {}
    scrape = threading.Thread(target=lambda: held.update(answer=get(WORKER_OPS_PORT, "/metrics")), daemon=True)
    scrape.start()
    try:
        ids = [send(f"{run}-{i}") for i in range(5)]
        wait_for(lambda: db.handled.count_documents({"n": {"$regex": f"^{run}-"}}) == 5, "five events handled")
        status, body = get(WORKER_OPS_PORT, "/healthz")
        assert status == 200 and json.loads(body)["alive"] is True
        assert scrape.is_alive() and "answer" not in held  # the scrape is still held: it stalled nothing
    finally:
        db.holds.delete_one({"_id": "scrape"})
    scrape.join(30)
    assert held["answer"][0] == 200  # the held scrape ends once let go
    labels = {"service": "ops_probe", "handler": "on_counted"}
    page = get(WORKER_OPS_PORT, "/metrics")[1]
    assert metric(page, "onething_handler_messages_total", **labels, outcome="ok") == 5.0
    assert metric(page, "onething_handler_seconds_count", **labels) == 5.0

    send(f"{run}-0", event_id=ids[0])  # the same event again: the inbox skips it
    wait_for(lambda: metric(get(WORKER_OPS_PORT, "/metrics")[1], "onething_inbox_duplicates_total", **labels) == 1.0,
             "the duplicate to be counted")
    assert db.handled.count_documents({"n": {"$regex": f"^{run}-"}}) == 5
    page = get(WORKER_OPS_PORT, "/metrics")[1]
    assert metric(page, "onething_handler_messages_total", **labels, outcome="ok") == 6.0
    assert metric(page, "onething_dependency_up", dependency="amqp") == 1.0

    probe_worker.terminate()
    probe_worker.wait(30)
    assert not os.path.exists(target)
