"""The benchmark: 新生儿出生 cases driven through the running suite, and, in the same run on the same
machine, the floor under them: a bare grpcio unary round trip and a raw kombu publish→consume round
trip on the suite's RabbitMQ.

    make up                      (or: python -m infra.local up && python -m infra.suite up)
    python -m tools.bench [--cases N | --duration S] [--concurrency C] [--stored K] [--timeout S]

Per case the clock starts just before SubmitCase (the four materials are uploaded first, outside the
measured time) and stops when the case's `case_concluded` event arrives on an exclusive queue of this
process bound to `joint_review.events`. C threads each drive one case at a time from upload to
conclusion, so at most C cases are in flight. Exits non-zero when a case fails or does not conclude
within the timeout. Not a test: it prints figures and asserts nothing about them.
"""
import argparse
import datetime
import json
import math
import os
import platform
import random
import sys
import threading
import time
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor

import grpc
import kombu
from kombu import Connection, Consumer, Exchange, Producer, Queue

from onething.common.v1 import common_pb2

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")  # nameko imports it; we never use it
from services.common.bus import event_exchange
from services.common.config import settings
from services.common.privacy import mask_id
from tools import bench_costs
from tools.client import Suite, citizen_id

GRPC_CALLS = 2000
GRPC_WARMUP = 50
AMQP_ROUND_TRIPS = 500
SETTLE_MAX_SECONDS = 10.0
SETTLE_BUSY = 0.25   # the machine counts as settled below this fraction of CPU time in use


# figures ---------------------------------------------------------------------------------------
def pct(values, p):
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "?")
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            kb = int(next(ln.split()[1] for ln in fh if ln.startswith("MemTotal")))
            mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return {"cpu": cpu, "cores": cores, "mem": mem, "load": load, "os": platform.platform(),
            "python": platform.python_version(), "grpcio": grpc.__version__, "kombu": kombu.__version__}


# 1. the suite ----------------------------------------------------------------------------------
class ConcludedListener:
    """Records when each case_concluded event arrives, in a thread with its own kombu connection.
    The queue is exclusive and auto-delete, so it lives exactly as long as this listener."""

    def __init__(self, amqp_uri):
        self.amqp_uri = amqp_uri
        self.arrived = {}        # case_no -> (perf_counter at arrival, approved, reason)
        self.duplicates = 0
        self.error = None        # why it could not listen at all
        self.lost: list[str] = []  # connections lost and made again while it listened
        self.connection_name = ""  # the broker's name of its connection (rabbitmqctl list_connections name)
        self.rabbitmq = "?"
        self.cond = threading.Condition()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="case_concluded-listener", daemon=True)

    def start(self, timeout=15.0):
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"could not bind a queue to joint_review.events within {timeout:.0f}s")
        if self.error:
            raise RuntimeError(f"could not bind a queue to joint_review.events: {self.error}")

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=5)

    def _on_message(self, body, message):
        now = time.perf_counter()
        if isinstance(body, (bytes, str)):
            body = json.loads(body)
        case_no = body.get("case_no") or (message.headers or {}).get("case_no", "")
        with self.cond:
            if case_no in self.arrived:
                self.duplicates += 1
            else:
                self.arrived[case_no] = (now, bool(body.get("approved", False)), body.get("reason", ""))
            self.cond.notify_all()

    def wait(self, case_no, deadline):
        """perf_counter time of the case's conclusion, or None if not there by `deadline`."""
        with self.cond:
            self.cond.wait_for(lambda: case_no in self.arrived or self.error is not None,
                               timeout=max(0.0, deadline - time.perf_counter()))
            got = self.arrived.get(case_no)
            return got[0] if got else None

    def _run(self):
        """Listen until stop(); a connection lost after the first one (the broker restarted) is
        made again, and noted in `lost`: what concluded meanwhile may never reach this listener."""
        connected = False
        while not self._stop.is_set():
            queue = Queue(f"bench-case_concluded-{uuid.uuid4().hex[:12]}", exchange=event_exchange("joint_review"),
                          routing_key="case_concluded", exclusive=True, auto_delete=True, durable=False)
            try:
                with Connection(self.amqp_uri) as conn:
                    conn.ensure_connection(max_retries=3)
                    self.rabbitmq = conn.connection.server_properties.get("version", "?")
                    local, peer = conn.connection.sock.getsockname(), conn.connection.sock.getpeername()
                    self.connection_name = f"{local[0]}:{local[1]} -> {peer[0]}:{peer[1]}"  # as the broker names it
                    if isinstance(self.rabbitmq, bytes):
                        self.rabbitmq = self.rabbitmq.decode()
                    with Consumer(conn, queues=[queue], callbacks=[self._on_message], accept=["json"], no_ack=True):
                        connected = True
                        self._ready.set()
                        while not self._stop.is_set():
                            try:
                                conn.drain_events(timeout=0.25)
                            except TimeoutError:
                                pass
            except Exception as exc:
                with self.cond:
                    if not connected:  # never listened: the bench cannot run
                        self.error = f"{type(exc).__name__}: {exc}"
                        self.cond.notify_all()
                        break
                    self.lost.append(f"{type(exc).__name__}: {exc}")
                    self.cond.notify_all()
                self._stop.wait(1.0)  # and listen again
            finally:
                self._ready.set()


