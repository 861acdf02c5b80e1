"""The ops endpoint (services/common/ops.py), readiness (services/common/readiness.py), the gRPC
server's metrics and health, and the worker's handler metrics, without any server: probes that are
told to be up or down, an in-memory inbox, a publisher that records."""
import json
import os
import sys
import threading
import types
import urllib.error
import urllib.request
from types import SimpleNamespace

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY

from onething.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from services.common import ops, readiness, worker
from services.common.grpc_server import ApiServer
from services.common.testing import MemoryInboxCollection


class Switch:
    """A dependency's check that answers while `up`, and fails the way a refused connection does."""

    def __init__(self, name, up=True):
        self.name, self.up, self.closed = name, up, False

    def check(self):
        if not self.up:
            raise ConnectionRefusedError(f"{self.name} refused the connection")

    def close(self):
        self.closed = True


class Hanging(Switch):
    """A check that does not come back until released."""

    def __init__(self, name):
        super().__init__(name)
        self.release = threading.Event()

    def check(self):
        self.release.wait(10)


def get(port, path, method="GET"):
    """(status, body text) of one request to the ops endpoint."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def sample(name, labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def handled_in_all(labels):
    """grpc_server_handled_total of one method, over every status code."""
    return sum(s.value for metric in REGISTRY.collect() if metric.name == "grpc_server_handled"
               for s in metric.samples if s.name.endswith("_total") and labels.items() <= s.labels.items())


@pytest.fixture
def served(tmp_path):
    """An ops server on a free port with two switchable dependencies (checked on demand)."""
    probes = {"mongo": Switch("mongo"), "amqp": Switch("amqp")}
    checker = readiness.Readiness(list(probes.values()), interval=60, timeout=1)
    identity = ops.Identity("intake-api", "intake", "api", "440100")
    server = ops.OpsServer(identity, checker, "127.0.0.1", 0, str(tmp_path / "targets")).start()
    yield server, checker, probes
    server.stop()


# --- the endpoint ----------------------------------------------------------------------------------

def test_metrics_are_the_default_registry_in_the_text_format(served):
    server, checker, _ = served
    checker.check_now()
    status, body = get(server.port, "/metrics")
    assert status == 200
    assert 'onething_dependency_up{dependency="mongo"} 1.0' in body
    assert "# TYPE process_resident_memory_bytes gauge" in body  # the process collector stays on


def test_healthz_answers_while_the_process_runs_and_names_a_liveness_check_that_fails(served):
    server, _, _ = served
    status, body = get(server.port, "/healthz")
    assert status == 200 and json.loads(body)["alive"] is True and json.loads(body)["pid"] == os.getpid()
    server.add_liveness_check("consumer loop", lambda: False)
    status, body = get(server.port, "/healthz")
    assert status == 503 and json.loads(body)["failing"] == ["consumer loop"]


def test_readyz_is_503_naming_what_is_down_and_200_when_everything_answers(served):
    server, checker, probes = served
    status, body = get(server.port, "/readyz")
    assert status == 503 and set(json.loads(body)["down"]) == {"mongo", "amqp"}  # not checked yet
    checker.check_now()
    status, body = get(server.port, "/readyz")
    assert status == 200 and json.loads(body) == {
        "ready": True, "down": [], "process": "intake-api",
        "dependencies": {"mongo": {"up": True, "detail": "answers"}, "amqp": {"up": True, "detail": "answers"}}}
    probes["mongo"].up = False
    checker.check_now()
    status, body = get(server.port, "/readyz")
    answer = json.loads(body)
    assert status == 503 and answer["down"] == ["mongo"]
    assert "refused" in answer["dependencies"]["mongo"]["detail"] and answer["dependencies"]["amqp"]["up"] is True
    assert sample("onething_dependency_up", {"dependency": "mongo"}) == 0.0


def test_a_path_it_does_not_serve_is_404_and_another_method_is_refused(served):
    server, _, _ = served
    status, body = get(server.port, "/metrics/../admin")
    assert status == 404 and "/readyz" in body
    assert get(server.port, "/metrics", method="POST")[0] == 501


def test_the_target_file_names_the_port_and_goes_when_the_server_stops(tmp_path):
    identity = ops.Identity("desk-wsjk-440100", "desk", "desk", "440100")
    server = ops.OpsServer(identity, None, "127.0.0.1", 0, str(tmp_path)).start()
    path = tmp_path / "desk-wsjk-440100.json"
    assert json.loads(path.read_text()) == [{"targets": [f"127.0.0.1:{server.port}"], "labels": {
        "process": "desk-wsjk-440100", "service": "desk", "role": "desk", "site": "440100"}}]
    assert [p.name for p in tmp_path.iterdir()] == ["desk-wsjk-440100.json"]  # no temporary file left
    assert get(server.port, "/readyz")[0] == 200  # no checker: nothing to wait for
    server.stop()
    assert not path.exists()


def test_a_stopping_process_leaves_the_target_file_of_its_successor_alone(tmp_path):
    identity = ops.Identity("intake-worker", "intake", "worker", "440100")
    old = ops.OpsServer(identity, None, "127.0.0.1", 0, str(tmp_path)).start()
    new = ops.OpsServer(identity, None, "127.0.0.1", 0, str(tmp_path)).start()
    old.stop()
    assert json.loads((tmp_path / "intake-worker.json").read_text())[0]["targets"] == [f"127.0.0.1:{new.port}"]
    new.stop()
    assert not (tmp_path / "intake-worker.json").exists()


@pytest.mark.parametrize("name", ["", "../etc/passwd", "intake api", "x" * 64])
def test_a_process_name_that_cannot_name_a_file_is_refused(name):
    with pytest.raises(ValueError, match="process name"):
        ops.Identity(name, "intake", "api", "440100")


def test_a_role_that_is_none_of_the_three_is_refused():
    with pytest.raises(ValueError, match="use api, worker, desk"):
        ops.Identity("intake-cron", "intake", "cron", "440100")


def test_a_port_in_use_is_refused_naming_the_setting(tmp_path):
    identity = ops.Identity("intake-api", "intake", "api", "440100")
    first = ops.OpsServer(identity, None, "127.0.0.1", 0, str(tmp_path))
    try:
        with pytest.raises(OSError, match="ONETHING_OPS_PORT"):
            ops.OpsServer(identity, None, "127.0.0.1", first.port, str(tmp_path))
    finally:
        first.stop()


@pytest.mark.parametrize("telemetry_name, expected", [
    ("intake-api", ("intake", "api")),
    ("joint_review-worker", ("joint_review", "worker")),
    ("desk-wsjk-440100", ("desk", "desk")),
    ("desk_wsjk_440100", ("desk", "desk")),
    ("evaluation", ("evaluation", "api")),
    ("e2e-client", None),
    ("desk-tests", None),
    ("reliability_probe-worker", None),
    ("archive-api", None),
])
def test_service_and_role_come_from_the_name_the_process_gives_its_telemetry(telemetry_name, expected):
    assert ops.parse_process(telemetry_name) == expected


def test_start_once_per_process_calls_the_services_metrics_register_once(tmp_path, monkeypatch):
    monkeypatch.setenv("ONETHING_VAR_DIR", str(tmp_path))
    calls: list[str] = []
    package, module = types.ModuleType("services.opsfake"), types.ModuleType("services.opsfake.metrics")
    module.register = calls.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "services.opsfake", package)
    monkeypatch.setitem(sys.modules, "services.opsfake.metrics", module)
    try:
        server = ops.start("opsfake-worker", "opsfake", "worker", dependencies=())
        assert ops.start("opsfake-worker", "opsfake", "worker", dependencies=()) is server
        assert calls == ["worker"]
        assert (tmp_path / "observe" / "targets" / "opsfake-worker.json").exists()
        assert get(server.port, "/readyz")[0] == 200
    finally:
        ops.stop()
    assert not (tmp_path / "observe" / "targets" / "opsfake-worker.json").exists()
    assert ops.current() is None and readiness.current() is None


def test_start_for_a_tool_starts_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("ONETHING_VAR_DIR", str(tmp_path))
    assert ops.start_for("demo-client") is None
    assert ops.current() is None and not (tmp_path / "observe").exists()


# --- readiness ---------------------------------------------------------------------------------------

def test_each_process_kind_depends_on_what_it_uses():
    assert readiness.dependencies_of("desk", "desk") == ("amqp",)
    assert readiness.dependencies_of("catalog", "api") == ("mongo", "amqp")
    assert readiness.dependencies_of("evaluation", "worker") == ("mongo", "amqp")
    assert readiness.dependencies_of("intake", "api") == ("mongo", "amqp", "s3")
    assert readiness.dependencies_of("delivery", "worker") == ("mongo", "amqp", "s3")
    with pytest.raises(ValueError, match="no service called 'archive'"):
        readiness.dependencies_of("archive", "api")
    with pytest.raises(ValueError, match="no bucket"):
        readiness.probes_for("catalog", ["s3"])


def test_the_s3_check_looks_up_the_services_own_bucket_under_the_prefix(monkeypatch):
    monkeypatch.setenv("ONETHING_BUCKET_PREFIX", "t1-")
    (probe,) = readiness.probes_for("delivery", ["s3"])
    assert isinstance(probe, readiness.S3Probe) and probe.bucket == "t1-results"


def test_listeners_hear_each_change_once_and_only_when_every_dependency_has_answered():
    mongo, amqp = Switch("mongo"), Switch("amqp")
    checker = readiness.Readiness([mongo, amqp], interval=60, timeout=1)
    heard = []
    checker.subscribe(lambda summary: heard.append((summary.ready, summary.down)))
    assert heard == []  # nothing checked yet
    checker.check_now()
    checker.check_now()
    mongo.up = False
    checker.check_now()
    checker.check_now()
    mongo.up = True
    checker.check_now()
    assert heard == [(True, []), (False, ["mongo"]), (True, [])]


def test_a_check_that_hangs_counts_as_down_after_twice_its_timeout():
    now = [100.0]
    hanging = Hanging("amqp")
    checker = readiness.Readiness([hanging], interval=60, timeout=1, clock=lambda: now[0])
    checker.start()
    try:
        from services.common.testing import wait_for
        wait_for(lambda: "amqp" in checker._running_since, "the check to begin")
        assert checker.summary().states[0].up is None
        now[0] += 2.5
        state = checker.summary().states[0]
        assert state.up is False and "no answer within 2 s" in state.detail
    finally:
        hanging.release.set()
        checker.stop()
    assert hanging.closed


# --- the gRPC server -----------------------------------------------------------------------------------

class Catalog(catalog_pb2_grpc.CatalogServiceServicer):
    pass


def test_the_api_health_follows_readiness_for_every_service_name_and_calls_are_counted():
    mongo = Switch("mongo")
    checker = readiness.Readiness([mongo], interval=60, timeout=1)
    name = "onething.catalog.v1.CatalogService"
    server = ApiServer(0, [(catalog_pb2_grpc.add_CatalogServiceServicer_to_server, Catalog())], [name],
                       checker=checker).start()
    labels = {"grpc_service": name, "grpc_method": "GetPackage"}
    started = sample("grpc_server_started_total", labels)
    refused = sample("grpc_server_handled_total", {**labels, "grpc_code": "UNIMPLEMENTED"})
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)

            def status(service):
                return health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
            assert status("") == status(name) == health_pb2.HealthCheckResponse.NOT_SERVING  # not checked yet
            checker.check_now()
            assert status("") == status(name) == health_pb2.HealthCheckResponse.SERVING
            mongo.up = False
            checker.check_now()
            assert status("") == status(name) == health_pb2.HealthCheckResponse.NOT_SERVING
            mongo.up = True
            checker.check_now()
            assert status("") == status(name) == health_pb2.HealthCheckResponse.SERVING

            with pytest.raises(grpc.RpcError) as err:  # the servicer's default: the code it set is counted
                catalog_pb2_grpc.CatalogServiceStub(channel).GetPackage(catalog_pb2.GetPackageRequest(code="X"),
                                                                        timeout=5)
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        server.stop(0)
    assert sample("grpc_server_started_total", labels) == started + 1
    assert sample("grpc_server_handled_total", {**labels, "grpc_code": "UNIMPLEMENTED"}) == refused + 1
    assert sample("grpc_server_handling_seconds_count", labels) >= 1
    # health checks are not counted
    assert sample("grpc_server_started_total", {"grpc_service": "grpc.health.v1.Health", "grpc_method": "Check"}) == 0


def test_a_graceful_shutdown_stays_not_serving_whatever_readiness_says_after():
    mongo = Switch("mongo")
    checker = readiness.Readiness([mongo], interval=60, timeout=1)
    server = ApiServer(0, [], ["x.Y"], checker=checker).start()
    try:
        checker.check_now()
        server.health.enter_graceful_shutdown()  # what stop() does first
        mongo.up = False
        checker.check_now()
        mongo.up = True
        checker.check_now()
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for service in ("", "x.Y"):
                reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
                assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        server.stop(0)


# --- the worker's handlers ----------------------------------------------------------------------------

class Consumer:
    def __init__(self):
        self.acked, self.requeued = [], []

    def ack_message(self, message):
        self.acked.append(message)

    def requeue_message(self, message):
        self.requeued.append(message)


class Arrival:
    """Stands for nameko's Consumer: what FailureRules.handle_message hands the message on to."""

    def handle_message(self, body, message):
        return None


