"""Builds evaluation's handlers from its adapters, in one place, for both roles. Every adapter may be
given (tests pass the in-memory store of services/evaluation/fakes.py, a RecordingBus, a fixed
clock, a MemoryAuditLog); what is not given is built for real. The working days a department has
to put a 差评 right come from settings().bad_review_days (ONETHING_BAD_REVIEW_DAYS, default 5)."""
from services.common import mongo
from services.common.audit import MongoAuditLog
from services.common.bus import Bus
from services.common.config import settings
from services.evaluation.handlers import Evaluation
from services.evaluation.store import EvaluationStore


def build_evaluation(store=None, bus=None, clock=None, audit=None, bad_review_days=None, site=None):
    """The handlers. `bus` is the one the store publishes on (a store given brings its own); `site`
    the region code of this site (settings().region, ONETHING_REGION): the figures of the sites
    within it are rolled up into its statistics."""
    if store is None or audit is None:
        mongo.connect("evaluation")
    if store is None:
        store = EvaluationStore(bus if bus is not None else Bus("evaluation"))
    options = {"clock": clock} if clock is not None else {}
    return Evaluation(store, bad_review_days=bad_review_days if bad_review_days is not None
                      else settings().bad_review_days, audit=audit or MongoAuditLog("evaluation"),
                      site=settings().region if site is None else site, **options)
