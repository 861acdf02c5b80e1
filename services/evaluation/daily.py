"""The daily figures of a collection of ratings (a site's own, or its cities' rolled up), so that the
statistics read one document a day, region, department and package instead of every rating.

A rating document carries its 0/1 figures as top-level copies (n_satisfied, n_bad, n_open, n_closed,
n_on_time; n_ratings where a rating may not count yet), the day and the codes, its `version`, and:
- `uncounted`: 1 while a change of its figures is not yet in its day's figures, set in the same
  write that saves the change (so no change is missed), removed once it is counted;
- `counted_version` and `counted`: the version, and its figures, that its day's figures hold.

The worker's sweep counts (DailyFigures.count): what the uncounted ratings changed is added to their
day's figures, saved with the version read (a count beside it reads again), and the save names what
it added (`last_batch`: id, version and figures of each rating) until those ratings have noted it,
so a count cut off in between counts nothing twice. The statistics read the day's figures within the
filters and add what the uncounted ratings changed since (DailyFigures.statistics): exact between
sweeps. Plain pymongo on the collections of the mongoengine documents given."""
import json
import logging
import random
import time

from pymongo.errors import DuplicateKeyError

from services.common.mongo import fill_missing

log = logging.getLogger(__name__)

FIGURES = ("ratings", "satisfied", "bad", "closed", "on_time", "open")
DAY_FIELDS = ("rated_on", "region_code", "department_code", "package_code")
# what counting a rating reads of it
COUNTED_FIELDS = {"version": 1, "counted_version": 1, "counted": 1, **{f"n_{name}": 1 for name in FIGURES},
                  **dict.fromkeys(DAY_FIELDS, 1)}


def statistics_match(region_code="", department_code="", package_code="", rated_from="", rated_to=""):
    """The query of the statistics' filters, over top-level copies of the codes and the day."""
    match: dict[str, object] = {k: v for k, v in (("region_code", region_code), ("department_code", department_code),
                                               ("package_code", package_code)) if v}
    if rated_from or rated_to:
        match["rated_on"] = {k: v for k, v in (("$gte", rated_from), ("$lte", rated_to)) if v}
    return match


def figures_of(rating):
    """What a stored rating adds to its day's figures now (nothing while it does not count yet: a
    city rating of which only a later event came)."""
    if not rating.get("n_ratings", 1):
        return dict.fromkeys(FIGURES, 0)
    return {"ratings": 1, **{name: int(rating.get(f"n_{name}") or 0) for name in FIGURES if name != "ratings"}}


def day_of(rating):
    """The key of the daily figures a stored rating counts in: its day and codes as a JSON list, which
    no code can make ambiguous (a code with a separator in it, say, from a city's event)."""
    return json.dumps([rating.get(f) or "" for f in DAY_FIELDS], ensure_ascii=False, separators=(",", ":"))


def counted_base(rating, batch_entry=None):
    """The figures of a rating that its day's figures hold already: those of its counted version, or
    those the day's last save added for a later version, while that save's ratings have not all
    noted it (a count cut off in between)."""
    if batch_entry is not None and batch_entry["version"] > (rating.get("counted_version") or 0):
        return batch_entry["figures"]
    return rating.get("counted") or {}


def change(now, base):
    return {name: now[name] - int(base.get(name) or 0) for name in FIGURES}