class Rules(worker.FailureRules, Arrival):
    def __init__(self):
        self.queue = SimpleNamespace(name="evt-src-happened--opstest.on_happened")
        self.queue_consumer = Consumer()
        self.container = SimpleNamespace(service_name="opstest", config={"AMQP_URI": "memory://"})
        self.method_name = "on_happened"


class RecordingPublisher:
    sent: list = []

    def __init__(self, *args, **kwargs):
        pass

    def publish(self, body, **kwargs):
        RecordingPublisher.sent.append(kwargs)


def message(attempts=0):
    return SimpleNamespace(body=b"{}", headers={"x-onething-attempts": attempts, "case_no": "C1"},
                           content_type="application/json", content_encoding="utf-8", properties={},
                           delivery_info={"exchange": "src.events", "routing_key": "happened"})


def outcome_count(outcome):
    return sample("onething_handler_messages_total", {"service": "opstest", "handler": "on_happened", "outcome": outcome})


def test_each_finished_message_is_counted_by_outcome_and_timed(monkeypatch):
    import nameko.amqp.publish
    monkeypatch.setattr(nameko.amqp.publish, "Publisher", RecordingPublisher)
    monkeypatch.setenv("ONETHING_MAX_HANDLER_ATTEMPTS", "2")
    rules = Rules()
    before = {o: outcome_count(o) for o in ("ok", "outage", "failed", "dead_lettered")}
    timed = sample("onething_handler_seconds_count", {"service": "opstest", "handler": "on_happened"})
    dead = sample("onething_dead_lettered_total", {"service": "opstest", "queue": rules.queue.name})

    for exc, attempts in ((None, 0), (ConnectionError("store away"), 0), (KeyError("bug"), 0),
                          (KeyError("bug"), 1)):
        msg = message(attempts)
        rules.handle_message({}, msg)
        rules.handle_message_processed(msg, exc_info=None if exc is None else (type(exc), exc, None))

    after = {o: outcome_count(o) - before[o] for o in before}
    assert after == {"ok": 1, "outage": 1, "failed": 1, "dead_lettered": 1}
    assert sample("onething_handler_seconds_count", {"service": "opstest", "handler": "on_happened"}) == timed + 4
    assert sample("onething_dead_lettered_total", {"service": "opstest", "queue": rules.queue.name}) == dead + 1
    assert RecordingPublisher.sent[-1]["exchange"].name == worker.DEAD_LETTER_EXCHANGE
    assert len(rules.queue_consumer.acked) == 4


