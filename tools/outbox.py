"""What waits in the outboxes: events committed but not yet confirmed by the broker, per service,
oldest first, with their attempts and last error (an unroutable event says so).

    python -m tools.outbox [--service intake] [--older-than 30]

Exit status 1 when an entry older than --older-than seconds is pending (for scripts and alerts)."""
import argparse
import datetime
import sys
import time

import pymongo

from services.common.config import settings
from services.common.registry import NAMES

SERVICES = NAMES


def pending(services=SERVICES, uri=None):
    """(service, collection, document id, entry) of every pending outbox entry."""
    s = settings()
    found = []
    with pymongo.MongoClient(uri or s.mongo_uri, serverSelectionTimeoutMS=5000, document_class=dict) as client:
        for service in services:
            db = client[s.db_name(service)]
            for coll in db.list_collection_names():
                for doc in db[coll].find({"outbox.0": {"$exists": True}}, {"outbox": 1}):
                    for entry in doc.get("outbox") or []:
                        found.append((service, coll, doc["_id"], entry))
    return sorted(found, key=lambda f: f[3].get("at", 0))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.outbox", description=__doc__.split("\n\n")[0])
    parser.add_argument("--service", choices=SERVICES)
    parser.add_argument("--older-than", type=float, default=60.0)
    args = parser.parse_args(argv)
    now = time.time()
    rows = pending((args.service,) if args.service else SERVICES)
    old = 0
    for service, coll, doc_id, e in rows:
        age = now - e.get("at", now)
        old += age > args.older_than
        at = datetime.datetime.fromtimestamp(e.get("at", now), datetime.UTC).strftime("%H:%M:%S")
        print(f"{service}.{coll} {doc_id} {e.get('event_type')} event {e.get('id')} written {at} "
              f"({age:.0f} s ago) attempts {e.get('attempts', 0)}"
              + (f"\n    last error: {e['last_error']}" if e.get("last_error") else ""))
    print(f"{len(rows)} pending, {old} older than {args.older_than:.0f} s")
    return 1 if old else 0


if __name__ == "__main__":
    sys.exit(main())
