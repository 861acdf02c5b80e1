"""Builds intake's handlers from its adapters, in one place, for both roles. Every adapter may be
given (tests pass fakes: services/intake/fakes.py); what is not given is built for real."""
from services.common.config import settings
from services.intake.handlers import BUCKET, Intake, utc_now


def build_intake(store=None, bus=None, blobs=None, clock=None, audit=None, catalog=None, licences=None,
                 with_catalog=True):
    """intake's handlers. `bus` is the store's (the real store publishes its events on it);
    `catalog` and `licences` are the gRPC clients of the catalog and of elicense, built only with
    `with_catalog` (the api role: grpcio does not run in the eventlet-patched worker)."""
    s = settings()
    if store is None or audit is None:
        from services.common import mongo
        mongo.connect("intake")
    if store is None:
        from services.intake.store import IntakeStore
        if bus is None:
            from services.common.bus import Bus
            bus = Bus("intake")
        store = IntakeStore(bus)
    if blobs is None:
        from services.intake.material_files import MaterialBlobs
        blobs = MaterialBlobs()
        blobs.ensure_bucket(BUCKET)
    if audit is None:
        from services.common.audit import MongoAuditLog
        audit = MongoAuditLog("intake")
    if catalog is None and with_catalog:
        from services.intake.catalog_client import CatalogClient
        catalog = CatalogClient(s.address("catalog"))
    if licences is None and with_catalog:
        from services.intake.elicense_client import ElicenseClient
        licences = ElicenseClient(s.address("elicense"))
    intake = Intake(store, blobs, catalog, s.max_upload_bytes, licences=licences, audit=audit,
                    clock=clock or utc_now)
    intake.serves = s.serves
    return intake
