"""What one case costs, for tools/bench.py: the primitives every process of the running suite counts
on its /metrics (MongoDB commands, S3 operations, events published and handled, gRPC calls), read
from every target in var/observe/targets before and after a run; the round trip of each primitive,
measured bare in the same run; and the floor they add up to.

The floor is the time one case's primitives take one after another at their bare round trips: what a
case would cost if the suite added nothing of its own. The suite's ratio is its p50 latency over it."""
import glob
import json
import math
import os
import time
import urllib.request
import uuid

from prometheus_client.parser import text_string_to_metric_families

from services.common.config import settings

ROUND_TRIPS = 300


def targets(var_dir=None):
    """{process: "host:port"} of every process that announced its ops endpoint."""
    found = {}
    for path in glob.glob(os.path.join(var_dir or settings().var_dir, "observe", "targets", "*.json")):
        try:
            with open(path, encoding="utf-8") as fh:
                entry = json.load(fh)[0]
            found[entry["labels"]["process"]] = entry["targets"][0]
        except (OSError, ValueError, KeyError, IndexError):
            continue
    return found


def _scrape(address):
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as resp:
        return resp.read().decode()


def totals(var_dir=None):
    """Counts summed over every process: mongo commands (and the seconds they took), S3 operations,
    events published, handler messages, desk tasks, gRPC calls answered."""
    out = {"mongo": 0.0, "mongo_seconds": 0.0, "s3": 0.0, "published": 0.0, "handled": 0.0, "desk": 0.0,
           "grpc": 0.0, "processes": 0}
    by_command: dict[str, float] = {}
    by_place: dict[str, float] = {}  # "<process> <command> <collection>"
    for process, address in targets(var_dir).items():
        try:
            text = _scrape(address)
        except OSError:
            continue
        out["processes"] += 1
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                name, value = sample.name, sample.value
                if name == "onething_mongo_command_seconds_count":
                    out["mongo"] += value
                    command = sample.labels.get("command", "?")
                    by_command[command] = by_command.get(command, 0.0) + value
                    place = f"{process} {command} {sample.labels.get('collection') or '-'}"
                    by_place[place] = by_place.get(place, 0.0) + value
                elif name == "onething_mongo_command_seconds_sum":
                    out["mongo_seconds"] += value
                elif name == "onething_s3_operations_total":
                    out["s3"] += value
                elif name == "onething_events_published_total":
                    out["published"] += value
                elif name == "onething_handler_messages_total":
                    out["handled"] += value
                elif name == "onething_desk_tasks_total":
                    out["desk"] += value
                elif name == "grpc_server_handled_total":
                    out["grpc"] += value
    out["by_command"] = by_command  # type: ignore[assignment]
    out["by_place"] = by_place  # type: ignore[assignment]
    return out


def per_case(before, after, cases):
    """What the run added, per case."""
    cost = {k: (after[k] - before[k]) / cases for k in ("mongo", "mongo_seconds", "s3", "published", "handled",
                                                         "desk", "grpc")}
    commands = {c: (n - before["by_command"].get(c, 0.0)) / cases for c, n in after["by_command"].items()}
    cost["by_command"] = {c: n for c, n in sorted(commands.items(), key=lambda kv: -kv[1]) if n > 0.05}
    places = {p: (n - before.get("by_place", {}).get(p, 0.0)) / cases for p, n in after.get("by_place", {}).items()}
    cost["by_place"] = {p: n for p, n in sorted(places.items(), key=lambda kv: -kv[1]) if n > 0.05}
    return cost


def _p50(values):
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) / 2) - 1)]


def mongo_round_trip(n=ROUND_TRIPS):
    """p50 seconds of one small insert and of one find by _id, on a scratch collection."""
    import pymongo
    s = settings()
    client: pymongo.MongoClient = pymongo.MongoClient(s.mongo_uri, directConnection=True)
    with client:
        coll = client[f"{s.db_prefix}bench_scratch"]["round_trips"]
        inserts, finds = [], []
        for i in range(n):
            doc = {"_id": uuid.uuid4().hex, "n": i, "body": "x" * 1500}
            t0 = time.perf_counter()
            coll.insert_one(doc)
            t1 = time.perf_counter()
            coll.find_one({"_id": doc["_id"]})
            t2 = time.perf_counter()
            inserts.append(t1 - t0)
            finds.append(t2 - t1)
        client.drop_database(f"{s.db_prefix}bench_scratch")
    return {"insert": _p50(inserts), "find": _p50(finds)}


def _hammer(uri, database, seconds, counts):
    """One client process of mongo_ceiling: finds by _id as fast as it can for `seconds`."""
    import pymongo
    client: pymongo.MongoClient = pymongo.MongoClient(uri, directConnection=True)
    with client:
        coll, done, end = client[database]["ceiling"], 0, time.monotonic() + seconds
        while time.monotonic() < end:
            coll.find_one({"_id": done % 100})
            done += 1
    counts.put(done)