def test_a_retry_that_cannot_be_scheduled_still_counts_the_handlers_outcome(monkeypatch):
    import nameko.amqp.publish

    class Away(RecordingPublisher):
        def publish(self, body, **kwargs):
            raise ConnectionError("the broker is away")
    monkeypatch.setattr(nameko.amqp.publish, "Publisher", Away)
    monkeypatch.setattr(worker.time, "sleep", lambda seconds: None)
    rules = Rules()
    before = outcome_count("failed")
    msg = message()
    rules.handle_message_processed(msg, exc_info=(KeyError, KeyError("bug"), None))
    assert outcome_count("failed") == before + 1 and rules.queue_consumer.requeued == [msg]


def test_a_duplicate_the_inbox_has_seen_is_counted():
    inbox = MemoryInboxCollection()
    ctx = SimpleNamespace(context_data={"event_id": "e-1"}, service_name="opstest",
                          entrypoint=SimpleNamespace(method_name="on_happened"))
    labels = {"service": "opstest", "handler": "on_happened"}
    before = sample("onething_inbox_duplicates_total", labels)
    view = worker._InboxView(inbox, ctx)
    assert view.seen() is False
    view.record()
    assert worker._InboxView(inbox, ctx).seen() is True
    assert sample("onething_inbox_duplicates_total", labels) == before + 1