def applicant_for(i, base_day):
    """A distinct valid citizen ID per case: birth date base_day + i//1000 days, sequence i%1000."""
    born = base_day + datetime.timedelta(days=i // 1000)
    first17 = f"440106{born:%Y%m%d}{i % 1000:03d}"
    return common_pb2.Applicant(id_number=citizen_id(first17), name="李华", phone="13800000000")


def preflight():
    from infra import suite as infra_suite
    try:
        infra_suite.wait_serving(timeout=10)
        infra_suite.wait_consuming(timeout=10)
    except Exception as exc:
        raise SystemExit(f"the suite is not ready ({exc}).\nstart it with: "
                         ".venv/bin/python -m infra.local up && .venv/bin/python -m infra.suite up") from None


def run_suite(n, concurrency, timeout, duration=None):
    """Drive `n` cases, C at a time; with `duration` (seconds), start cases until it has passed
    (at most `n`) and let those started conclude."""
    listener = ConcludedListener(settings().amqp_uri)
    listener.start()
    local = threading.local()
    abort = threading.Event()
    base_day = datetime.date(1970, 1, 1) + datetime.timedelta(days=random.randrange(0, 365 * 30))
    needed = Suite().required_materials()  # what the catalog asks for 新生儿出生 in 440100
    results: dict[int, dict] = {}
    deadline = time.perf_counter() + duration if duration else None
    numbers = iter(range(n))
    numbers_lock = threading.Lock()

    def one(i):
        if abort.is_set():
            results[i] = {"error": "not started (an earlier case failed)"}
            return
        if not hasattr(local, "suite"):
            local.suite = Suite()
        suite = local.suite
        applicant = applicant_for(i, base_day)
        r: dict = {"id_number": applicant.id_number}
        results[i] = r
        try:
            t_up = time.perf_counter()
            materials = suite.upload_all(applicant.id_number, needed)
            t0 = time.perf_counter()
            case = suite.submit(applicant, materials)
            t1 = time.perf_counter()
        except grpc.RpcError as exc:
            r["error"] = f"{exc.code().name}: {exc.details()}"
            abort.set()
            return
        except Exception as exc:
            r["error"] = f"{type(exc).__name__}: {exc}"
            abort.set()
            return
        r.update(case_no=case.case_no, upload=t0 - t_up, submitted=t0, submit_rpc=t1 - t0)
        done = listener.wait(case.case_no, t0 + timeout)
        if done is None:
            r["error"] = (f"listener failed: {listener.error}" if listener.error is not None else
                          f"no case_concluded seen within {timeout:g} s; the bench lost its broker connection "
                          f"meanwhile ({listener.lost[0]}), so it may have concluded unseen: see python -m tools.stuck"
                          if listener.lost else f"no case_concluded within {timeout:g} s")
            abort.set()
            return
        r["concluded"] = done

    def driver():
        while not abort.is_set() and (deadline is None or time.perf_counter() < deadline):
            with numbers_lock:
                i = next(numbers, None)
            if i is None:
                return
            one(i)

    try:
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="case") as pool:
            for f in [pool.submit(driver) for _ in range(concurrency)]:
                f.result()
    finally:
        listener.stop()

    started = len(results)
    ok = [r for r in results.values() if "concluded" in r]
    failed = [r for r in results.values() if "error" in r]
    print(f"\n1. suite: {started} × 新生儿出生 (XSECS, its materials uploaded first), {concurrency} in flight, "
          f"submit → case_concluded event" + (f", cases started for {duration:g} s" if duration else ""))
    n = started
    out: dict = {"n": n, "c": concurrency, "ok": len(ok), "failed": failed, "rabbitmq": listener.rabbitmq}
    if ok:
        lat = [(r["concluded"] - r["submitted"]) * 1000 for r in ok]
        wall = max(r["concluded"] for r in ok) - min(r["submitted"] for r in ok)
        approved = sum(1 for r in ok if listener.arrived[r["case_no"]][1])
        out.update(rate=len(ok) / wall, p50=pct(lat, 50), p95=pct(lat, 95), max=max(lat), approved=approved)
        print(f"   concluded      {len(ok)}/{n}   approved {approved}, rejected {len(ok) - approved}"
              + (f"   (duplicate events {listener.duplicates})" if listener.duplicates else ""))
        print(f"   wall           {wall:.2f} s from first submit to last conclusion")
        print(f"   throughput     {out['rate']:.2f} cases/s")
        print(f"   submit→concl.  p50 {out['p50']:.0f} ms   p95 {out['p95']:.0f} ms   max {out['max']:.0f} ms")
        sub = [r["submit_rpc"] * 1000 for r in ok]
        up = [r["upload"] * 1000 for r in ok]
        print(f"   (SubmitCase rpc p50 {pct(sub, 50):.0f} ms, p95 {pct(sub, 95):.0f} ms; "
              f"4 uploads before it p50 {pct(up, 50):.0f} ms, p95 {pct(up, 95):.0f} ms — not in the figures above)")
        rejected = [(r["case_no"], listener.arrived[r["case_no"]][2]) for r in ok
                    if not listener.arrived[r["case_no"]][1]]
        for case_no, reason in rejected[:5]:
            print(f"   rejected {case_no}: {reason}")
    sys.stdout.flush()
    for r in failed[:10]:
        r = r or {}
        print(f"   FAILED {r.get('case_no', '-')} ({mask_id(r.get('id_number', '-'))}): {r.get('error', 'not run')}",
              file=sys.stderr)
    return out


