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
import mongoengine as me
from pymongo.errors import DuplicateKeyError

from services.common.mongo import OutboxStore, fill_missing, plain, retire_indexes
from services.evaluation import domain
from services.evaluation.daily import DailyFigures

ALIAS = "evaluation"
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


class DayFigures(Figures):
    """The figures of the ratings of one day (rated_on), region, department and package, kept by the
    worker's sweep (services/evaluation/daily.py), so that the statistics read these, not every
    rating. `version` counts its saves; `last_batch` is what its last save added ([{id, version,
    figures}] of ratings), until each of those ratings notes that it is counted."""
    meta: dict[str, object] = {"abstract": True}
    key = me.StringField(primary_key=True)         # [rated_on, region, department, package] as JSON (daily.day_of)
    rated_on = me.StringField()
    region_code = me.StringField()
    department_code = me.StringField()
    package_code = me.StringField()
    version = me.IntField(default=1)
    last_batch = me.ListField(me.DictField())


class DailyFiguresDoc(DayFigures):
    """This site's own ratings' daily figures."""
    meta = {"db_alias": ALIAS, "collection": "daily_figures",
            "indexes": ["rated_on", "region_code", "department_code", "package_code"]}


class RolledUpDailyFiguresDoc(DayFigures):
    """The daily figures of the cities' ratings rolled up here (at a province)."""
    meta = {"db_alias": ALIAS, "collection": "rolled_up_daily_figures",
            "indexes": ["rated_on", "region_code", "department_code", "package_code"]}


class RolledUpRatingDoc(Figures):
    """A city's rating as its province keeps it (domain.RolledUpRating), one per site, case and
    channel; the 0/1 figures beside it are copies for the statistics' $group."""
    meta = {"db_alias": ALIAS, "collection": "rolled_up_ratings", "indexes": ["uncounted"]}
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
    # the daily figures (RolledUpDailyFiguresDoc), as on a site's own ratings (EvaluationDoc)
    uncounted = me.IntField()
    counted_version = me.IntField(default=0)
    counted = me.DictField()


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


ROLLED_UP_RETIRED = tuple(((field, 1),) for field in ("region_code", "department_code", "package_code", "rated_on"))
# the daily figures of this site's own ratings, and of its cities' rolled up here
OWN_DAYS = DailyFigures(EvaluationDoc, DailyFiguresDoc, "evaluations.daily_figures")
ROLLED_UP_DAYS = DailyFigures(RolledUpRatingDoc, RolledUpDailyFiguresDoc, "rolled_up_ratings.daily_figures")


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
        """Ratings, own and rolled up, stored before the daily figures are marked uncounted, so the
        sweeps count them in; True once none is left (noted in `outbox_checks`)."""
        # the rolled-up ratings' indexes for the aggregation the daily figures replaced
        retire_indexes(RolledUpRatingDoc._get_collection(), ROLLED_UP_RETIRED)
        return OWN_DAYS.mark_stored_before() & ROLLED_UP_DAYS.mark_stored_before()

    def give_bad_order(self):
        """差评 stored without `bad_order` (by an earlier version) get it; True once none is left
        (noted in `outbox_checks`). Without it a 差评 is in no list."""
        def fields(doc):
            return {"bad_order": domain.bad_review_order(domain_body(doc["body"])["rectification"])}
        return fill_missing(EvaluationDoc._get_collection(), "evaluations.bad_order",
                            {"n_bad": 1, "bad_order": {"$exists": False}}, fields, projection={"body": 1})

    def statistics(self, field, region_code="", department_code="", package_code="", rated_from="", rated_to=""):
        """[{key, ratings, satisfied, bad, closed, on_time, open}] of this site's own ratings, grouped by
        a top-level field: the daily figures within the filters and what the ratings changed since
        (services/evaluation/daily.py), exact, read in time that grows with the days and codes in the
        filters, not with every rating."""
        return OWN_DAYS.statistics(field, region_code=region_code, department_code=department_code,
                                   package_code=package_code, rated_from=rated_from, rated_to=rated_to)

    # -- the daily figures, kept by the worker's sweep ----------------------------------------

    def sweep(self, limit=100):
        sent = super().sweep(limit)
        self.count_figures()
        return sent

    def count_figures(self, limit=1000):
        """Add to the daily figures, own and rolled up, what the ratings changed since they were last
        counted, at most `limit` ratings of each; the number counted."""
        return OWN_DAYS.count(limit) + ROLLED_UP_DAYS.count(limit)

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
                                 "version": 1, "uncounted": 1, "counted_version": 0})
            except DuplicateKeyError:
                return False
            return True
        found = coll.update_one({"_id": revision.key, "version": revision.version},
                                {"$set": {**fields, "uncounted": 1}, "$inc": {"version": 1}})
        return found.matched_count == 1

    def rolled_up_statistics(self, field, region_code="", department_code="", package_code="", rated_from="",
                             rated_to=""):
        """The cities' ratings rolled up here, as statistics() gives this site's own (a rating counts
        once it is known), from their own daily figures."""
        return ROLLED_UP_DAYS.statistics(field, region_code=region_code, department_code=department_code,
                                         package_code=package_code, rated_from=rated_from, rated_to=rated_to)
