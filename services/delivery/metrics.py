"""delivery's metrics (services/common/ops.py calls `register(role)`): its worker serves the outbox
gauges of its deliveries (services/common/outbox_metrics.py)."""
from services.common import outbox_metrics

SERVICE = "delivery"
register = outbox_metrics.worker_outbox(SERVICE, "services.delivery.store:DeliveryDoc")
