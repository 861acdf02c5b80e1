"""Builds elicense's handlers from its adapters, in one place, for both roles. Every adapter can be
handed in (tests: services.elicense.fakes); what is not is built for real:
- `store`: the licence store, which publishes its own outbox on `bus` (used only for the store
  built here: a store handed in brings its own);
- `blobs`: object storage for the licence documents (bucket `results`);
- `clock()`: now, as an aware datetime; `audit`: the audit log;
- `site`: the region code of this site (settings().region), whose keys are its own."""
import logging

from services.common import mongo
from services.common.audit import MongoAuditLog
from services.common.blobs import Blobs
from services.common.bus import Bus
from services.common.config import settings
from services.elicense.handlers import BUCKET, Elicense
from services.elicense.store import LicenseStore, move_reservations

log = logging.getLogger(__name__)


def build_elicense(store=None, bus=None, blobs=None, clock=None, audit=None, site=None):
    if store is None or audit is None:
        mongo.connect("elicense")
    if store is None:
        store = LicenseStore(bus if bus is not None else Bus("elicense"))
        try:
            moved = move_reservations()
            store.legacy_reservations = False  # none left there (an earlier version still running
            # beside this one may add some: a retry of its item then draws a new number, a gap, no more)
            if moved:
                log.info("moved %d serial reservations out of the counters collection", moved)
        except Exception as exc:  # the store away at start-up: moved on a later start, read where they are meanwhile
            log.warning("serial reservations not moved (%s: %s)", type(exc).__name__, exc)
    if blobs is None:
        blobs = Blobs()
        blobs.ensure_bucket(BUCKET)
    return Elicense(store, blobs, audit=audit if audit is not None else MongoAuditLog("elicense"), clock=clock,
                    site=site if site is not None else settings().region)
