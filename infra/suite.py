"""The whole suite as separate processes: six gRPC apis, five nameko workers, and one desk per
department and region. PID files and logs under var/; stopped by PID.

    python -m infra.suite up | down | status
"""
import importlib
import os
import sys
import time

from infra import procs
from services.common.config import DEFAULT_PORTS, ROOT, settings
from services.common.registry import DESK, SERVICES, broker_user, desk_broker_user

BIN = os.path.dirname(sys.executable)
NAMEKO_CONFIG = os.path.join(ROOT, "infra", "nameko.yaml")
WORKERS = {s.name: s.worker for s in SERVICES}


def desks():
    """(department, region) pairs: ONETHING_DESKS="wsjk:440100,gaj:440100", or by default every
    department that implements an item of a seeded package, in the suite's region."""
    from infra.topology import default_desks
    return default_desks(settings().region)


def logins():
    """Each service's and desk's own AMQP URI (its broker user, infra/topology.py)."""
    from infra.topology import process_uris
    return process_uris(desks())


def process_table():
    """name -> (argv, extra environment)."""
    from infra.local import mongo_logins, s3_logins
    table: dict = {}
    uris, s3, databases = logins(), s3_logins(), mongo_logins()

    def own(service):  # the service's own broker user, S3 identity and database user
        return {"ONETHING_AMQP_URI": uris[broker_user(service)], "ONETHING_S3_ACCESS_KEY": s3[service][0],
                "ONETHING_S3_SECRET_KEY": s3[service][1], "ONETHING_MONGO_URI": databases[service]}
    for service in DEFAULT_PORTS:
        table[f"{service}-api"] = ([sys.executable, "-m", f"services.{service}.api"], own(service))
    nameko = [os.path.join(BIN, "nameko"), "run", "--config", NAMEKO_CONFIG]
    for service, path in WORKERS.items():
        table[f"{service}-worker"] = ([*nameko, path], own(service))
    for department, region in desks():
        table[f"desk-{department}-{region}"] = desk_process(department, region, uris)
    for name, (_, env) in table.items():  # its metrics' `process` label and its file_sd target file
        env.setdefault("ONETHING_PROCESS_NAME", name)
    return table


def desk_process(department, region, uris=None):
    """(argv, extra environment) of a department's desk: `python -m services.desk` as the desk's own
    broker user. The local suite decides every item by the demo rule (materials_present) unless
    ONETHING_DESK_RULE says otherwise; a site's operators use services/desk/data/rules.yaml."""
    uris = uris if uris is not None else logins()
    return [sys.executable, "-m", DESK], {
        "ONETHING_DESK_DEPARTMENT": department, "ONETHING_DESK_REGION": region,
        "ONETHING_DESK_RULE": settings().desk_rule or "materials_present",
        "ONETHING_AMQP_URI": uris[desk_broker_user(department, region)],
        "ONETHING_PROCESS_NAME": f"desk-{department}-{region}"}


def _dirs():
    s = settings()
    return os.path.join(s.var_dir, "run"), os.path.join(s.var_dir, "log")


def supervised(name, argv, run_dir, log_dir):
    """`argv` kept running by infra.supervise: restarted with backoff whenever it dies, its output
    in <log_dir>/<name>.log, rotated (ONETHING_LOG_FILE_BYTES, ONETHING_LOG_FILES_KEPT)."""
    return [sys.executable, "-m", "infra.supervise", name, run_dir, "--log", os.path.join(log_dir, f"{name}.log"),
            "--", *argv]


def start(name, extra_env=None):
    argv, env = process_table()[name]
    run_dir, log_dir = _dirs()
    return procs.start(name, supervised(name, argv, run_dir, log_dir), run_dir, log_dir,
                       env={**env, **(extra_env or {})}, cwd=ROOT)


def start_desk_replica(department, region, replica, extra_env=None):
    """One more process of a department's desk: it consumes from the same queue, so the two share
    the department's tasks."""
    name = f"desk-{department}-{region}-{replica}"
    run_dir, log_dir = _dirs()
    argv, env = desk_process(department, region)
    env["ONETHING_PROCESS_NAME"] = name  # its own target file beside the first process's
    procs.start(name, supervised(name, argv, run_dir, log_dir), run_dir, log_dir, env={**env, **(extra_env or {})}, cwd=ROOT)
    return name


def stop(name, kill=False):
    import signal
    run_dir, _ = _dirs()
    return procs.stop(name, run_dir, timeout=20, sig=signal.SIGKILL if kill else signal.SIGTERM)


def pid(name):
    """The supervisor's PID (stopping it stops the process for good)."""
    run_dir, _ = _dirs()
    return procs.read_pid(os.path.join(run_dir, f"{name}.pid"))


