"""elicense's metrics (services/common/ops.py calls `register(role)`): its worker serves the outbox
gauges of both aggregates that keep one, licences and this site's signing keys (their
`signing_key_published`), as one outbox of the service (services/common/outbox_metrics.py)."""
from services.common import outbox_metrics

SERVICE = "elicense"
register = outbox_metrics.worker_outbox(SERVICE, "services.elicense.store:LicenseDoc",
                                        "services.elicense.store:SigningKeyDoc")
