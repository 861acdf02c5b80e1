"""catalog worker role (`nameko run`): answers package look-ups over the bus (nameko RPC) for
workers, which cannot use gRPC inside eventlet; at a city site, takes the package versions its
province publishes (`package_published`, over the site link) and derives its own; sweeps the
package versions' outbox (a province's `package_published`)."""
import logging

from nameko.extensions import DependencyProvider

from onething.catalog.v1 import events_pb2 as catalog_events
from services.catalog import codec
from services.catalog.definitions import STATUS_PROTO_NAMES
from services.catalog.wiring import build_catalog
from services.common.config import refuse_defaults_in_production
from services.common.events import from_payload
from services.common.worker import Component, Inbox, OutboxSweeper, Tracing, event_handler, rpc

refuse_defaults_in_production("worker")  # ONETHING_PROFILE=production: no default credentials or keys

log = logging.getLogger("catalog")


class SendingSite(DependencyProvider):
    """The region code of the site that produced the event being handled (its `site` header,
    services/common/bus.py envelope); "" when it names none."""

    def get_dependency(self, worker_ctx):
        site = (worker_ctx.context_data or {}).get("site")
        return site if isinstance(site, str) else ""


class CatalogWorker:
    name = "catalog"
    tracing = Tracing()
    inbox = Inbox("catalog")
    catalog = Component(build_catalog)
    sweeper = OutboxSweeper("catalog")
    sending_site = SendingSite()

    @rpc
    def get_package(self, code, region_code, situations=None, version=0):
        """The package as a dict shaped like catalog.v1.Package, its status the proto enum's name."""
        pkg = self.catalog.get_package(code, region_code, situations or {}, version)
        return dict(pkg, status=STATUS_PROTO_NAMES[pkg["status"]])

    @event_handler("catalog", "package_published", other_sites=True)
    def on_package_published(self, payload):
        """A province's published version: a city derives its own (Catalog.receive); every other
        site (the province itself, a site without upstream) ignores it."""
        event = from_payload(catalog_events.PackagePublished, payload)
        site = self.sending_site
        if not self.catalog.takes_from(site):
            log.debug("package_published %s v%s from site %r: not this site's upstream, ignored", event.code,
                      event.version, site)
            return
        code, version, outcome = self.catalog.receive(site, codec.upstream_version(site, event))
        log.info("package_published %s v%s from %s: version %s %s", code, event.version, site, version, outcome)
