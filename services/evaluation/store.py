"""evaluation's MongoDB store (database `<prefix>evaluation`): cases that may be rated (learned
from delivery events) and the ratings, each with its rectification when it is a 差评.

A rating's `body` is what the domain sees; the top-level fields beside it (region, department,
package, day, 0/1 counters) are copies kept for queries and statistics, so those need only
top-level paths and a plain $group (SecantusDB does not follow expression paths into arrays)."""
import mongoengine as me

from services.common.mongo import plain

ALIAS = "evaluation"


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
            "indexes": ["outbox.at", "outbox.next_at", {"fields": ["case_no", "channel"], "unique": True},
                        "rect_status", "region_code", "department_code", "package_code"]}
    case_no = me.StringField(required=True)
    channel = me.StringField(required=True)
    body = me.DictField()
    outbox = me.ListField(me.DictField())
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


def copies(body):
    """The query fields of a rating, from its body."""
    rect = body.get("rectification") or {}
    status = rect.get("status", "")
    return {"region_code": body.get("region_code", ""), "department_code": body.get("department_code", ""),
            "package_code": body.get("package_code", ""), "rated_on": body.get("rated_on", ""),
            "rect_status": status, "n_satisfied": int(bool(body.get("satisfied"))),
            "n_bad": int(bool(body.get("bad_review"))), "n_open": int(status == "RECTIFICATION_STATUS_OPEN"),
            "n_closed": int(status == "RECTIFICATION_STATUS_CLOSED"), "n_on_time": int(bool(rect.get("on_time")))}


class EvaluationStore:
    def add_rateable(self, case_no, applicant_id, region_code, package_code, lead_department=""):
        RateableCase.objects(case_no=case_no).update_one(
            set__applicant_id=applicant_id, set__region_code=region_code, set__package_code=package_code,
            set__lead_department=lead_department, upsert=True)

    def mark_withdrawn(self, case_no):
        """Idempotent; kept even when the delivery's report arrives later (add_rateable leaves it)."""
        RateableCase.objects(case_no=case_no).update_one(set__withdrawn=True, upsert=True)

    def rateable(self, case_no):
        return RateableCase.objects(case_no=case_no).first()

    def insert(self, body, outbox):
        doc = EvaluationDoc(case_no=body["case_no"], channel=body["channel"], body=body, outbox=outbox,
                            **copies(body))
        try:
            doc.save(force_insert=True)
        except me.NotUniqueError:
            return None
        return doc.pk

    def get(self, case_no):
        doc = EvaluationDoc.objects(case_no=case_no).first()
        return plain(doc.body) if doc else None

    def rectifications(self, case_no, channel=""):
        """[(id, body)] of the case's ratings that opened a rectification."""
        query = EvaluationDoc.objects(case_no=case_no, n_bad=1)
        if channel:
            query = query.filter(channel=channel)
        return [(doc.pk, plain(doc.body)) for doc in query.only("id", "body")]

    def update_rectification(self, pk, expected_status, body, outbox):
        """Save a rating whose rectification changed, with its events, only if the rectification is
        still in `expected_status`. True when saved."""
        fields = {f"set__{k}": v for k, v in copies(body).items()}
        return EvaluationDoc.objects(pk=pk, rect_status=expected_status).update_one(
            set__body=body, push_all__outbox=outbox, **fields) == 1

    def bad_reviews(self, department_code="", region_code="", open_only=False):
        query = {"n_bad": 1}
        if department_code:
            query["department_code"] = department_code
        if region_code:
            query["region_code"] = region_code
        if open_only:
            query["rect_status"] = "RECTIFICATION_STATUS_OPEN"
        return [plain(doc.body) for doc in EvaluationDoc.objects(**query).only("body")]

    def statistics(self, field, region_code="", department_code="", package_code="", rated_from="", rated_to=""):
        """[{key, ratings, satisfied, bad, closed, on_time, open}] grouped by a top-level field."""
        match = {k: v for k, v in (("region_code", region_code), ("department_code", department_code),
                                   ("package_code", package_code)) if v}
        if rated_from or rated_to:
            match["rated_on"] = {k: v for k, v in (("$gte", rated_from), ("$lte", rated_to)) if v}
        pipeline = [{"$match": match}, {"$group": {
            "_id": f"${field}", "ratings": {"$sum": 1}, "satisfied": {"$sum": "$n_satisfied"},
            "bad": {"$sum": "$n_bad"}, "closed": {"$sum": "$n_closed"}, "on_time": {"$sum": "$n_on_time"},
            "open": {"$sum": "$n_open"}}}]
        rows = EvaluationDoc._get_collection().aggregate(pipeline)
        return [{"key": r["_id"] or "", **{k: int(r[k]) for k in ("ratings", "satisfied", "bad", "closed",
                                                                 "on_time", "open")}} for r in rows]
