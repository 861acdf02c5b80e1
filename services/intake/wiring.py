"""Builds intake's handlers from its adapters, in one place, for both roles."""
from services.common import mongo
from services.common.audit import MongoAuditLog
from services.common.blobs import Blobs
from services.common.bus import Bus
from services.common.config import settings
from services.intake.handlers import BUCKET, Intake
from services.intake.store import IntakeStore


def build_intake(bus=None, with_catalog=True):
    s = settings()
    mongo.connect("intake")
    blobs = Blobs()
    blobs.ensure_bucket(BUCKET)
    catalog = licences = None
    if with_catalog:  # the api role only: grpcio does not run in the eventlet-patched worker
        from services.intake.catalog_client import CatalogClient
        from services.intake.elicense_client import ElicenseClient
        catalog = CatalogClient(s.address("catalog"))
        licences = ElicenseClient(s.address("elicense"))
    intake = Intake(IntakeStore(), blobs, bus or Bus("intake"), catalog, s.max_upload_bytes, licences=licences,
                    audit=MongoAuditLog("intake"))
    intake.serves = s.serves
    return intake