def _cpu_times():
    with open("/proc/stat", encoding="utf-8") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    return sum(fields), fields[3] + fields[4]   # total, idle + iowait


def settle():
    """Wait (at most SETTLE_MAX_SECONDS) for the work that follows a conclusion (licences, delivery)
    to finish, so it does not run under the baselines: until a half-second window is mostly idle."""
    start = time.perf_counter()
    try:
        total, idle = _cpu_times()
        while time.perf_counter() - start < SETTLE_MAX_SECONDS:
            time.sleep(0.5)
            total2, idle2 = _cpu_times()
            busy = 1 - (idle2 - idle) / max(1, total2 - total)
            total, idle = total2, idle2
            if busy < SETTLE_BUSY:
                break
    except (OSError, ValueError, IndexError):
        time.sleep(3)
    print(f"\n(settled for {time.perf_counter() - start:.1f} s before the baselines)")


# 2a. bare grpcio -------------------------------------------------------------------------------
def run_grpc_echo(concurrency):
    server = grpc.server(ThreadPoolExecutor(max_workers=max(concurrency, 4)))
    handler = grpc.unary_unary_rpc_method_handler(lambda request, context: request,
                                                  request_deserializer=None, response_serializer=None)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Echo", {"Echo": handler}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    payload = b"x" * 64
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            echo = ch.unary_unary("/bench.Echo/Echo", request_serializer=None, response_deserializer=None)
            for _ in range(GRPC_WARMUP):
                echo(payload, timeout=10)
            lat = []
            start = time.perf_counter()
            for _ in range(GRPC_CALLS):
                t = time.perf_counter()
                echo(payload, timeout=10)
                lat.append((time.perf_counter() - t) * 1e6)
            seq_rate = GRPC_CALLS / (time.perf_counter() - start)

            per_thread = [GRPC_CALLS // concurrency + (1 if i < GRPC_CALLS % concurrency else 0)
                          for i in range(concurrency)]
            clat = []
            lock = threading.Lock()

            def client(count):
                mine = []
                for _ in range(count):
                    t = time.perf_counter()
                    echo(payload, timeout=10)
                    mine.append((time.perf_counter() - t) * 1e6)
                with lock:
                    clat.extend(mine)

            start = time.perf_counter()
            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                list(pool.map(client, per_thread))
            par_rate = GRPC_CALLS / (time.perf_counter() - start)
    finally:
        server.stop(grace=None)
    print(f"\n2a. bare grpcio unary echo ({len(payload)} B, in-process server on 127.0.0.1 over TCP, "
          f"client and server share one interpreter)")
    print(f"   1 client thread   {GRPC_CALLS} calls   p50 {pct(lat, 50):.0f} µs   p95 {pct(lat, 95):.0f} µs   "
          f"{seq_rate:.0f} calls/s")
    print(f"   {concurrency} client threads  {GRPC_CALLS} calls   p50 {pct(clat, 50):.0f} µs   "
          f"p95 {pct(clat, 95):.0f} µs   {par_rate:.0f} calls/s")
    return {"p50": pct(lat, 50), "p95": pct(lat, 95), "rate": seq_rate,
            "c_p50": pct(clat, 50), "c_p95": pct(clat, 95), "c_rate": par_rate}


