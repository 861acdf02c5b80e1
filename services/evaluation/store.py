"""evaluation's MongoDB store (database `<prefix>evaluation`): cases that may be rated (learned
from delivery events) and the ratings, each with its rectification when it is a 差评.

A rating's `body` is what the domain sees; the top-level fields beside it (region, department,
package, day, 0/1 counters) are copies kept for queries and statistics, so those need only
top-level paths and a plain $group (SecantusDB does not follow expression paths into arrays).

The domain's values (Grade, RectificationStatus) are mapped to the stored strings here, explicitly
(domain.GRADE_STORED, domain.STATUS_STORED), and back on every read. `version` counts the saves of
a rating (absent on ratings written before it existed: version 0); a save names the version it
read and is refused when another came first. Events are kept in the rating's `outbox`, written in
the same update, and published by the store right after (services.common.mongo.OutboxStore).

At a province, `rolled_up_ratings` keeps its cities' ratings as their events told them (one per
site, case and channel, saved with the version it was read at), with the same 0/1 copies, so its
statistics sum its own ratings and its cities' the same way."""
import logging
import random
import time

import mongoengine as me
from pymongo.errors import DuplicateKeyError

from services.common.mongo import OutboxStore, fill_missing, plain
from services.evaluation import domain

ALIAS = "evaluation"
log = logging.getLogger(__name__)
# above every place in the list of 差评 (each starts with a "YYYY-MM-DD" deadline)
ORDER_END = "~"


class RateableCase(me.Document):
    meta = {"db_alias": ALIAS, "collection": "rateable_cases"}
    case_no = me.StringField(primary_key=True)
    applicant_id = me.StringField()
    region_code = me.StringField()
    package_code = me.StringField()
    lead_department = me.StringField()
    withdrawn = me.BooleanField(default=False)  # withdrawn after its conclusion: nothing to rate


class EvaluationDoc(me.Document):
    meta = {"db_alias": ALIAS, "collection": "evaluations",
            "indexes": ["outbox.next_at", {"fields": ["case_no", "channel"], "unique": True},
                        "rect_status", "uncounted",
                        # the bad reviews (差评, about one rating in a hundred) of a department or a
                        # region: read without walking every rating of it (10,000 ratings: 40-300 -> 6-10 ms),
                        # in the order of their list, a page at a time
                        ("n_bad", "bad_order")]}
    # dropped by the worker's first sweep (services.common.mongo.retire_indexes): (n_bad, bad_order)
    # answers what n_bad did, the statistics read the daily figures, and each index costs every write
    retired_indexes = ((("n_bad", 1),), (("region_code", 1),), (("department_code", 1),), (("package_code", 1),))
    case_no = me.StringField(required=True)
    channel = me.StringField(required=True)
    body = me.DictField()
    outbox = me.ListField(me.DictField())
    version = me.IntField(default=0)               # saves so far (absent on older ratings: 0)
    # copies for queries and statistics
    region_code = me.StringField(default="")
    department_code = me.StringField(default="")
    package_code = me.StringField(default="")
    rated_on = me.StringField(default="")          # YYYY-MM-DD, Asia/Shanghai
    rect_status = me.StringField(default="")       # "", RECTIFICATION_STATUS_OPEN / _CLOSED
    n_satisfied = me.IntField(default=0)
    n_bad = me.IntField(default=0)
    n_open = me.IntField(default=0)
    n_closed = me.IntField(default=0)
    n_on_time = me.IntField(default=0)
    # a 差评's place in the list of them (domain.bad_review_order); "" for other ratings
    bad_order = me.StringField(default="")
    # the daily figures (DailyFiguresDoc): 1 while a change of this rating's figures is not yet in
    # them (absent once it is); the version of it they count, and its figures as they count them
    uncounted = me.IntField()
    counted_version = me.IntField(default=0)
    counted = me.DictField()


