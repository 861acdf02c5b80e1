"""The desk's own metrics (served on /metrics by services/common/ops.py): tasks by outcome and how
long a decision took, per department and region."""
from prometheus_client import Counter, Histogram

TASKS = Counter("onething_desk_tasks", "Tasks a desk handled, by outcome: decided (its opinion is confirmed "
                "by the broker), left_for_officer, failed (given back to the queue)",
                ["department", "region", "outcome"])
DECISION_SECONDS = Histogram("onething_desk_decision_seconds", "From a task's arrival at the desk to its "
                             "acknowledgement", ["department", "region"],
                             buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))


def register(role):
    """Nothing to add at start: the counters above are in the default registry once imported."""