# 2b. raw kombu ---------------------------------------------------------------------------------
def run_amqp_round_trip(amqp_uri, confirms):
    """Publish a persistent message to a fresh exclusive queue (default exchange) on one connection,
    consume it on another, one at a time."""
    queue_name = f"bench-rtt-{uuid.uuid4().hex[:12]}"
    got = []

    def on_message(body, message):
        got.append(time.perf_counter())
        message.ack()

    options = {"confirm_publish": True} if confirms else {}
    with Connection(amqp_uri) as cconn, Connection(amqp_uri, transport_options=options) as pconn:
        queue = Queue(queue_name, exchange=Exchange(""), routing_key=queue_name,
                      exclusive=True, auto_delete=True, durable=False)
        with Consumer(cconn, queues=[queue], callbacks=[on_message], accept=["json"]):
            producer = Producer(pconn, exchange=Exchange(""), routing_key=queue_name, serializer="json")
            lat = []
            start = time.perf_counter()
            for i in range(AMQP_ROUND_TRIPS):
                got.clear()
                t = time.perf_counter()
                producer.publish({"i": i}, delivery_mode=2)
                deadline = t + 10
                while not got:
                    if time.perf_counter() > deadline:
                        raise RuntimeError(f"message {i} was not consumed within 10 s")
                    try:
                        cconn.drain_events(timeout=1)
                    except TimeoutError:
                        pass
                lat.append((got[0] - t) * 1000)
            rate = AMQP_ROUND_TRIPS / (time.perf_counter() - start)
    return {"p50": pct(lat, 50), "p95": pct(lat, 95), "rate": rate}


def run_amqp(amqp_uri):
    vhost = amqp_uri.rsplit("/", 1)[-1] or "/"
    plain = run_amqp_round_trip(amqp_uri, confirms=False)
    confirmed = run_amqp_round_trip(amqp_uri, confirms=True)
    print(f"\n2b. raw kombu publish → consume (persistent, exclusive queue, vhost {vhost}, "
          f"separate publish and consume connections)")
    print(f"   {AMQP_ROUND_TRIPS} round trips              p50 {plain['p50']:.2f} ms   p95 {plain['p95']:.2f} ms   "
          f"{plain['rate']:.0f} msgs/s")
    print(f"   {AMQP_ROUND_TRIPS} with publisher confirms  p50 {confirmed['p50']:.2f} ms   "
          f"p95 {confirmed['p95']:.2f} ms   {confirmed['rate']:.0f} msgs/s   (how services/common/bus.py publishes)")
    return plain, confirmed