class Figures(me.Document):
    """The figures a document of statistics counts (a day's, a city rating's), summed by the $group."""
    meta: dict[str, object] = {"abstract": True}
    n_ratings = me.IntField(default=0)
    n_satisfied = me.IntField(default=0)
    n_bad = me.IntField(default=0)
    n_open = me.IntField(default=0)
    n_closed = me.IntField(default=0)
    n_on_time = me.IntField(default=0)


class DailyFiguresDoc(Figures):
    """The figures of the ratings of one day (rated_on), region, department and package, kept by the
    worker's sweep (EvaluationStore.count_figures), so that the statistics read these, not every
    rating. `version` counts its saves; `last_batch` is what its last save added ([{id, version,
    figures}] of ratings), until each of those ratings notes that it is counted."""
    meta = {"db_alias": ALIAS, "collection": "daily_figures",
            "indexes": ["rated_on", "region_code", "department_code", "package_code"]}
    key = me.StringField(primary_key=True)         # <rated_on>|<region>|<department>|<package>
    rated_on = me.StringField()
    region_code = me.StringField()
    department_code = me.StringField()
    package_code = me.StringField()
    version = me.IntField(default=1)
    last_batch = me.ListField(me.DictField())


class RolledUpRatingDoc(Figures):
    """A city's rating as its province keeps it (domain.RolledUpRating), one per site, case and
    channel; the 0/1 figures beside it are copies for the statistics' $group."""
    meta = {"db_alias": ALIAS, "collection": "rolled_up_ratings",
            "indexes": ["region_code", "department_code", "package_code", "rated_on"]}
    key = me.StringField(primary_key=True)         # <site>/<case_no>/<channel>
    site = me.StringField(required=True)
    case_no = me.StringField(required=True)
    channel = me.StringField(required=True)
    grade = me.StringField()                       # GRADE_... as ratings keep it; "" until known
    department_code = me.StringField()
    region_code = me.StringField()
    package_code = me.StringField()
    rated_on = me.StringField()
    rated = me.BooleanField(default=False)
    bad_review = me.BooleanField(default=False)
    closed = me.BooleanField(default=False)
    on_time = me.BooleanField(default=False)
    events = me.ListField(me.StringField())        # the ids of the events merged into it
    version = me.IntField(default=1)


def rolled_up_key(site, case_no, channel):
    return f"{site}/{case_no}/{channel}"


def stored_rolled_up(rating):
    """The stored fields of a rolled-up rating, its figures among them."""
    figures = rating.figures()
    return {"site": rating.site, "case_no": rating.case_no, "channel": rating.channel,
            "grade": domain.GRADE_STORED[rating.grade] if rating.grade else "",
            "department_code": rating.department_code, "region_code": rating.region_code,
            "package_code": rating.package_code, "rated_on": rating.rated_on, "rated": rating.rated,
            "bad_review": rating.bad_review, "closed": rating.closed, "on_time": rating.on_time,
            "events": list(rating.events), **{f"n_{k}": v for k, v in (
                ("ratings", figures["ratings"]), ("satisfied", figures["satisfied"]), ("bad", figures["bad"]),
                ("open", figures["open"]), ("closed", figures["closed"]), ("on_time", figures["on_time"]))}}


def domain_rolled_up(raw):
    return domain.RolledUpRating(
        site=raw["site"], case_no=raw["case_no"], channel=raw["channel"],
        grade=domain.grade_from_stored(raw["grade"]) if raw.get("grade") else None,
        department_code=raw.get("department_code") or "", region_code=raw.get("region_code") or "",
        package_code=raw.get("package_code") or "", rated_on=raw.get("rated_on") or "",
        rated=bool(raw.get("rated")), bad_review=bool(raw.get("bad_review")), closed=bool(raw.get("closed")),
        on_time=bool(raw.get("on_time")), events=tuple(raw.get("events") or ()))


def statistics_match(region_code="", department_code="", package_code="", rated_from="", rated_to=""):
    """The query of the statistics' filters over top-level copies of the codes and the day."""
    match: dict[str, object] = {k: v for k, v in (("region_code", region_code), ("department_code", department_code),
                                               ("package_code", package_code)) if v}
    if rated_from or rated_to:
        match["rated_on"] = {k: v for k, v in (("$gte", rated_from), ("$lte", rated_to)) if v}
    return match


