"""elicense's metrics (services/common/ops.py calls `register(role)`): its worker serves the outbox
gauges (services/common/outbox_metrics.py) of both aggregates that keep one, licences and this
site's signing keys (their `signing_key_published`), as one outbox of the service."""
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

from services.common import outbox_metrics

SERVICE = "elicense"


def register(role: str, registry: CollectorRegistry = REGISTRY) -> list[Collector]:
    if outbox_metrics.check_role(role) != "worker":
        return []
    from services.elicense.store import LicenseDoc, SigningKeyDoc
    return [outbox_metrics.serve_outbox(registry, SERVICE, LicenseDoc, SigningKeyDoc)]
