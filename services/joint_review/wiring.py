"""Builds joint_review's handlers from its adapters, in one place, for the api and the worker.
Every adapter can be given instead (tests pass fakes.FakeSessionStore, a RecordingBus, in-memory
blobs and audit log, a fixed clock); what is not given is built from the settings."""
from services.common import mongo
from services.common.audit import MongoAuditLog
from services.common.blobs import Blobs
from services.common.bus import Bus
from services.common.config import settings
from services.joint_review.handlers import RESULTS, JointReview
from services.joint_review.store import SessionStore


def build_review(store=None, bus=None, blobs=None, clock=None, audit=None, serves=None, site=None):
    """JointReview over `store` (default: the MongoDB SessionStore publishing on `bus`, by default a
    Bus of joint_review), `blobs` (default: S3, its bucket `results` made sure of), `audit`
    (default: the MongoDB audit log), `clock` (default: the system clock) and `serves` (region code
    -> bool; default: the site's served regions from the settings) and `site` (default: the site's
    region code, ONETHING_REGION: where desks send their opinions). `bus` belongs to the default
    store: a store given here publishes on its own bus."""
    if store is not None and bus is not None:
        raise TypeError("build_review: give the bus to the store you pass, not beside it")
    if store is None or audit is None:
        mongo.connect("joint_review")
    if store is None:
        store = SessionStore(bus if bus is not None else Bus("joint_review"))
    if blobs is None:
        blobs = Blobs()
        blobs.ensure_bucket(RESULTS)
    return JointReview(store, blobs, audit=audit if audit is not None else MongoAuditLog("joint_review"),
                       clock=clock, serves=serves if serves is not None else settings().serves,
                       site=settings().region if site is None else site)