def statistics_pipeline(field, ratings, region_code="", department_code="", package_code="", rated_from="",
                        rated_to="", counted=None):
    """The $match and $group of the statistics over a collection whose documents carry the 0/1
    figures (n_satisfied, n_bad, n_closed, n_on_time, n_open) as top-level copies; `ratings`: what
    each document adds to the ratings; `counted`: a condition every document counted meets."""
    match = statistics_match(region_code, department_code, package_code, rated_from, rated_to)
    match.update(counted or {})
    return [{"$match": match}, {"$group": {
        "_id": f"${field}", "ratings": ratings, "satisfied": {"$sum": "$n_satisfied"},
        "bad": {"$sum": "$n_bad"}, "closed": {"$sum": "$n_closed"}, "on_time": {"$sum": "$n_on_time"},
        "open": {"$sum": "$n_open"}}}]


def statistics_rows(cursor):
    return [{"key": r["_id"] or "", **{k: int(r[k]) for k in ("ratings", "satisfied", "bad", "closed", "on_time",
                                                               "open")}} for r in cursor]


FIGURES = ("ratings", "satisfied", "bad", "closed", "on_time", "open")
BUCKET_FIELDS = ("rated_on", "region_code", "department_code", "package_code")
# what counting a rating reads of it
COUNTED_FIELDS = {"version": 1, "counted_version": 1, "counted": 1, "n_satisfied": 1, "n_bad": 1, "n_open": 1,
                  "n_closed": 1, "n_on_time": 1, **{f: 1 for f in BUCKET_FIELDS}}


def figures_of(rating):
    """What a stored rating adds to its day's figures now."""
    return {"ratings": 1, **{name: int(rating.get(f"n_{name}") or 0) for name in FIGURES if name != "ratings"}}


def bucket_of(rating):
    """The key of the daily figures a stored rating counts in."""
    return "|".join(rating.get(f) or "" for f in BUCKET_FIELDS)


def counted_base(rating, batch_entry=None):
    """The figures of a rating that its day's figures hold already: those its last counted version
    had, or those the figures' last save added for a later version, when that save's ratings have
    not all noted it yet (a worker that stopped in between)."""
    if batch_entry is not None and batch_entry["version"] > (rating.get("counted_version") or 0):
        return batch_entry["figures"]
    return rating.get("counted") or {}


def delta(now, base):
    return {name: now[name] - int(base.get(name) or 0) for name in FIGURES}


def stored_body(body):
    """The stored form of a rating's body: its enums as the strings the store has always kept."""
    out = dict(body, grade=domain.GRADE_STORED[body["grade"]])
    rect = body.get("rectification")
    if rect is not None:
        out["rectification"] = dict(rect, grade=domain.GRADE_STORED[rect["grade"]],
                                    status=domain.STATUS_STORED[rect["status"]])
    return out


def domain_body(stored):
    """A rating's body as the domain uses it, from its stored form."""
    body = plain(stored)
    body["grade"] = domain.grade_from_stored(body["grade"])
    rect = body.get("rectification")
    if rect is not None:
        rect["grade"] = domain.grade_from_stored(rect["grade"])
        rect["status"] = domain.status_from_stored(rect["status"])
    return body


def copies(body):
    """The query fields of a rating, from its (domain) body."""
    rect = body.get("rectification") or {}
    status = rect.get("status")
    return {"region_code": body.get("region_code", ""), "department_code": body.get("department_code", ""),
            "package_code": body.get("package_code", ""), "rated_on": body.get("rated_on", ""),
            "rect_status": domain.STATUS_STORED[status] if status else "",
            "n_satisfied": int(bool(body.get("satisfied"))), "n_bad": int(bool(body.get("bad_review"))),
            "n_open": int(status == domain.RectificationStatus.OPEN),
            "n_closed": int(status == domain.RectificationStatus.CLOSED), "n_on_time": int(bool(rect.get("on_time"))),
            "bad_order": domain.bad_review_order(rect) if rect else ""}


