"""Stored cases for the benchmark: `ensure_stored(n)` makes sure intake holds at least n cases by
copying, with new case numbers and licence ids, every document a real finished 新生儿出生 case left in
each service's database (intake's case, joint_review's session, elicense's licences, delivery,
evaluation). Written in batches straight into the databases (the operator's credentials): 10,000
cases take a minute, where driving them through the suite would take an hour. The copies are
finished cases: nothing of the suite acts on them, but every query and index sees them.

    python -m tools.bench_seed 10000
"""
import re
import sys
import time

import pymongo
from bson import json_util

from services.common.config import settings

# database (service) -> collections holding a case's documents, and the field naming the case
COLLECTIONS = {
    "intake": [("cases", "_id")],
    "joint_review": [("sessions", "_id")],
    "elicense": [("licenses", "fields.case_no")],
    "delivery": [("deliveries", "_id")],
    "evaluation": [("rateable_cases", "_id"), ("evaluations", "case_no")],
}
BATCH = 500


def _client():
    return pymongo.MongoClient(settings().mongo_uri, directConnection=True)


def template(client):
    """The documents of the latest finished (delivered or rated) 新生儿出生 case, per collection."""
    s = settings()
    cases = client[s.db_name("intake")]["cases"]
    case = cases.find_one({"status": {"$in": ["CASE_STATUS_DELIVERED", "CASE_STATUS_RATED"]}, "_id": {"$regex": "XSECS"},
                           "bench_copy": {"$exists": False}}, sort=[("submitted_at", -1)])
    if case is None:
        raise SystemExit("no finished 新生儿出生 case to copy: run `make run` (or the bench once) first")
    case_no = case["_id"]
    found = {}
    for service, collections in COLLECTIONS.items():
        db = client[s.db_name(service)]
        for name, field in collections:
            found[(service, name)] = list(db[name].find({field: case_no}))
    licences = [d["_id"] for d in found[("elicense", "licenses")]]
    return case_no, licences, found


def _copies(case_no, licences, docs, first, count):
    """`count` copies of `docs` (one collection's), numbered from `first`."""
    text = json_util.dumps(docs)
    # the case number's serial part is replaced whole, so the copies sort and look like real ones
    prefix = case_no[:-4]
    out = []
    for n in range(first, first + count):
        new_no = f"{prefix}B{n:07d}"
        copy = text.replace(case_no, new_no)
        for licence in licences:
            copy = copy.replace(licence, f"{licence}.B{n:07d}")
        for doc in json_util.loads(copy):
            doc["bench_copy"] = True
            if "_id" in doc and not isinstance(doc["_id"], str):
                del doc["_id"]
            out.append(doc)
    return out


def ensure_stored(n, out=print):
    """At least `n` cases in intake's database (copies added as needed); returns how many there are."""
    s = settings()
    with _client() as client:
        cases = client[s.db_name("intake")]["cases"]
        have = cases.count_documents({})
        if have >= n:
            return have
        case_no, licences, found = template(client)
        first = cases.count_documents({"bench_copy": True})
        missing = n - have
        started = time.perf_counter()
        out(f"seeding {missing} cases (copies of {case_no}) ...")
        for at in range(0, missing, BATCH):
            count = min(BATCH, missing - at)
            for (service, name), docs in found.items():
                if docs:
                    batch = _copies(case_no, licences, docs, first + at, count)
                    try:
                        client[s.db_name(service)][name].insert_many(batch, ordered=False)
                    except pymongo.errors.BulkWriteError as exc:  # a copy made before: kept
                        if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                            raise
        have = cases.count_documents({})
        out(f"seeded in {time.perf_counter() - started:.0f} s: {have} cases stored")
        return have


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or not re.fullmatch(r"\d{1,7}", argv[0]):
        raise SystemExit("usage: python -m tools.bench_seed CASES  (how many cases intake should hold)")
    ensure_stored(int(argv[0]))


if __name__ == "__main__":
    main()
