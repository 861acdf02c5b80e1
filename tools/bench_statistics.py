"""GetStatistics at scale: N made-up ratings (one in a hundred a 差评) over D days in a database of
its own on the local MongoDB server, and the time of the store's statistics

- as they were read before the daily figures: one aggregation over every rating in the filters;
- with every rating marked uncounted (as right after an upgrade, before the sweeps count them);
- once the sweeps have counted them (the daily figures), and with a few ratings changed since.

    python -m infra.local up
    python -m tools.bench_statistics [--ratings 10000] [--days 60] [--tries 5]

The database (`<prefix>evaluation_bench_statistics`) is dropped at the end. Not a test: it prints
figures and asserts nothing about them.
"""
import argparse
import datetime
import statistics as stats
import time
import uuid

from services.common import mongo
from services.common.config import settings
from services.evaluation import store as store_mod
from services.evaluation.daily import FIGURES, statistics_match
from services.evaluation.domain import Grade, RectificationStatus

REGIONS = ("440100", "440300", "440600")
DEPARTMENTS = ("wsjk", "gaj", "rsj", "zjj")
PACKAGES = ("XSECS", "SWHS", "QYKB", "BDCDJ")


def made_up(n, days):
    grade = Grade.VERY_DISSATISFIED if n % 100 == 0 else Grade.SATISFIED
    day = (datetime.date(2026, 1, 1) + datetime.timedelta(days=n % days)).isoformat()
    case_no = f"BENCH{n:08d}{uuid.uuid4().hex[:6].upper()}"
    body = {"case_no": case_no, "applicant_id": "11010519491231002X", "channel": "online", "grade": grade,
            "dimensions": {"整体满意度": 5}, "comment": "材料退回两次" if grade.bad else "", "bad_review": grade.bad,
            "satisfied": grade.satisfied, "rated_at": f"{day}T02:00:00+00:00", "rated_on": day,
            "department_code": DEPARTMENTS[n % 4], "region_code": REGIONS[n % 3], "package_code": PACKAGES[n % 4]}
    if grade.bad:
        body["rectification"] = {
            "case_no": case_no, "channel": "online", "department_code": body["department_code"],
            "region_code": body["region_code"], "package_code": body["package_code"], "grade": grade,
            "comment": body["comment"], "opened_at": body["rated_at"], "deadline": day, "deadline_provisional": False,
            "status": RectificationStatus.OPEN, "callbacks": []}
    return store_mod.EvaluationDoc(case_no=case_no, channel="online", body=store_mod.stored_body(body), outbox=[],
                                   version=1, uncounted=1, **store_mod.copies(body)).to_mongo().to_dict()


def timed(call, tries):
    spent = []
    for _ in range(tries):
        start = time.perf_counter()
        call()
        spent.append((time.perf_counter() - start) * 1000)
    return stats.median(spent)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratings", type=int, default=10000)
    parser.add_argument("--days", type=int, default=61)
    parser.add_argument("--tries", type=int, default=5)
    args = parser.parse_args(argv)
    name = f"{settings().db_name('evaluation')}_bench_statistics"
    mongo.connect("evaluation", db_name=name)
    ratings = store_mod.EvaluationDoc._get_collection()
    ratings.database.client.drop_database(name)
    store_mod.EvaluationDoc.ensure_indexes()
    store_mod.DailyFiguresDoc.ensure_indexes()
    store = store_mod.EvaluationStore()
    try:
        start = time.perf_counter()
        for first in range(0, args.ratings, 1000):
            ratings.insert_many([made_up(n, args.days) for n in range(first, min(first + 1000, args.ratings))])
        print(f"{args.ratings} ratings over {args.days} days stored in {time.perf_counter() - start:.1f} s")
        forms = {"by region, all": ("region_code", {}),
                 "by department, one region": ("department_code", {"region_code": "440100"}),
                 "by package, one month": ("package_code", {"rated_from": "2026-01-01", "rated_to": "2026-01-31"})}

        def before(field, filters):  # as GetStatistics read them before the daily figures
            return sorted(({"key": r["_id"] or "", **{k: r[k] for k in FIGURES}} for r in ratings.aggregate([
                {"$match": statistics_match(**filters)},
                {"$group": {"_id": f"${field}", "ratings": {"$sum": 1}, **{k: {"$sum": f"$n_{k}"} for k in FIGURES[1:]}}}])),
                key=lambda r: r["key"])
        figures = {label: before(*form) for label, form in forms.items()}
        rows = [(label, timed(lambda f=form: before(*f), args.tries)) for label, form in forms.items()]
        uncounted = {label: timed(lambda f=form: store.statistics(f[0], **f[1]), 1) for label, form in forms.items()}
        start = time.perf_counter()
        while store.count_figures():
            pass
        counting = time.perf_counter() - start
        days = store_mod.DailyFiguresDoc._get_collection().count_documents({})
        counted = {label: timed(lambda f=form: store.statistics(f[0], **f[1]), args.tries)
                   for label, form in forms.items()}
        assert all(store.statistics(f[0], **f[1]) == figures[label] for label, f in forms.items()), \
            "the daily figures differ"
        ratings.update_many({"case_no": {"$regex": "^BENCH000000"}}, {"$set": {"uncounted": 1}, "$inc": {"version": 1}})
        changed = ratings.count_documents({"uncounted": 1})
        pending = {label: timed(lambda f=form: store.statistics(f[0], **f[1]), args.tries)
                   for label, form in forms.items()}
        print(f"counted into {days} daily figures in {counting:.1f} s ({counting / args.ratings * 1000:.2f} ms a rating)")
        print(f"{'statistics':<28} {'before':>9} {'uncounted':>10} {'counted':>9} {f'{changed} changed':>12}")
        for label, spent in rows:
            print(f"{label:<28} {spent:>7.0f}ms {uncounted[label]:>8.0f}ms {counted[label]:>7.1f}ms "
                  f"{pending[label]:>10.1f}ms")
    finally:
        ratings.database.client.drop_database(name)


if __name__ == "__main__":
    main()