def _rateable(doc):
    if doc is None:
        return None
    return domain.Rateable(case_no=doc.case_no, applicant_id=doc.applicant_id or "", region_code=doc.region_code or "",
                           package_code=doc.package_code or "", lead_department=doc.lead_department or "",
                           withdrawn=bool(doc.withdrawn))


class EvaluationStore(OutboxStore):
    """evaluation's persistence port over MongoDB (services/evaluation/fakes.py: the in-memory one)."""

    document = EvaluationDoc

    def add_rateable(self, case):
        """Idempotent; a case marked withdrawn stays withdrawn."""
        RateableCase.objects(case_no=case.case_no).update_one(
            set__applicant_id=case.applicant_id, set__region_code=case.region_code,
            set__package_code=case.package_code, set__lead_department=case.lead_department, upsert=True)

    def mark_withdrawn(self, case_no):
        """Idempotent; kept even when the delivery's report arrives later (add_rateable leaves it)."""
        RateableCase.objects(case_no=case_no).update_one(set__withdrawn=True, upsert=True)

    def rateable(self, case_no):
        return _rateable(RateableCase.objects(case_no=case_no).first())

    def add_rating(self, body, events):
        """Save a new rating with its events, then publish them; its key, or None when the case is
        already rated on that channel (nothing saved)."""
        doc = EvaluationDoc(case_no=body["case_no"], channel=body["channel"], body=stored_body(body),
                            outbox=list(events), version=1, uncounted=1, **copies(body))
        try:
            doc.save(force_insert=True)
        except me.NotUniqueError:
            return None
        self.publish(doc.pk, events)
        return doc.pk

    def rating(self, case_no):
        doc = EvaluationDoc.objects(case_no=case_no).only("body").first()
        return domain_body(doc.body) if doc else None

    def rectifications(self, case_no, channel=""):
        """[(Revision, body)] of the case's ratings that opened a rectification."""
        query = EvaluationDoc.objects(case_no=case_no, n_bad=1)
        if channel:
            query = query.filter(channel=channel)
        return [(domain.Revision(doc.pk, doc.version or 0), domain_body(doc.body))
                for doc in query.only("id", "body", "version")]

    def save_rectification(self, revision, expected_status, body, events):
        """Save a rating whose rectification changed, with its events, only if it is still the
        version `revision` read and its rectification still in `expected_status`; then publish the
        events. True when saved."""
        version = {"version": revision.version}
        if revision.version == 0:  # written before ratings counted their saves
            version = {"$or": [{"version": 0}, {"version": {"$exists": False}}]}
        found = {"_id": revision.key, "rect_status": domain.STATUS_STORED[expected_status], **version}
        change = {"$set": {"body": stored_body(body), **copies(body), "uncounted": 1}, "$inc": {"version": 1}}
        if events:
            change["$push"] = {"outbox": {"$each": list(events)}}
        if EvaluationDoc._get_collection().update_one(found, change).matched_count != 1:
            return False
        self.publish(revision.key, events)
        return True

    def bad_reviews(self, department_code="", region_code="", open_only=False, after="", limit=None):
        """The bodies of the 差评 within the filters, in the order of their list (domain.bad_review_order),
        those after `after` (a place in it), at most `limit` (None: all)."""
        # bounded on both sides: the local server walks an index from its start for a one-sided range
        query: dict[str, object] = {"n_bad": 1, "bad_order": {"$gt": after or "", "$lt": ORDER_END}}
        if department_code:
            query["department_code"] = department_code
        if region_code:
            query["region_code"] = region_code
        if open_only:
            query["rect_status"] = domain.STATUS_STORED[domain.RectificationStatus.OPEN]
        cursor = EvaluationDoc._get_collection().find(query, {"body": 1}).sort("bad_order", 1)
        if limit is not None:
            cursor = cursor.limit(limit)
        return [domain_body(doc["body"]) for doc in cursor]

    # 差评 stored before they kept their place in the list ---------------------------------------
    backfills = (("give_bad_order", "stored 差评 their place in the list of them"),
                 ("mark_uncounted", "stored ratings a place in the daily figures"))

    def mark_uncounted(self):
        """Ratings stored before the daily figures (no `counted_version`) are marked uncounted, so the
        sweeps count them in; True once none is left (noted in `outbox_checks`)."""
        return fill_missing(EvaluationDoc._get_collection(), "evaluations.daily_figures",
                            {"counted_version": {"$exists": False}}, lambda doc: {"counted_version": 0, "uncounted": 1},
                            projection={"_id": 1})

    def give_bad_order(self):
        """差评 stored without `bad_order` (by an earlier version) get it; True once none is left
        (noted in `outbox_checks`). Without it a 差评 is in no list."""
        def fields(doc):
            return {"bad_order": domain.bad_review_order(domain_body(doc["body"])["rectification"])}
        return fill_missing(EvaluationDoc._get_collection(), "evaluations.bad_order",
                            {"n_bad": 1, "bad_order": {"$exists": False}}, fields, projection={"body": 1})

    def statistics(self, field, region_code="", department_code="", package_code="", rated_from="", rated_to="",
                   tries=5):
        """[{key, ratings, satisfied, bad, closed, on_time, open}] of this site's own ratings, grouped by
        a top-level field: the daily figures within the filters, and what the ratings marked
        uncounted changed since, so the answer is exact, while what it reads grows with the days and
        codes, not with every rating. Read again when a count changed the figures meanwhile."""
        match = statistics_match(region_code, department_code, package_code, rated_from, rated_to)
        days = DailyFiguresDoc._get_collection()
        for _ in range(tries):
            counted = {d["_id"]: d for d in days.find(match)}
            pending = list(EvaluationDoc._get_collection().find({"uncounted": 1, **match}, COUNTED_FIELDS))
            if {d["_id"]: d["version"] for d in days.find(match, {"version": 1})} == {
                    k: d["version"] for k, d in counted.items()}:
                break
        else:
            raise RuntimeError(f"the daily figures changed on each of {tries} reads")
        rows: dict[str, dict] = {}

        def add(key, change):
            row = rows.setdefault(key or "", {"key": key or "", **dict.fromkeys(FIGURES, 0)})
            for name in FIGURES:
                row[name] += change[name]
        for day in counted.values():
            add(day.get(field), {name: int(day.get(f"n_{name}") or 0) for name in FIGURES})
        for rating in pending:
            day = counted.get(bucket_of(rating)) or {}
            entry = next((e for e in day.get("last_batch") or () if e["id"] == rating["_id"]), None)
            add(rating.get(field), delta(figures_of(rating), counted_base(rating, entry)))
        return sorted((r for r in rows.values() if r["ratings"]), key=lambda r: r["key"])

    # -- the daily figures, kept by the worker's sweep ----------------------------------------

    def sweep(self, limit=100):
        sent = super().sweep(limit)
        self.count_figures()
        return sent

    def count_figures(self, limit=1000):
        """Add to the daily figures what the ratings marked uncounted changed, at most `limit` of
        them; the number counted. A day's figures are saved with the version they were read at,
        and name what they added (`last_batch`) until each of those ratings notes that it is
        counted, so a worker that stops in between, or another counting beside it, counts nothing
        twice."""
        found = list(EvaluationDoc._get_collection().find({"uncounted": 1}, {"_id": 1, **COUNTED_FIELDS}).limit(limit))
        keys: dict[str, list] = {}
        for rating in found:
            keys.setdefault(bucket_of(rating), []).append(rating["_id"])
        return sum(self._count_into(key, ids) for key, ids in keys.items())

    def _count_into(self, key, ids, tries=10):
        """Count the ratings `ids` (marked uncounted) into the day's figures `key`; the number counted.
        When other counts came first on every try, none: they stay uncounted for a later sweep."""
        ratings, days = EvaluationDoc._get_collection(), DailyFiguresDoc._get_collection()
        for attempt in range(tries):
            if attempt:
                time.sleep(random.uniform(0, 0.005 * attempt))  # another count came first: not in step with it
            day = days.find_one({"_id": key})
            if day is not None:
                self._note_counted(day.get("last_batch") or ())
            batch = [r for r in ratings.find({"_id": {"$in": ids}, "uncounted": 1}, COUNTED_FIELDS)
                     if (r.get("counted_version") or 0) < (r.get("version") or 0)]
            if not batch:
                return 0
            totals = {name: int((day or {}).get(f"n_{name}") or 0) for name in FIGURES}
            for rating in batch:
                for name, change in delta(figures_of(rating), rating.get("counted") or {}).items():
                    totals[name] += change
            last = [{"id": r["_id"], "version": r["version"], "figures": figures_of(r)} for r in batch]
            fields = {**{f"n_{name}": v for name, v in totals.items()}, "last_batch": last}
            if day is None:
                try:
                    days.insert_one({"_id": key, **dict(zip(BUCKET_FIELDS, key.split("|"), strict=True)), **fields,
                                     "version": 1})
                except DuplicateKeyError:
                    continue
            elif days.update_one({"_id": key, "version": day.get("version") or 1},
                                 {"$set": fields, "$inc": {"version": 1}}).matched_count != 1:
                continue  # another count came first: read again
            self._note_counted(last)
            return len(batch)
        log.info("the daily figures %s changed on each of %d tries: counted by a later sweep", key, tries)
        return 0

    @staticmethod
    def _note_counted(entries):
        """Each rating of a save of the daily figures notes the version and figures they count; one
        still at that version is no longer uncounted (one saved since stays so). In one update for
        the ratings alike (the same version and figures), most often all of them."""
        ratings = EvaluationDoc._get_collection()
        alike: dict[tuple, list] = {}
        for entry in entries:
            alike.setdefault((entry["version"], tuple(sorted(entry["figures"].items()))), []).append(entry["id"])
        for (version, figures), ids in alike.items():
            found = {"_id": {"$in": ids}, "counted_version": {"$lt": version}}
            noted = {"$set": {"counted_version": version, "counted": dict(figures)}}
            if ratings.update_many({**found, "version": version}, {**noted, "$unset": {"uncounted": ""}}
                                   ).matched_count != len(ids):
                ratings.update_many(found, noted)  # those saved since: still uncounted

    # -- the cities' ratings, rolled up -------------------------------------------------------

    def rolled_up(self, site, case_no, channel):
        """(Revision, domain.RolledUpRating) of a city's rating, or None when none of its events came."""
        raw = RolledUpRatingDoc._get_collection().find_one({"_id": rolled_up_key(site, case_no, channel)})
        return None if raw is None else (domain.Revision(raw["_id"], raw.get("version") or 1), domain_rolled_up(raw))

    def save_rolled_up(self, revision, rating):
        """Save a rolled-up rating: new (`revision` None) or as the version `revision` read. False when
        another save came first (it exists already, or changed since)."""
        coll = RolledUpRatingDoc._get_collection()
        fields = stored_rolled_up(rating)
        if revision is None:
            try:
                coll.insert_one({"_id": rolled_up_key(rating.site, rating.case_no, rating.channel), **fields,
                                 "version": 1})
            except DuplicateKeyError:
                return False
            return True
        found = coll.update_one({"_id": revision.key, "version": revision.version},
                                {"$set": fields, "$inc": {"version": 1}})
        return found.matched_count == 1

    def rolled_up_statistics(self, field, region_code="", department_code="", package_code="", rated_from="",
                             rated_to=""):
        """The cities' ratings rolled up here, as statistics() gives this site's own (a rating counts
        once it is known)."""
        pipeline = statistics_pipeline(field, {"$sum": "$n_ratings"}, region_code, department_code, package_code,
                                       rated_from, rated_to, counted={"n_ratings": 1})
        return statistics_rows(RolledUpRatingDoc._get_collection().aggregate(pipeline))
