"""What a process asks of the servers it uses, counted for /metrics (services/common/ops.py serves
the default registry): MongoDB commands and their round trips, S3 operations, events published.
`tools/bench.py` reads them from every process before and after a run to say what one case costs.
No dependencies but prometheus_client, so the adapters that count can import it."""
from prometheus_client import Counter, Histogram

MONGO_COMMANDS = Histogram("onething_mongo_command_seconds", "MongoDB commands this process sent, by command "
                           "and collection, and each one's round trip as the driver measured it",
                           ["command", "collection"],
                           buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5))
S3_OPERATIONS = Counter("onething_s3_operations", "S3 operations this process made, by operation", ["op"])
EVENTS_PUBLISHED = Counter("onething_events_published", "Events (and desk opinions) this process published, "
                           "by exchange", ["exchange"])
