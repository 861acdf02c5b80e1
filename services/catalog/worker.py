"""catalog worker role (`nameko run`): answers package look-ups over the bus (nameko RPC) for
workers, which cannot use gRPC inside eventlet, and sweeps the package versions' outbox (empty
since `package_published` was removed; kept for the catalog's future events)."""

from nameko.timer import timer

from services.catalog.wiring import build_catalog
from services.common.mongo import sweep_outbox
from services.common.config import refuse_defaults_in_production
from services.common.worker import SWEEP_SECONDS, Component, Tracing, rpc

refuse_defaults_in_production("worker")  # ONETHING_PROFILE=production: no default credentials or keys


class CatalogWorker:
    name = "catalog"
    tracing = Tracing()
    catalog = Component(build_catalog)

    @rpc
    def get_package(self, code, region_code, situations=None, version=0):
        return self.catalog.get_package(code, region_code, situations or {}, version)

    @timer(interval=SWEEP_SECONDS)
    def sweep_outbox(self):
        from services.catalog.store import PackageVersionDoc
        sweep_outbox(PackageVersionDoc, self.catalog.bus)
