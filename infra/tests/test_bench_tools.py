"""The bench's helpers: what a case costs, read from processes' /metrics; the floor; the stored-case
copies of tools/bench_seed.py."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from bson import ObjectId

from tools import bench_costs, bench_seed

METRICS = """# TYPE onething_mongo_command_seconds histogram
onething_mongo_command_seconds_count{command="find",collection="cases"} %(find)s
onething_mongo_command_seconds_sum{command="find",collection="cases"} %(find_s)s
onething_mongo_command_seconds_count{command="insert",collection="inbox"} 2
onething_mongo_command_seconds_sum{command="insert",collection="inbox"} 0.01
# TYPE onething_s3_operations counter
onething_s3_operations_total{op="put"} 3
# TYPE onething_events_published counter
onething_events_published_total{exchange="intake.events"} %(events)s
# TYPE grpc_server_handled counter
grpc_server_handled_total{grpc_service="s",grpc_method="m",grpc_code="OK"} 4
"""


@pytest.fixture
def process(tmp_path):
    """One process's /metrics (its counts settable) announced as a target in tmp_path."""
    counts = {"find": 10, "find_s": 0.05, "events": 5}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = (METRICS % counts).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    folder = tmp_path / "observe" / "targets"
    folder.mkdir(parents=True)
    (folder / "intake-worker.json").write_text(json.dumps([{"targets": [f"127.0.0.1:{server.server_port}"],
                                                            "labels": {"process": "intake-worker"}}]))
    (folder / "gone.json").write_text(json.dumps([{"targets": ["127.0.0.1:9"], "labels": {"process": "gone"}}]))
    (folder / "broken.json").write_text("{")
    yield counts
    server.shutdown()


def test_what_a_case_costs_is_the_difference_of_the_counts_per_case(process, tmp_path):
    before = bench_costs.totals(str(tmp_path))
    assert before["processes"] == 1  # the one that answers; a dead target and a broken file are skipped
    assert before["mongo"] == 12 and before["s3"] == 3 and before["published"] == 5 and before["grpc"] == 4
    process.update(find=30, find_s=0.15, events=25)
    cost = bench_costs.per_case(before, bench_costs.totals(str(tmp_path)), cases=10)
    assert cost["mongo"] == pytest.approx(2.0) and cost["published"] == pytest.approx(2.0)
    assert cost["by_command"] == {"find": pytest.approx(2.0)} and cost["s3"] == 0
    assert cost["by_place"] == {"intake-worker find cases": pytest.approx(2.0)}
    rtt = {"mongo": {"insert": 0.001, "find": 0.001}, "s3": {"put": 0.002, "get": 0.002},
           "amqp_confirmed": 0.0005, "grpc": 0.0004}
    total, parts = bench_costs.floor(cost, rtt)
    assert parts == {"mongo": pytest.approx(0.002), "s3": 0, "events": pytest.approx(0.001), "grpc": 0}
    assert total == pytest.approx(0.003)


def test_copies_of_a_case_get_their_own_numbers_and_licence_ids():
    docs = [{"_id": "440100XSECS202611280101", "license_ids": ["LIC-1"], "note": "case 440100XSECS202611280101"},
            {"_id": ObjectId(), "case_no": "440100XSECS202611280101"}]
    copies = bench_seed._copies("440100XSECS202611280101", ["LIC-1"], docs, first=7, count=2)
    assert [c.get("_id") for c in copies] == ["440100XSECS20261128B0000007", None,
                                              "440100XSECS20261128B0000008", None]
    assert copies[0]["license_ids"] == ["LIC-1.B0000007"] and copies[2]["license_ids"] == ["LIC-1.B0000008"]
    assert copies[1]["case_no"] == "440100XSECS20261128B0000007" and all(c["bench_copy"] for c in copies)


@pytest.mark.parametrize("argv", [[], ["many"], ["1", "2"], ["-5"]])
def test_the_seed_command_says_how_to_call_it(argv):
    with pytest.raises(SystemExit, match="usage"):
        bench_seed.main(argv)


