"""catalog worker role (`nameko run`): answers package look-ups over the bus (nameko RPC) for
workers, which cannot use gRPC inside eventlet, and sweeps the package versions' outbox (empty
since `package_published` was removed; kept for the catalog's future events)."""

from services.catalog.definitions import STATUS_PROTO_NAMES
from services.catalog.wiring import build_catalog
from services.common.config import refuse_defaults_in_production
from services.common.worker import Component, OutboxSweeper, Tracing, rpc

refuse_defaults_in_production("worker")  # ONETHING_PROFILE=production: no default credentials or keys


class CatalogWorker:
    name = "catalog"
    tracing = Tracing()
    catalog = Component(build_catalog)
    sweeper = OutboxSweeper("catalog")

    @rpc
    def get_package(self, code, region_code, situations=None, version=0):
        """The package as a dict shaped like catalog.v1.Package, its status the proto enum's name."""
        pkg = self.catalog.get_package(code, region_code, situations or {}, version)
        return dict(pkg, status=STATUS_PROTO_NAMES[pkg["status"]])