# 3. summary ------------------------------------------------------------------------------------
def summary(m, s, g, a, ac, c):
    print("\n3. summary (Markdown)\n")
    print(f"Machine: {m['cpu']}, {m['cores']} cores, {m['mem']} RAM, {m['os']}; {m.get('stored', '?')} cases "
          f"stored before the run; Python {m['python']}, "
          f"grpcio {m['grpcio']}, kombu {m['kombu']}, RabbitMQ {s['rabbitmq']}; load before run {m['load']}.\n")
    print("| benchmark | throughput | p50 | p95 | max |")
    print("|---|---|---|---|---|")
    print(f"| 新生儿出生 case, SubmitCase → `case_concluded` ({s['n']} cases, {s['c']} in flight, "
          f"{s['approved']}/{s['ok']} approved) | {s['rate']:.2f} cases/s | {s['p50']:.0f} ms | {s['p95']:.0f} ms "
          f"| {s['max']:.0f} ms |")
    print(f"| bare grpcio unary echo, 1 client thread ({GRPC_CALLS} calls) | {g['rate']:.0f} calls/s "
          f"| {g['p50']:.0f} µs | {g['p95']:.0f} µs | – |")
    print(f"| bare grpcio unary echo, {c} client threads ({GRPC_CALLS} calls) | {g['c_rate']:.0f} calls/s "
          f"| {g['c_p50']:.0f} µs | {g['c_p95']:.0f} µs | – |")
    print(f"| kombu publish → consume, persistent ({AMQP_ROUND_TRIPS} sequential) | {a['rate']:.0f} msgs/s "
          f"| {a['p50']:.2f} ms | {a['p95']:.2f} ms | – |")
    print(f"| same, with publisher confirms | {ac['rate']:.0f} msgs/s | {ac['p50']:.2f} ms | {ac['p95']:.2f} ms | – |")


def bench_seed_count():
    """Cases stored in intake's database now."""
    import pymongo
    s = settings()
    client: pymongo.MongoClient = pymongo.MongoClient(s.mongo_uri, directConnection=True)
    with client:
        return client[s.db_name("intake")]["cases"].estimated_document_count()


def costs(before, after, s, g, ac):
    """4. what one case costs: its primitives (counted by every process), their bare round trips
    (measured now), the floor they add up to and the suite's ratio to it."""
    if not after["processes"]:
        print("\n4. costs: no process announced its /metrics (var/observe/targets is empty)")
        return
    cost = bench_costs.per_case(before, after, s["ok"])
    mongo = bench_costs.mongo_round_trip()
    s3 = bench_costs.s3_round_trip()
    rtt = {"mongo": mongo, "s3": s3, "amqp_confirmed": ac["p50"] / 1000, "grpc": g["p50"] / 1e6}
    total, parts = bench_costs.floor(cost, rtt)
    print(f"\n4. what one case costs ({after['processes']} processes counted, per concluded case, the "
          "work after the conclusion included)")
    print(f"   mongo commands {cost['mongo']:.1f} (suite's own mean {1000 * cost['mongo_seconds'] / max(cost['mongo'], 1e-9):.2f} ms; "
          f"bare insert {1000 * mongo['insert']:.2f} ms, find {1000 * mongo['find']:.2f} ms)")
    print("     " + ", ".join(f"{c} {n:.1f}" for c, n in cost["by_command"].items()))
    print("     where (process, command, collection): " + ", ".join(
        f"{p} {n:.1f}" for p, n in list(cost["by_place"].items())[:16]))
    print(f"   events published {cost['published']:.1f}, messages handled {cost['handled']:.1f}, desk tasks "
          f"{cost['desk']:.1f} (bare confirmed publish→consume {ac['p50']:.2f} ms)")
    print(f"   gRPC calls {cost['grpc']:.1f} (uploads included; bare unary {g['p50']:.0f} µs)")
    print(f"   S3 operations {cost['s3']:.1f} (bare 20 KB put {1000 * s3['put']:.2f} ms, get {1000 * s3['get']:.2f} ms)")
    print(f"   floor {1000 * total:.0f} ms per case one after another (" +
          ", ".join(f"{k} {1000 * v:.0f} ms" for k, v in parts.items()) + ")")
    print(f"   the suite's p50 submit→concluded is {s['p50'] / (1000 * total):.1f}× the floor")


