"""Local infrastructure on loopback: RabbitMQ (started if down, with the suite's vhost),
SecantusDB as the MongoDB server and SeaweedFS as the S3 server with credentials enforced.

    python -m infra.local up | down | status
"""
import json
import os
import shutil
import subprocess
import sys
import time
from urllib.parse import quote, unquote, urlparse, urlunparse

from infra import procs
from services.common.config import settings

BIN = os.path.dirname(sys.executable)


def _paths():
    s = settings()
    return s, os.path.join(s.infra_dir, "run"), os.path.join(s.infra_dir, "log"), os.path.join(s.infra_dir, "data")


def rabbitmqctl(*args, check=True):
    return subprocess.run(["rabbitmqctl", "-q", *args], check=check, capture_output=True, text=True, timeout=120)


def ensure_rabbitmq(timeout=120):
    uri = urlparse(settings().amqp_uri)
    host, port = uri.hostname or "127.0.0.1", uri.port or 5672
    if not procs.port_open(host, port):
        if shutil.which("rabbitmq-server") is None:
            raise RuntimeError("RabbitMQ is not installed: apt-get install rabbitmq-server")
        print("starting RabbitMQ (rabbitmq-server -detached)")
        subprocess.run(["rabbitmq-server", "-detached"], check=False)
        procs.wait_for_port(host, port, timeout, "RabbitMQ")
        rabbitmqctl("await_startup", check=False)


RABBITMQ_PROMETHEUS_PORT = 15692