class DailyFigures:
    """The daily figures (`days`, a document class) of the ratings of `ratings` (a document class);
    `check`: its name in `outbox_checks` once no rating stored before is left to mark."""

    def __init__(self, ratings, days, check):
        self.ratings_doc, self.days_doc, self.check = ratings, days, check

    def statistics(self, field, tries=5, **filters):
        """[{key, ratings, satisfied, bad, closed, on_time, open}] grouped by a top-level field, within
        the filters (statistics_match), rows with ratings only. Read again when a count changed the
        figures meanwhile."""
        match = statistics_match(**filters)
        days, ratings = self.days_doc._get_collection(), self.ratings_doc._get_collection()
        for _ in range(tries):
            counted = {d["_id"]: d for d in days.find(match)}
            pending = list(ratings.find({"uncounted": 1, **match}, COUNTED_FIELDS))
            if {d["_id"]: d["version"] for d in days.find(match, {"version": 1})} == {
                    k: d["version"] for k, d in counted.items()}:
                break
        else:
            raise RuntimeError(f"the daily figures changed on each of {tries} reads")
        rows: dict[str, dict] = {}

        def add(key, figures):
            row = rows.setdefault(key or "", {"key": key or "", **dict.fromkeys(FIGURES, 0)})
            for name in FIGURES:
                row[name] += figures[name]
        for day in counted.values():
            add(day.get(field), {name: int(day.get(f"n_{name}") or 0) for name in FIGURES})
        for rating in pending:
            entry = next((e for e in (counted.get(day_of(rating)) or {}).get("last_batch") or ()
                          if e["id"] == rating["_id"]), None)
            add(rating.get(field), change(figures_of(rating), counted_base(rating, entry)))
        return sorted((r for r in rows.values() if r["ratings"]), key=lambda r: r["key"])

    def count(self, limit=1000):
        """Add to the daily figures what at most `limit` uncounted ratings changed; the number counted."""
        found = list(self.ratings_doc._get_collection().find({"uncounted": 1}, {"_id": 1, **COUNTED_FIELDS}).limit(
            limit))
        days: dict[str, list] = {}
        for rating in found:
            days.setdefault(day_of(rating), []).append(rating["_id"])
        return sum(self.count_into(key, ids) for key, ids in days.items())

    def count_into(self, key, ids, tries=10):
        """Count the ratings `ids` into the day's figures `key`; the number counted. When other counts
        came first on every try, none: they stay uncounted for a later sweep."""
        ratings, days = self.ratings_doc._get_collection(), self.days_doc._get_collection()
        for attempt in range(tries):
            if attempt:
                time.sleep(random.uniform(0, 0.005 * attempt))  # another count came first: not in step with it
            day = days.find_one({"_id": key})
            if day is not None:
                self.note_counted(day.get("last_batch") or ())
            batch = [r for r in ratings.find({"_id": {"$in": ids}, "uncounted": 1}, COUNTED_FIELDS)
                     if (r.get("counted_version") or 0) < (r.get("version") or 0)]
            if not batch:
                return 0
            totals = {name: int((day or {}).get(f"n_{name}") or 0) for name in FIGURES}
            for rating in batch:
                for name, value in change(figures_of(rating), rating.get("counted") or {}).items():
                    totals[name] += value
            last = [{"id": r["_id"], "version": r["version"], "figures": figures_of(r)} for r in batch]
            fields = {**{f"n_{name}": v for name, v in totals.items()}, "last_batch": last}
            if day is None:
                try:
                    days.insert_one({"_id": key, **{f: batch[0].get(f) or "" for f in DAY_FIELDS}, **fields,
                                     "version": 1})
                except DuplicateKeyError:
                    continue
            elif days.update_one({"_id": key, "version": day.get("version") or 1},
                                 {"$set": fields, "$inc": {"version": 1}}).matched_count != 1:
                continue  # another count came first: read again
            self.note_counted(last)
            return len(batch)
        log.info("the daily figures %s changed on each of %d tries: counted by a later sweep", key, tries)
        return 0

    def note_counted(self, entries):
        """Each rating of a save of the daily figures notes the version and figures they count; one
        still at that version is no longer uncounted (one saved since stays so). In one update for
        the ratings alike (the same version and figures), most often all of them."""
        ratings = self.ratings_doc._get_collection()
        alike: dict[tuple, list] = {}
        for entry in entries:
            alike.setdefault((entry["version"], tuple(sorted(entry["figures"].items()))), []).append(entry["id"])
        for (version, figures), ids in alike.items():
            found = {"_id": {"$in": ids}, "counted_version": {"$lt": version}}
            noted = {"$set": {"counted_version": version, "counted": dict(figures)}}
            if ratings.update_many({**found, "version": version}, {**noted, "$unset": {"uncounted": ""}}
                                   ).matched_count != len(ids):
                ratings.update_many(found, noted)  # those saved since: still uncounted

    def mark_stored_before(self):
        """Ratings stored before the daily figures (no `counted_version`) are marked uncounted, so the
        sweeps count them in; True once none is left (noted in `outbox_checks`)."""
        return fill_missing(self.ratings_doc._get_collection(), self.check, {"counted_version": {"$exists": False}},
                            lambda doc: {"counted_version": 0, "uncounted": 1}, projection={"_id": 1})