# --- streams count once, when they end -----------------------------------------------------------------

def test_a_stream_counts_once_when_it_ends_however_it_ends():
    from onething.intake.v1 import intake_pb2 as S
    from onething.intake.v1 import intake_pb2_grpc as G
    from services.common import policy

    gone = threading.Event()

    class Streams(G.IntakeServiceServicer):
        def WatchCase(self, request, context):
            if request.case_no != "ENDS":
                context.add_callback(gone.set)
            yield S.Case(case_no=request.case_no)
            while request.case_no != "ENDS" and context.is_active():  # until the client goes away
                threading.Event().wait(0.02)

        def UploadMaterial(self, request_iterator, context):
            return S.Upload(size=sum(1 for _ in request_iterator))

    name = "onething.intake.v1.IntakeService"
    server = ApiServer(0, [(G.add_IntakeServiceServicer_to_server, Streams())], [name],
                       policies=policy.open_to_anyone([name])).start()
    watch, upload = {"grpc_service": name, "grpc_method": "WatchCase"}, {"grpc_service": name, "grpc_method": "UploadMaterial"}
    before = {code: sample("grpc_server_handled_total", {**watch, "grpc_code": code}) for code in ("OK", "CANCELLED")}
    uploads = sample("grpc_server_handled_total", {**upload, "grpc_code": "OK"})
    started, ended = sample("grpc_server_started_total", watch), handled_in_all(watch)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = G.IntakeServiceStub(channel)
            assert [c.case_no for c in stub.WatchCase(S.WatchCaseRequest(case_no="ENDS"), timeout=5)] == ["ENDS"]
            stream = stub.WatchCase(S.WatchCaseRequest(case_no="STAYS"), timeout=30)
            assert next(stream).case_no == "STAYS"
            stream.cancel()
            assert gone.wait(10)
            assert stub.UploadMaterial(iter([S.UploadMaterialRequest(chunk=b"a"), S.UploadMaterialRequest(chunk=b"b")]), timeout=5).size == 2
    finally:
        server.stop(1)
    from services.common.testing import wait_for
    wait_for(lambda: sample("grpc_server_handled_total", {**watch, "grpc_code": "CANCELLED"}) == before["CANCELLED"] + 1,
             "the cancelled stream to be counted")
    assert sample("grpc_server_handled_total", {**watch, "grpc_code": "OK"}) == before["OK"] + 1
    assert sample("grpc_server_started_total", watch) == started + 2
    assert handled_in_all(watch) == ended + 2  # each stream once, whatever else saw it end
    assert sample("grpc_server_handled_total", {**upload, "grpc_code": "OK"}) == uploads + 1


# --- settings ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, value, words", [
    ("ONETHING_OPS_PORT", "70000", "ONETHING_OPS_PORT=70000 is not a port"),
    ("ONETHING_OPS_PORT", "eighty", "ONETHING_OPS_PORT='eighty' is not a whole number"),
    ("ONETHING_PROCESS_NAME", "../intake-api", "ONETHING_PROCESS_NAME='../intake-api'"),
    ("ONETHING_READINESS_INTERVAL_SECONDS", "0", "ONETHING_READINESS_INTERVAL_SECONDS=0.0 must be more than 0"),
    ("ONETHING_READINESS_TIMEOUT_SECONDS", "-1", "ONETHING_READINESS_TIMEOUT_SECONDS=-1.0 must be more than 0"),
])
def test_an_ops_setting_that_cannot_be_used_stops_the_process_naming_it(monkeypatch, name, value, words):
    from services.common.config import SettingsError, settings
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as err:
        settings()
    assert words in str(err.value)