def mongo_ceiling(seconds=3.0, clients=2, var_dir=None):
    """How much the MongoDB server serves when nothing holds it back: `clients` processes find small
    documents by _id for `seconds`; {"finds_per_s", "server_cores"} (the server's CPU over the wall
    time: the local server is one Python process, so about one core at most), or None when its
    process is not known (var/run/mongo.pid)."""
    import multiprocessing

    import pymongo
    pid = _suite_pids(var_dir).get("mongodb (SecantusDB)")
    if pid is None:
        return None
    s = settings()
    database = f"{s.db_prefix}bench_scratch"
    client: pymongo.MongoClient = pymongo.MongoClient(s.mongo_uri, directConnection=True)
    with client:
        client[database]["ceiling"].insert_many([{"_id": i, "body": "x" * 1000} for i in range(100)])
        try:
            counts: multiprocessing.Queue = multiprocessing.Queue()
            workers = [multiprocessing.Process(target=_hammer, args=(s.mongo_uri, database, seconds, counts))
                       for _ in range(clients)]
            cpu0, t0 = _process_cpu_seconds(pid), time.monotonic()
            for w in workers:
                w.start()
            done = sum(counts.get(timeout=seconds + 60) for _ in workers)
            for w in workers:
                w.join()
            wall, cpu1 = time.monotonic() - t0, _process_cpu_seconds(pid)
        finally:
            client.drop_database(database)
    if cpu0 is None or cpu1 is None:
        return None
    return {"finds_per_s": done / wall, "server_cores": (cpu1 - cpu0) / wall}


def s3_round_trip(n=100):
    """p50 seconds of one 20 KB put and one get, in a scratch bucket."""
    import io

    from services.common.blobs import Blobs
    blobs = Blobs()
    bucket = f"bench-scratch-{uuid.uuid4().hex[:8]}"
    blobs.client.make_bucket(blobs.bucket(bucket))
    data = os.urandom(20 * 1024)
    puts, gets = [], []
    try:
        for i in range(n):
            t0 = time.perf_counter()
            blobs.client.put_object(blobs.bucket(bucket), f"k{i}", io.BytesIO(data), len(data))
            t1 = time.perf_counter()
            resp = blobs.client.get_object(blobs.bucket(bucket), f"k{i}")
            resp.read()
            resp.close()
            resp.release_conn()
            t2 = time.perf_counter()
            puts.append(t1 - t0)
            gets.append(t2 - t1)
    finally:
        for i in range(n):
            blobs.client.remove_object(blobs.bucket(bucket), f"k{i}")
        blobs.client.remove_bucket(blobs.bucket(bucket))
    return {"put": _p50(puts), "get": _p50(gets)}


def floor(cost, rtt):
    """Seconds one case's primitives take one after another at their bare round trips."""
    mongo = (rtt["mongo"]["insert"] + rtt["mongo"]["find"]) / 2
    s3 = (rtt["s3"]["put"] + rtt["s3"]["get"]) / 2
    parts = {"mongo": cost["mongo"] * mongo, "s3": cost["s3"] * s3,
             "events": cost["published"] * rtt["amqp_confirmed"], "grpc": cost["grpc"] * rtt["grpc"]}
    return sum(parts.values()), parts


# CPU ---------------------------------------------------------------------------------------------
def _process_cpu_seconds(pid):
    """User + system CPU seconds of a process so far, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _suite_pids(var_dir=None):
    """{name: pid}: the suite's supervised children (var/run/<name>.child.pid), the local MongoDB
    and S3 servers (var/run/mongo.pid, s3.pid) and RabbitMQ's Erlang VM."""
    run_dir = os.path.join(var_dir or settings().var_dir, "run")
    found = {}
    for path in glob.glob(os.path.join(run_dir, "*.pid")):
        name = os.path.basename(path)
        if name.endswith(".child.pid"):
            name = name[:-len(".child.pid")]
        elif name in ("mongo.pid", "s3.pid"):
            name = {"mongo.pid": "mongodb (SecantusDB)", "s3.pid": "s3 (SeaweedFS)"}[name]
        else:
            continue
        try:
            with open(path, encoding="utf-8") as fh:
                found[name] = int(fh.read().strip())
        except (OSError, ValueError):
            continue
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/comm", encoding="utf-8") as fh:
                    if fh.read().strip() == "beam.smp":
                        found["rabbitmq"] = int(pid)
            except OSError:
                continue
    return found


def cpu_snapshot(var_dir=None):
    """{name: (pid, CPU seconds)} of every process _suite_pids finds."""
    out = {}
    for name, pid in _suite_pids(var_dir).items():
        seconds = _process_cpu_seconds(pid)
        if seconds is not None:
            out[name] = (pid, seconds)
    return out


def cpu_per_case(before, after, cases):
    """{group: CPU seconds per case}, processes grouped by what they are (desks together), largest
    first; a process that restarted in between (another pid) is left out."""
    groups: dict[str, float] = {}
    for name, (pid, seconds) in after.items():
        if name not in before or before[name][0] != pid:
            continue
        group = "desks" if name.startswith("desk-") else name
        groups[group] = groups.get(group, 0.0) + (seconds - before[name][1]) / cases
    return dict(sorted(groups.items(), key=lambda kv: -kv[1]))


def reference_ms(rounds=9):
    """The machine's speed at the moment: the best of `rounds` timings of one fixed piece of plain
    Python work (a loop, dicts, JSON), in ms of CPU. Machines of one kind differ, and one machine's
    speed drifts with its neighbours; CPU figures compare only beside their reference."""
    best = float("inf")
    for _ in range(rounds):
        t0 = time.process_time()
        total = 0
        for i in range(200_000):
            total += i * i % 7
        doc = {"case_no": "440100-20261128-000001", "items": [{"code": f"I{i}", "n": i} for i in range(50)]}
        for _ in range(300):
            json.loads(json.dumps(doc))
        best = min(best, time.process_time() - t0)
    return 1000 * best
