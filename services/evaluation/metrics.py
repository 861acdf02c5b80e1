"""evaluation's metrics (services/common/ops.py calls `register(role)`): its worker serves the outbox
gauges of its ratings (services/common/outbox_metrics.py)."""
from services.common import outbox_metrics

SERVICE = "evaluation"
register = outbox_metrics.worker_outbox(SERVICE, "services.evaluation.store:EvaluationDoc")
