"""Builds elicense's handlers from its adapters, in one place, for both roles."""
from services.common import mongo
from services.common.audit import MongoAuditLog
from services.common.blobs import Blobs
from services.common.bus import Bus
from services.elicense.handlers import BUCKET, Elicense
from services.elicense.store import LicenseStore


def build_elicense(bus=None):
    mongo.connect("elicense")
    blobs = Blobs()
    blobs.ensure_bucket(BUCKET)
    return Elicense(LicenseStore(), blobs, bus or Bus("elicense"), audit=MongoAuditLog("elicense"))