def cpu(before, after, s, reference=None):
    """5. where the CPU went: each process's (desks together) CPU time per concluded case, and what
    the total would take at a given rate; `reference`: bench_costs.reference_ms before and after the
    run, the machine's speed the figures were measured at."""
    per_case = bench_costs.cpu_per_case(before, after, max(1, s["ok"]))
    if not per_case:
        return
    total = sum(per_case.values())
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    print(f"\n5. CPU per concluded case (the work after the conclusion included): {1000 * total:.0f} ms in all, "
          f"so {cores} cores carry at most {cores / total:.1f} cases/s")
    print("   " + ", ".join(f"{name} {1000 * v:.0f} ms" for name, v in per_case.items() if v >= 0.0005))
    store = per_case.get("mongodb (SecantusDB)")
    ceiling = bench_costs.mongo_ceiling() if store else None
    if store and ceiling:
        print(f"   the MongoDB server alone: with two clients finding small documents by _id as fast as they can, it "
              f"served {ceiling['finds_per_s']:.0f} finds/s on {ceiling['server_cores']:.2f} cores (one process, one "
              f"interpreter lock); at the {1000 * store:.0f} ms of its CPU a case cost here, one core of it carries "
              f"at most {1 / store:.1f} cases/s")
    if reference:
        print(f"   the machine's speed: a reference piece of Python took {reference[0]:.0f} ms before the run and "
              f"{reference[1]:.0f} ms after; compare CPU figures only between runs where these are alike (a "
              "machine's speed can change within a run, so they do not convert one run's figures to another's)")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=None, help="cases to drive (default 40)")
    parser.add_argument("--concurrency", type=int, default=8, help="cases in flight, one thread each (default 8)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds a case may take from submit to conclusion (default 120)")
    parser.add_argument("--duration", type=float, default=None,
                        help="seconds to keep starting cases (at most --cases, which then defaults to 1,000,000)")
    parser.add_argument("--stored", type=int, default=0,
                        help="first make sure at least this many cases are stored (copies of a real one, "
                             "tools/bench_seed.py); the figures say how many were")
    args = parser.parse_args(argv)
    if args.cases is None:
        args.cases = 1_000_000 if args.duration else 40
    if args.cases < 1 or args.concurrency < 1 or args.timeout <= 0 or (args.duration is not None and args.duration <= 0):
        parser.error("--cases and --concurrency must be at least 1, --timeout and --duration positive")

    m = machine()
    print(f"machine: {m['cpu']}, {m['cores']} cores, {m['mem']}, load {m['load']}, Python {m['python']}")
    started = time.perf_counter()
    preflight()
    if args.stored:
        from tools import bench_seed
        bench_seed.ensure_stored(args.stored)
    m["stored"] = bench_seed_count()
    before = bench_costs.totals()
    reference = [bench_costs.reference_ms()]
    cpu_before = bench_costs.cpu_snapshot()
    s = run_suite(args.cases, args.concurrency, args.timeout, args.duration)
    if s["failed"] or not s["ok"]:
        print(f"\nFAILED: {len(s['failed'])} of {s['n']} cases did not conclude "
              f"(timeout {args.timeout:g} s); see above and var/log", file=sys.stderr)
        return 1
    settle()
    cpu_after = bench_costs.cpu_snapshot()
    after = bench_costs.totals()
    reference.append(bench_costs.reference_ms())
    g = run_grpc_echo(args.concurrency)
    a, ac = run_amqp(settings().amqp_uri)
    summary(m, s, g, a, ac, args.concurrency)
    costs(before, after, s, g, ac)
    cpu(cpu_before, cpu_after, s, reference)
    print(f"\n(bench took {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