def child_pid(name):
    """The PID of the process itself (killing it makes its supervisor start it again)."""
    run_dir, _ = _dirs()
    return procs.read_pid(os.path.join(run_dir, f"{name}.child.pid"))


def kill_child(name, sig=None):
    """Kill the process but not its supervisor, as a crash would; returns the PID killed."""
    import signal
    p = child_pid(name)
    if p:
        try:
            os.kill(p, sig or signal.SIGKILL)
        except ProcessLookupError:
            return None
    return p


# readiness -----------------------------------------------------------------------------------
def _service_queues(cls):
    """Queue names nameko declares for a service class's event handlers, queue consumers and RPC
    methods."""
    from nameko.events import EventHandler
    from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR
    from nameko.messaging import Consumer
    from nameko.rpc import Rpc
    queues = set()
    for attr in dir(cls):
        for ext in getattr(getattr(cls, attr), ENTRYPOINT_EXTENSIONS_ATTR, ()):
            if isinstance(ext, EventHandler):
                queues.add(f"evt-{ext.source_service}-{ext.event_type}--{cls.name}.{attr}")
            elif isinstance(ext, Consumer):  # a named queue (joint_review's desk opinions)
                queues.add(ext.queue.name)
            elif isinstance(ext, Rpc):
                queues.add(f"rpc-{cls.name}")
    return queues


def expected_queues(names=None):
    from services.common.registry import desk_queue
    queues = {}
    for name, (argv, env) in process_table().items():
        if names is not None and name not in names:
            continue
        if name.startswith("desk-"):  # a desk consumes its own queue, which the topology declares
            queues[name] = {desk_queue(env["ONETHING_DESK_DEPARTMENT"], env["ONETHING_DESK_REGION"])}
            continue
        if name.endswith("-worker"):
            module, attr = argv[-1].split(":")
            cls = getattr(importlib.import_module(module), attr)
        else:
            continue
        queues[name] = _service_queues(cls)
    return queues


def wait_consuming(names=None, timeout=180):
    """Wait until every worker and desk queue has a consumer."""
    from kombu import Connection
    pending = {q for qs in expected_queues(names).values() for q in qs}
    deadline = time.time() + timeout
    with Connection(settings().amqp_uri) as conn:
        while pending and time.time() < deadline:
            for queue in list(pending):
                channel = conn.channel()
                try:
                    _, _, consumers = channel.queue_declare(queue=queue, passive=True)
                    if consumers:
                        pending.discard(queue)
                except Exception:
                    pass  # not declared yet
                finally:
                    try:
                        channel.close()
                    except Exception:
                        pass
            if pending:
                time.sleep(0.3)
    if pending:
        raise RuntimeError(f"no consumer on {sorted(pending)} after {timeout}s; see var/log")


def wait_serving(timeout=180):
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    s = settings()
    deadline = time.time() + timeout
    for service in DEFAULT_PORTS:
        while True:
            try:
                with grpc.insecure_channel(s.address(service)) as ch:
                    status = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=2).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    break
            except grpc.RpcError:
                pass
            if time.time() > deadline:
                raise RuntimeError(f"{service} api is not SERVING on {s.address(service)}; see var/log/{service}-api.log")
            time.sleep(0.3)


def up():
    from infra.local import ensure_mongo_users, ensure_s3_identities
    ensure_s3_identities()
    ensure_mongo_users()
    started = []
    for name in process_table():
        _, fresh = start(name)
        if fresh:
            started.append(name)
    wait_serving()
    wait_consuming()
    print(f"suite up: {len(process_table())} processes ({len(started)} started now); logs in {_dirs()[1]}")


def down():
    """Every process at once (each stops gracefully in a few seconds; one after another took over
    a minute for 32)."""
    run_dir, _ = _dirs()
    names = list(process_table())
    names += [n[:-4] for n in os.listdir(run_dir) if n.endswith(".pid") and n.startswith("desk-")
              and not n.endswith(".child.pid") and n[:-4] not in names] if os.path.isdir(run_dir) else []
    for name in procs.stop_many(names, run_dir, timeout=30):
        print(f"stopped {name}")


def status():
    for name in process_table():
        p = pid(name)
        c = child_pid(name)
        print(f"{name:28s} {'running pid %d (supervisor %d)' % (c or 0, p) if p else 'stopped'}")


def main(argv):
    commands = {"up": up, "down": down, "status": status}
    command = argv[0] if argv else "status"
    if command not in commands or len(argv) > 1:
        print(f"usage: python -m infra.suite {' | '.join(commands)}   (status when none is named)",
              file=sys.stderr if command not in ("-h", "--help") else sys.stdout)
        return 0 if command in ("-h", "--help") else 2
    commands[command]()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
