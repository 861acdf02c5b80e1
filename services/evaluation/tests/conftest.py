"""Fixtures the evaluation handler tests share: a RecordingBus, the one in-memory store
(services.evaluation.fakes) publishing on it, a clock the test moves, and the handlers built from
them by the service's own wiring (5 working days to put a 差评 right)."""
import datetime as dt

import pytest

from services.common.audit import MemoryAuditLog
from services.common.bus import RecordingBus
from services.evaluation.fakes import FakeEvaluationStore
from services.evaluation.wiring import build_evaluation


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def bus():
    return RecordingBus("evaluation")


@pytest.fixture
def store(bus):
    return FakeEvaluationStore(bus)


@pytest.fixture
def clock():
    return Clock(dt.datetime(2024, 3, 4, 2, 0, tzinfo=dt.UTC))  # Mon 10:00 in Shanghai


@pytest.fixture
def evaluation(store, clock):
    return build_evaluation(store=store, clock=clock, audit=MemoryAuditLog("evaluation"), bad_review_days=5)
