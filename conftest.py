"""Test set-up shared by every test folder.

Unit tests need little: the worker entrypoint tests take `green_waiting` (nameko's test waits made
green, without eventlet's monkey patch). Integration and end-to-end tests get a run of their own on
the real local servers: a fresh RabbitMQ vhost, database prefix, bucket prefix and var/ folder, so
runs never see each other's queues, documents or objects, and a suite the developer left running
is not touched."""
import os
import shutil
import tempfile
import threading
import uuid

import pytest

from services.common.registry import NAMES

RUN = uuid.uuid4().hex[:8]
# api ports of the suite an e2e run starts; ONETHING_TEST_PORT_BASE moves them (two runs at once).
# Below Linux's ephemeral range (32768–60999), whose ports the suite's own connections take as
# their local ends: an api bound there failed once when a connection held its port.
_BASE = int(os.environ.get("ONETHING_TEST_PORT_BASE", "21051"))
E2E_PORTS = {name: _BASE + i for i, name in enumerate(NAMES)}


@pytest.fixture
def green_waiting(monkeypatch):
    """nameko's entrypoint_hook and entrypoint_waiter wait on a threading.Semaphore, which assumes
    eventlet's monkey patch (`nameko test` applies it). The unit tests run under plain pytest and
    patch nothing process-wide, so for one test that wait is eventlet's green semaphore: the hub
    then runs the worker while the test waits."""
    import eventlet.semaphore
    from nameko.testing import waiting
    monkeypatch.setattr(waiting, "Semaphore", eventlet.semaphore.Semaphore)


@pytest.fixture(scope="session")
def test_env():
    from infra import local
    from services.common.config import settings

    base = settings()
    var_dir = tempfile.mkdtemp(prefix=f"onething-test-{RUN}-")
    vhost = f"onething_test_{RUN}"
    env = {
        "ONETHING_AMQP_URI": base.amqp_uri.rsplit("/", 1)[0] + "/" + vhost,
        "ONETHING_DB_PREFIX": f"t{RUN}_",
        "ONETHING_BUCKET_PREFIX": f"t{RUN}-",
        "ONETHING_VAR_DIR": var_dir,
        "ONETHING_INFRA_DIR": base.infra_dir,
        # the outbox sweep looks every second for entries a dead writer left 3 s ago
        "ONETHING_SWEEP_INTERVAL_SECONDS": "1",
        "ONETHING_SWEEP_GRACE_SECONDS": "3",
    }
    for service, port in E2E_PORTS.items():
        env[f"ONETHING_{service.upper()}_PORT"] = str(port)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    local.up()
    local.ensure_vhost(vhost)
    yield env
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    local.delete_vhost(vhost)
    _drop_databases(base.mongo_uri, f"t{RUN}_")
    local.drop_mongo_users(f"t{RUN}_")
    _drop_buckets(f"t{RUN}-")
    if os.environ.get("ONETHING_KEEP_TEST_VAR") != "1":
        shutil.rmtree(var_dir, ignore_errors=True)


@pytest.fixture
def own_database(test_env):
    """`own_database("intake")` connects that service's store to a database of its own for one test
    and drops it afterwards. A store's contract tests write made-up aggregates and leave events
    pending on purpose; in this run's shared databases the suite the e2e tests start would list
    them, sweep them and act on them."""
    import mongoengine

    from services.common import mongo
    from services.common.config import settings
    used = []

    def use(service):
        name = f"{settings().db_name(service)}_contract"
        mongo.disconnect(service)
        mongo.connect(service, db_name=name)
        used.append((service, name))
        return name

    yield use
    from services.common import write_behind
    write_behind.flush()  # what waits for a database about to go
    for service, name in used:
        mongoengine.get_connection(service).drop_database(name)
        mongo.disconnect(service)


def _drop_databases(uri, prefix):
    import pymongo
    with pymongo.MongoClient(uri) as client:
        for name in client.list_database_names():
            if name.startswith(prefix):
                client.drop_database(name)


def _drop_buckets(prefix):
    from services.common.blobs import Blobs
    client = Blobs(bucket_prefix="").client
    for bucket in client.list_buckets():
        if bucket.name.startswith(prefix):
            for obj in client.list_objects(bucket.name, recursive=True):
                client.remove_object(bucket.name, obj.object_name)
            client.remove_bucket(bucket.name)


class EventProbe:
    """Listens to every service's event exchange and keeps what passes: (routing key, payload,
    headers), in arrival order."""

    EXCHANGES = NAMES

    def __init__(self, amqp_uri):
        from kombu import Connection, Queue

        from services.common.bus import event_exchange
        self.events = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._conn = Connection(amqp_uri)
        self._queue = Queue(f"probe-{uuid.uuid4().hex[:8]}", exclusive=True, auto_delete=True,
                            bindings=[__import__("kombu").binding(event_exchange(s), routing_key="#")
                                      for s in self.EXCHANGES])
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(20), "event probe could not start"

    def _run(self):
        with self._conn.Consumer([self._queue], callbacks=[self._on_message], accept=["json"]):
            self._ready.set()
            while not self._stop.is_set():
                try:
                    self._conn.drain_events(timeout=0.2)
                except Exception:  # socket.timeout between messages
                    pass

    def _on_message(self, body, message):
        with self._lock:
            self.events.append((message.delivery_info["routing_key"], body, dict(message.headers or {})))
        message.ack()

    def for_case(self, case_no):
        with self._lock:
            return [(k, b) for k, b, h in self.events if h.get("case_no") == case_no or b.get("case_no") == case_no]

    def keys(self):
        with self._lock:
            return [k for k, _, _ in self.events]

    def close(self):
        self._stop.set()
        self._thread.join(5)
        self._conn.release()


@pytest.fixture
def probe(test_env):
    p = EventProbe(os.environ["ONETHING_AMQP_URI"])
    yield p
    p.close()


class LocalIdp:
    """A throw-away identity provider for tests without the local servers: its key pair in a temporary
    folder, trusted by this process while the fixture lasts (ONETHING_AUTH_*_FILE)."""

    def __init__(self, folder):
        self.private = os.path.join(folder, "idp_ed25519.key")
        self.public = os.path.join(folder, "idp_ed25519.pub")
        self.jwks = os.path.join(folder, "jwks.json")

    def env(self):
        return {"ONETHING_AUTH_PRIVATE_KEY_FILE": self.private, "ONETHING_AUTH_PUBLIC_KEY_FILE": self.public,
                "ONETHING_AUTH_JWKS_FILE": self.jwks}

    def token(self, sub, role, department="", region="", **kwargs):
        from services.common import auth
        return auth.mint(sub, role, department, region, **kwargs)

    def metadata(self, sub, role, department="", region="", on_behalf_of="", **kwargs):
        md = (("authorization", "Bearer " + self.token(sub, role, department, region, **kwargs)),)
        return md + ((("x-on-behalf-of", on_behalf_of),) if on_behalf_of else ())


@pytest.fixture(scope="module")
def local_idp(tmp_path_factory):
    from services.common import auth
    idp = LocalIdp(str(tmp_path_factory.mktemp("idp")))
    saved = {k: os.environ.get(k) for k in idp.env()}
    os.environ.update(idp.env())
    auth.ensure_keys()
    yield idp
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