def test_cpu_per_case_groups_the_desks_and_leaves_out_a_restarted_process():
    before = {"intake-api": (10, 1.0), "desk-ga-440100": (11, 2.0), "desk-mz-440100": (12, 2.0),
              "elicense-worker": (13, 5.0)}
    after = {"intake-api": (10, 3.0), "desk-ga-440100": (11, 3.0), "desk-mz-440100": (12, 4.0),
             "elicense-worker": (99, 1.0), "new-one": (14, 1.0)}
    per_case = bench_costs.cpu_per_case(before, after, cases=10)
    assert per_case == {"desks": pytest.approx(0.3), "intake-api": pytest.approx(0.2)}
    assert list(per_case) == ["desks", "intake-api"]  # largest first


def test_the_suites_processes_are_found_by_their_pid_files(tmp_path):
    import os
    run = tmp_path / "run"
    run.mkdir()
    (run / "intake-api.child.pid").write_text(str(os.getpid()))
    (run / "intake-api.pid").write_text("1")  # its supervisor: not counted
    (run / "mongo.pid").write_text(str(os.getpid()))
    snapshot = bench_costs.cpu_snapshot(str(tmp_path))
    assert snapshot["intake-api"][0] == os.getpid() and snapshot["intake-api"][1] > 0
    assert "mongodb (SecantusDB)" in snapshot and "intake-api.pid" not in snapshot


def test_the_mongodb_ceiling_is_measured_on_the_real_server_and_leaves_nothing_behind(tmp_path):
    import os

    import pymongo

    from services.common.config import settings
    assert bench_costs.mongo_ceiling(seconds=0.3, var_dir=str(tmp_path)) is None  # no server pid known
    run = tmp_path / "run"
    run.mkdir()
    # this process stands in for the server's pid: the finds go to the real server all the same
    (run / "mongo.pid").write_text(str(os.getpid()))
    found = bench_costs.mongo_ceiling(seconds=0.3, clients=2, var_dir=str(tmp_path))
    assert found is not None and found["finds_per_s"] > 0 and found["server_cores"] >= 0
    s = settings()
    with pymongo.MongoClient(s.mongo_uri, directConnection=True) as client:
        assert f"{s.db_prefix}bench_scratch" not in client.list_database_names()


@pytest.mark.integration
def test_the_bench_listener_listens_again_after_its_connection_is_closed(test_env):
    """The broker drops the bench's connection (as a restart does): the listener notes it, binds a
    queue again and sees the cases that conclude afterwards."""
    import os
    import time

    from infra import local
    from onething.joint_review.v1 import events_pb2
    from services.common.bus import Bus, Unroutable
    from tools.bench import ConcludedListener
    listener = ConcludedListener(test_env["ONETHING_AMQP_URI"])
    listener.start()
    try:
        rows = local.rabbitmqctl("list_connections", "pid", "name").stdout.splitlines()
        pid = next(row.split("\t")[0] for row in rows if row.endswith("\t" + listener.connection_name))
        local.rabbitmqctl("close_connection", pid, "the bench test closes it")  # by pid: it takes no name
        deadline = time.monotonic() + 30
        while not listener.lost and time.monotonic() < deadline:
            time.sleep(0.1)
        assert listener.lost and listener.error is None
        bus, case_no = Bus("joint_review"), f"BENCH-{os.urandom(4).hex()}"
        while time.monotonic() < deadline:  # the queue is bound again within a second or two
            try:
                bus.publish("case_concluded", events_pb2.CaseConcluded(case_no=case_no, approved=True), case_no)
            except Unroutable:  # its queue is not bound yet
                time.sleep(0.2)
                continue
            if listener.wait(case_no, time.perf_counter() + 1.0) is not None:
                break
        assert case_no in listener.arrived and listener.arrived[case_no][1] is True
    finally:
        listener.stop()


@pytest.mark.integration
def test_the_stack_floor_runs_small_and_leaves_no_queue_or_exchange(test_env, capsys):
    import amqp
    from kombu import Connection

    from services.common.config import settings
    from tools import bench_stack
    assert bench_stack.main(["--events", "40", "--published", "10", "--handled", "5"]) == 0
    out = capsys.readouterr().out
    assert "40 events, each published with confirms and handled by a nameko handler" in out
    assert "CPU an event: publisher" in out and "a case (10 published, 5 handled)" in out
    with Connection(settings().amqp_uri) as conn, pytest.raises(amqp.exceptions.NotFound):
        conn.channel().exchange_declare(f"{bench_stack.SOURCE}.events", "topic", passive=True)
