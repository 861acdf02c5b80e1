"""Test doubles the services' unit tests share (the store contract tests, the worker entrypoint
tests): a bus that can be away, the aid that makes an outbox's entries due, an inbox collection in
memory and a container's dependency by name. The pytest fixtures several services need are in the
root conftest.py (`green_waiting`)."""
from typing import Any

from services.common.bus import RecordingBus, Unroutable
from services.common.memory import MemoryOutbox


class FlakyBus(RecordingBus):
    """A RecordingBus whose broker can be away: while `away`, and for the next `failures`
    publishes, a publish raises ConnectionError as a broker outage does and is not recorded. An
    event type in `unroutable` has no queue bound for it: its publish raises Unroutable, as the
    real bus's does. `tries` counts every publish asked of it, taken or not."""

    def __init__(self, service="test", away=False, failures=0, unroutable=()):
        super().__init__(service)
        self.away = away
        self.failures = failures
        self.unroutable = set(unroutable)
        self.tries = 0

    def publish_raw(self, event_type, payload, headers, parent=None):
        self.tries += 1
        if self.away or self.failures > 0:
            self.failures = max(0, self.failures - 1)
            raise ConnectionError("the broker is away")
        if event_type in self.unroutable:
            raise Unroutable(f"no queue is bound for {self.service}.events/{event_type}")
        super().publish_raw(event_type, payload, headers, parent)


def make_due(store, aggregate_id):
    """Every pending outbox entry of one aggregate due now, as if its retry time had come: on an
    in-memory store (services.common.memory.MemoryOutbox) or a MongoDB one
    (services.common.mongo.OutboxStore, its `document`'s collection)."""
    if isinstance(store, MemoryOutbox):
        store.make_due(aggregate_id)
        return
    coll = store.document._get_collection()
    outbox = (coll.find_one({"_id": aggregate_id}, {"outbox": 1}) or {}).get("outbox") or []
    coll.update_one({"_id": aggregate_id}, {"$set": {"outbox": [dict(e, next_at=0) for e in outbox]}})


class MemoryInboxCollection:
    """The calls services.common.worker's inbox (and the write-behind) make on its MongoDB collection, in memory:
    `docs` {key: document}; a second insert of a key is a DuplicateKeyError, as in MongoDB."""

    def __init__(self):
        self._docs = {}

    @property
    def docs(self):
        """What is stored, once the process's write-behind has written what waits."""
        from services.common import write_behind
        write_behind.flush()
        return self._docs

    @property
    def ids(self):
        return set(self.docs)

    def find_one(self, query, projection=None):
        return self._docs.get(query["_id"])

    def insert_one(self, document):
        from pymongo.errors import DuplicateKeyError
        if document["_id"] in self._docs:
            raise DuplicateKeyError("already processed")
        self._docs[document["_id"]] = dict(document)

    def bulk_write(self, requests, ordered=True):
        """InsertOne requests only (what the write-behind sends an inbox), duplicates reported as
        MongoDB reports them."""
        from pymongo.errors import BulkWriteError
        errors = []
        for i, request in enumerate(requests):
            document = request._doc
            if document["_id"] in self._docs:
                errors.append({"index": i, "code": 11000, "errmsg": "duplicate key"})
            else:
                self._docs[document["_id"]] = dict(document)
        if errors:
            raise BulkWriteError({"writeErrors": errors, "nInserted": len(requests) - len(errors)})


def dependency(container, name):
    """The dependency provider a nameko container holds under attribute `name`."""
    [found] = [d for d in container.dependencies if d.attr_name == name]
    return found


def wait_for(check, what, timeout=60.0, interval=0.1):
    """`check()`'s first truthy value, asked until `timeout` (a condition, never a pause);
    AssertionError naming `what` when it never holds."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def has_consumer(queue):
    """True when `queue` exists on this run's vhost and something consumes it."""
    from kombu import Connection

    from services.common.config import settings
    with Connection(settings().amqp_uri) as conn:
        try:
            return conn.default_channel.queue_declare(queue=queue, passive=True)[2] > 0
        except Exception:  # not declared yet
            return False


class running_worker:
    """A worker started as the suite starts it (`nameko run` with infra/nameko.yaml), consuming from
    this run's vhost with `extra_env` on top of this process's settings; entered once `queue` has a
    consumer, stopped (and waited for) on leaving. Its output goes to `log_path`."""

    def __init__(self, worker, log_path, queue, extra_env=None):
        self.worker, self.log_path, self.queue, self.extra_env = worker, log_path, queue, extra_env or {}
        self.process: Any = None

    def __enter__(self):
        import os
        import subprocess
        import sys

        from services.common.config import ROOT, process_environment
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [os.path.join(os.path.dirname(sys.executable), "nameko"), "run", "--config",
             os.path.join(ROOT, "infra", "nameko.yaml"), self.worker],
            env=process_environment(self.extra_env), cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT)

        def consuming():
            assert self.process.poll() is None, f"{self.worker} exited; see {self.log_path}"
            return has_consumer(self.queue)
        try:
            wait_for(consuming, f"{self.worker} to consume {self.queue}")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self.process

    def __exit__(self, *exc):
        self.process.terminate()
        try:
            self.process.wait(20)
        finally:
            self._log.close()
