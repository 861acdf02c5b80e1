"""catalog's metrics (services/common/ops.py calls `register(role)`): its worker serves the outbox
gauges of its package versions (services/common/outbox_metrics.py)."""
from services.common import outbox_metrics

SERVICE = "catalog"
register = outbox_metrics.worker_outbox(SERVICE, "services.catalog.store:PackageVersionDoc")