def ensure_prometheus_plugin(host="127.0.0.1", port=RABBITMQ_PROMETHEUS_PORT, timeout=30):
    """RabbitMQ's own metrics (the rabbitmq_prometheus plugin: http://127.0.0.1:15692/metrics, per
    queue under /metrics/per-object) on the machine's node, enabled while it runs: no restart, and
    nothing at all when its port answers already. Its listener is put on loopback first (the plugin's
    default is every interface); the setting lasts as long as the node runs. True when enabled now."""
    if procs.port_open(host, port):
        return False
    rabbitmqctl("eval", f'application:set_env(rabbitmq_prometheus, tcp_config, [{{ip, "{host}"}}, {{port, {port}}}], '
                        "[{persistent, true}]).")
    done = subprocess.run(["rabbitmq-plugins", "-q", "enable", "rabbitmq_prometheus"], capture_output=True,
                          text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmq-plugins enable rabbitmq_prometheus failed: {(done.stderr or done.stdout)[-500:]}")
    procs.wait_for_port(host, port, timeout, "RabbitMQ's Prometheus endpoint (rabbitmq_prometheus)")
    return True


def ensure_vhost(vhost, user="guest"):
    """The vhost with the site's topology (infra/topology.yaml: users, permissions, exchanges, desk
    queues); `user` (the local administrator, for tools and tests) may do anything in it."""
    from infra import topology
    rabbitmqctl("add_vhost", vhost, check=False)
    rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
    topology.apply(vhost=vhost)


def delete_vhost(vhost):
    rabbitmqctl("delete_vhost", vhost, check=False)


def vhost_of(amqp_uri):
    path = urlparse(amqp_uri).path.lstrip("/")
    return path or "/"


def s3_identities(path, access_key, secret_key):
    with open(path, "w") as fh:
        json.dump({"identities": [{"name": "onething", "credentials": [
            {"accessKey": access_key, "secretKey": secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}, fh)


def s3_logins(bucket_prefix=None):
    """{service: (access key, secret key)}: each service's own S3 identity, limited to its buckets
    (registry: Service.buckets) under this deployment's bucket prefix. A service without buckets
    gets a key the S3 server does not know: it has no S3 identity at all."""
    from infra import topology
    from services.common.registry import SERVICES
    prefix = settings().bucket_prefix if bucket_prefix is None else bucket_prefix
    keys = {svc.name: f"{prefix}{svc.name}" for svc in SERVICES}
    secret = topology.passwords([f"s3:{key}" for svc, key in keys.items() if _service(svc).buckets])
    return {name: (key, secret.get(f"s3:{key}", "")) if _service(name).buckets else (f"none-{key}", "none")
            for name, key in keys.items()}


def _service(name):
    from services.common.registry import service
    return service(name)


def ensure_s3_identities(bucket_prefix=None):
    """The buckets of this deployment (made by the local administrator) and each service's identity
    limited to its own (`weed shell s3.configure`, which the S3 gateway applies at once). Repeatable."""
    from services.common.blobs import Blobs
    from services.common.registry import SERVICES
    s = settings()
    prefix = s.bucket_prefix if bucket_prefix is None else bucket_prefix
    admin = Blobs(bucket_prefix=prefix)
    for bucket in sorted({b for svc in SERVICES for b, _ in svc.buckets}):
        admin.ensure_bucket(bucket)
    commands = []
    for name, (key, secret) in s3_logins(prefix).items():
        grants = _service(name).buckets
        if grants:
            actions = ",".join(f"{a}:{prefix}{bucket}" for bucket, allowed in grants for a in allowed)
            commands.append(f"s3.configure -user={key} -access_key={key} -secret_key={secret} "
                            f"-actions={actions} -apply")
    done = subprocess.run([os.path.join(BIN, "weed"), "shell", f"-master=127.0.0.1:{s.weed_port_base}"],
                          input="\n".join(commands) + "\n", capture_output=True, text=True, timeout=60)
    if done.returncode != 0 or "error" in done.stdout.lower():
        raise RuntimeError(f"S3 identities not made: {(done.stderr or done.stdout)[-500:]}")


def up():
    s, _run_dir, _log_dir, _data_dir = _paths()
    ensure_rabbitmq()
    ensure_vhost(vhost_of(s.amqp_uri))
    ensure_prometheus_plugin()
    from services.common import auth
    auth.ensure_keys()

    start_mongo()
    start_s3()
    print(f"infrastructure up: AMQP {_masked(s.amqp_uri)}  MongoDB {_masked(s.mongo_uri)}  S3 http://{s.s3_endpoint}")


def _ours_or_free(name, host, port):
    """Refuse to start `name` on a port something else holds: the new server would fail to bind
    while the old one answered every readiness check, and its PID file would name a dead process
    (so `down` would never stop the one that runs)."""
    _, run_dir, _, _ = _paths()
    if procs.read_pid(os.path.join(run_dir, f"{name}.pid")) is not None:
        return
    deadline = time.time() + 30  # a server just stopped may hold its port a moment longer
    while procs.port_open(host, port):
        if time.time() > deadline:
            raise RuntimeError(f"{host}:{port} is held by a process this checkout did not start "
                               f"({run_dir}/{name}.pid names none); stop that process first")
        time.sleep(0.5)


def _masked(uri):
    parts = urlparse(uri)
    if not parts.password:
        return uri
    return urlunparse(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))


def start_mongo():
    """SecantusDB with authentication on. Its users are made before auth is on (that is how the
    server takes them): on the first start on a data folder it runs once without auth, the local
    administrator of ONETHING_MONGO_URI is made, and it starts again with --auth."""
    s, run_dir, log_dir, data_dir = _paths()
    mongo = urlparse(s.mongo_uri)
    mhost, mport = mongo.hostname, mongo.port or 27017
    folder = os.path.join(data_dir, "mongo")
    os.makedirs(folder, exist_ok=True)
    _ours_or_free("mongo", mhost, mport)
    marker = os.path.join(folder, ".administrator")
    if not os.path.exists(marker):
        _run_mongo(mhost, mport, folder, run_dir, log_dir, auth=False)
        _make_administrator(mhost, mport, mongo)
        procs.stop("mongo", run_dir, timeout=30)
        with open(marker, "w") as fh:
            fh.write(f"{unquote(mongo.username or '')}\n")
    _run_mongo(mhost, mport, folder, run_dir, log_dir, auth=True)


def _run_mongo(host, port, folder, run_dir, log_dir, auth):
    procs.start("mongo", [os.path.join(BIN, "secantusd-py"), "--host", host, "--port", str(port),
                          "--storage-path", folder, "--log-level", "WARNING",
                          # standalone: writes stay flat as data grows (the replica-set mode slows
                          # down per write); nothing uses change streams or transactions
                          "--standalone", *(["--auth"] if auth else [])],
                run_dir, log_dir)
    procs.wait_for_port(host, port, 60, "SecantusDB")


def _make_administrator(host, port, mongo):
    import pymongo
    if not mongo.username or not mongo.password:
        raise RuntimeError("ONETHING_MONGO_URI names no user and password: the local administrator needs both")
    client: pymongo.MongoClient[dict] = pymongo.MongoClient(f"mongodb://{host}:{port}", serverSelectionTimeoutMS=30000,
                                                            directConnection=True)
    with client:
        try:
            client["admin"].command("createUser", unquote(mongo.username), pwd=unquote(mongo.password),
                                    roles=["root"])
        except pymongo.errors.OperationFailure as exc:
            if "already exists" not in str(exc):
                raise


def mongo_logins(db_prefix=None):
    """{service: MongoDB URI}: each service's own database user, who may read and write its own
    database and nothing else (the user is named after that database)."""
    from infra import topology
    from services.common.registry import NAMES
    s = settings()
    prefix = s.db_prefix if db_prefix is None else db_prefix
    users = {name: f"{prefix}{name}" for name in NAMES}
    secret = topology.passwords([f"mongo:{u}" for u in users.values()])
    parts = urlparse(s.mongo_uri)
    where = (parts.hostname or "127.0.0.1") + (f":{parts.port}" if parts.port else "")
    return {name: urlunparse(parts._replace(netloc=f"{quote(u, safe='')}:{quote(secret[f'mongo:{u}'], safe='')}@{where}"))
            for name, u in users.items()}


def ensure_mongo_users(db_prefix=None):
    """Each service's database user (mongo_logins), made or given its password again by the local
    administrator. Repeatable."""
    import pymongo
    s = settings()
    admin: pymongo.MongoClient[dict] = pymongo.MongoClient(s.mongo_uri, serverSelectionTimeoutMS=s.mongo_timeout_ms,
                                                           directConnection=True)
    with admin:
        for uri in mongo_logins(db_prefix).values():
            parts = urlparse(uri)
            user, password = unquote(parts.username), unquote(parts.password)
            role = [{"role": "readWrite", "db": user}]
            try:
                admin["admin"].command("createUser", user, pwd=password, roles=role)
            except pymongo.errors.OperationFailure as exc:
                if "already exists" not in str(exc):
                    raise
                admin["admin"].command("updateUser", user, pwd=password, roles=role)


def drop_mongo_users(db_prefix):
    """The database users of a prefix (a test run's), when its databases are dropped."""
    import pymongo
    s = settings()
    admin: pymongo.MongoClient[dict] = pymongo.MongoClient(s.mongo_uri, serverSelectionTimeoutMS=s.mongo_timeout_ms,
                                                           directConnection=True)
    with admin:
        for uri in mongo_logins(db_prefix).values():
            try:
                admin["admin"].command("dropUser", unquote(urlparse(uri).username))
            except pymongo.errors.OperationFailure:
                pass  # never made


def start_s3():
    s, run_dir, log_dir, data_dir = _paths()
    shost, sport = s.s3_endpoint.split(":")
    weed_dir = os.path.join(data_dir, "s3")
    os.makedirs(weed_dir, exist_ok=True)
    conf = os.path.join(weed_dir, "identities.json")
    s3_identities(conf, s.s3_access_key, s.s3_secret_key)
    _ours_or_free("s3", shost, int(sport))
    base = settings().weed_port_base
    procs.start("s3", [os.path.join(BIN, "weed"), "server", "-ip", shost, "-ip.bind", shost,
                       "-metricsIp", shost, "-dir", weed_dir,
                       "-master.port", str(base), "-volume.port", str(base + 1),
                       "-filer.port", str(base + 2), "-s3", "-s3.port", sport, "-s3.config", conf,
                       "-volume.max", "0", "-master.volumeSizeLimitMB", "256", "-master.telemetry=false"],
                run_dir, log_dir)
    procs.wait_for_port(shost, int(sport), 90, "SeaweedFS S3")
    _wait_s3_ready(s)


def stop_server(name):
    """Stop the local MongoDB (`mongo`) or S3 (`s3`) server by its PID and wait."""
    _, run_dir, _, _ = _paths()
    return procs.stop(name, run_dir, timeout=30)


def restart_server(name):
    """What an operator's restart of one server looks like: stopped, then started on the same data."""
    stop_server(name)
    {"mongo": start_mongo, "s3": start_s3}[name]()


def restart_rabbitmq(pause=0.0):
    """Stop and start the RabbitMQ application (every connection drops; durable queues and
    persistent messages stay)."""
    rabbitmqctl("stop_app")
    time.sleep(pause)
    rabbitmqctl("start_app")
    rabbitmqctl("await_startup", check=False)


def _wait_s3_ready(s, timeout=90):
    from services.common.blobs import Blobs
    blobs = Blobs()
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            for bucket in ("materials", "results"):
                blobs.ensure_bucket(bucket)
            blobs.put("results", ".ready", b"ok")
            return
        except Exception as exc:  # volume server still registering
            last = exc
            time.sleep(0.5)
    raise RuntimeError(f"S3 server not ready: {last}")


def down():
    _, run_dir, _, _ = _paths()
    for name in ("s3", "mongo"):
        pid = procs.stop(name, run_dir, timeout=30)
        if pid:
            print(f"stopped {name} (pid {pid})")


def status():
    _, run_dir, _, _ = _paths()
    for name in ("mongo", "s3"):
        pid = procs.read_pid(os.path.join(run_dir, f"{name}.pid"))
        print(f"{name}: {'running pid %d' % pid if pid else 'stopped'}")


if __name__ == "__main__":
    {"up": up, "down": down, "status": status}[sys.argv[1] if len(sys.argv) > 1 else "status"]()
