"""catalog worker role (`nameko run`): answers package look-ups over the bus (nameko RPC) for
workers, which cannot use gRPC inside eventlet."""
from nameko.rpc import rpc

from services.catalog.wiring import build_catalog
from services.common.worker import Component, Tracing


class CatalogWorker:
    name = "catalog"
    tracing = Tracing()
    catalog = Component(build_catalog)

    @rpc
    def get_package(self, code, region_code):
        return self.catalog.get_package(code, region_code)
