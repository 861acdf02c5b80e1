"""evaluation's metrics (services/common/ops.py calls `register(role)`): its worker serves the outbox
gauges of its ratings (services/common/outbox_metrics.py)."""
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

from services.common import outbox_metrics

SERVICE = "evaluation"


def register(role: str, registry: CollectorRegistry = REGISTRY) -> list[Collector]:
    if outbox_metrics.check_role(role) != "worker":
        return []
    from services.evaluation.store import EvaluationDoc
    return [outbox_metrics.serve_outbox(registry, SERVICE, EvaluationDoc)]
