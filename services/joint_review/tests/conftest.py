"""Fixtures of joint_review's entrypoint tests: the nameko container of the worker,
on no broker, its handlers built from in-memory adapters (wiring.build_review's overrides)."""
import datetime

import pytest
from nameko.containers import ServiceContainer
from nameko.extensions import DependencyProvider
from nameko.testing.services import replace_dependencies

from services.common.audit import MemoryAuditLog
from services.common.bus import RecordingBus
from services.common.testing import MemoryInboxCollection
from services.common.worker import Component, _InboxView
from services.joint_review.fakes import FakeSessionStore
from services.joint_review.wiring import build_review


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
def service_container(green_waiting):
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


@pytest.fixture
def all_tasks():
    return _all_tasks


def _all_tasks(review, department_code, region_code, state=None, page_size=0):
    """Every page of review.list_tasks, joined."""
    tasks, token = review.list_tasks(department_code, region_code, state, page_size=page_size)
    while token:
        more, token = review.list_tasks(department_code, region_code, state, page_size=page_size, page_token=token)
        tasks += more
    return tasks
