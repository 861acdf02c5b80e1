"""Builds the catalog's handlers from its adapters, in one place, for both roles."""
from services.catalog.handlers import Catalog
from services.catalog.store import CatalogStore
from services.common import mongo
from services.common.audit import MongoAuditLog, service_actor
from services.common.config import settings


def build_catalog(load=False, bus=None):
    from services.common.bus import Bus
    mongo.connect("catalog")
    catalog = Catalog(CatalogStore(), bus or Bus("catalog"), data_dir=settings().catalog_data,
                      audit=MongoAuditLog("catalog"))
    catalog.serves = settings().serves
    if load:  # the api role seeds from the data files at start (a changed file becomes a draft)
        catalog.store.drop_retired_events(("package_published",))
        catalog.reload(actor=service_actor("catalog-api:start"))  # audited like an operator's reload
    return catalog
