"""Builds the catalog's handlers from its adapters, in one place, for both roles. Every adapter is
an override (tests pass the in-memory store of services.catalog.fakes, a recording bus, a memory
audit log); the defaults build the real ones."""
from services.catalog.handlers import Catalog
from services.catalog.store import CatalogStore, read_catalog
from services.common import mongo
from services.common.audit import MongoAuditLog, service_actor
from services.common.config import settings


def build_catalog(load=False, store=None, bus=None, reader=None, audit=None, clock=None, data_dir=None,
                  serves=None, site=None, upstream=None):
    """`store`: package versions (default: the MongoDB store with `bus` for its outbox and `clock`
    for the times it stamps); `reader`: reads the data folder `data_dir`; `audit`: the audit log;
    `serves`: which regions this site serves (default: the settings'); `site`: this site's region
    code (default ONETHING_REGION); `upstream`: the site whose published versions it takes (default
    ONETHING_CATALOG_UPSTREAM; "": none). `load`: the api role seeds from the data files at start (a
    changed file becomes a draft) and, at a province, announces what it has published."""
    s = settings()
    if store is None or audit is None:
        mongo.connect("catalog")
    if store is None:
        from services.common.bus import Bus
        store = CatalogStore(bus if bus is not None else Bus("catalog"), clock=clock)
    if audit is None:
        audit = MongoAuditLog("catalog")
    catalog = Catalog(store, reader or read_catalog, data_dir=data_dir or s.catalog_data, audit=audit,
                      serves=serves if serves is not None else s.serves,
                      site=site if site is not None else s.region,
                      upstream=upstream if upstream is not None else s.catalog_upstream)
    if load:
        catalog.start(actor=service_actor("catalog-api:start"))  # audited like an operator's reload
    return catalog
