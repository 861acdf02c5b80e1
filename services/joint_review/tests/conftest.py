"""Fixtures of joint_review's entrypoint tests: the nameko containers of the worker and the desk,
on no broker, their handlers built from in-memory adapters (wiring.build_review's overrides)."""
import datetime

import eventlet.semaphore
import pytest
from nameko.containers import ServiceContainer
from nameko.extensions import DependencyProvider
from nameko.testing import waiting
from nameko.testing.services import replace_dependencies
from pymongo.errors import DuplicateKeyError

from services.common.audit import MemoryAuditLog
from services.common.bus import RecordingBus
from services.common.worker import Component, _InboxView
from services.joint_review.fakes import FakeSessionStore
from services.joint_review.wiring import build_review


class MemoryInboxCollection:
    """The two calls services.common.worker's inbox makes on its MongoDB collection."""

    def __init__(self):
        self.ids = set()

    def find_one(self, query, projection=None):
        return {"_id": query["_id"]} if query["_id"] in self.ids else None

    def insert_one(self, document):
        if document["_id"] in self.ids:
            raise DuplicateKeyError("already processed")
        self.ids.add(document["_id"])


class MemoryInbox(DependencyProvider):
    """services.common.worker.Inbox over a collection in memory: the handlers see the real view."""

    def __init__(self):
        self.collection = MemoryInboxCollection()

    def get_dependency(self, worker_ctx):
        return _InboxView(self.collection, worker_ctx)


class MemoryBlobs:
    def __init__(self):
        self.objects = {}

    def put(self, bucket, key, data, content_type="application/octet-stream", metadata=None):
        self.objects[(bucket, key)] = (data, content_type)


class Clock:
    """The clock adapter, set by the test."""

    def __init__(self, at):
        self.at = at

    def __call__(self):
        return self.at


@pytest.fixture
def clock():
    return Clock(datetime.datetime.now(datetime.UTC))


@pytest.fixture
def recording_bus():
    return RecordingBus("joint_review")


@pytest.fixture
def review_of_fakes(recording_bus, clock):
    """JointReview as wiring builds it, on the in-memory store publishing on `recording_bus`."""
    return build_review(store=FakeSessionStore(recording_bus), blobs=MemoryBlobs(),
                        audit=MemoryAuditLog("joint_review"), clock=clock, serves=lambda region: True)


@pytest.fixture
def green_waiters(monkeypatch):
    """nameko's entrypoint_hook/entrypoint_waiter wait on a threading.Semaphore, which assumes
    eventlet's monkey patch; this suite runs unpatched, so theirs is made green for the test."""
    monkeypatch.setattr(waiting, "Semaphore", eventlet.semaphore.Semaphore)


@pytest.fixture
def service_container(green_waiters):
    """build(service_cls, handlers, **replacements): a container of `service_cls` on no broker
    (never started, so nothing to stop: entrypoint_hook runs its workers), its Component holding
    `handlers`, its inbox in memory, the other dependencies named in `replacements` replaced."""

    def build(service_cls, handlers, **replacements):
        container = ServiceContainer(service_cls, {"AMQP_URI": "memory://"})
        inbox = next(d for d in container.dependencies if d.attr_name == "inbox")
        container.dependencies.remove(inbox)
        container.dependencies.add(MemoryInbox().bind(container, "inbox"))
        if replacements:
            replace_dependencies(container, **replacements)
        component = next(d for d in container.dependencies if isinstance(d, Component))
        component.factory = lambda: handlers
        component.setup()  # what the container's start does for it
        return container

    return build
