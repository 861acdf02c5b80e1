"""evaluation's MongoDB store (database `<prefix>evaluation`): cases that may be rated (learned
from delivery events) and the ratings."""
import mongoengine as me

from services.common.mongo import plain

ALIAS = "evaluation"


class RateableCase(me.Document):
    meta = {"db_alias": ALIAS, "collection": "rateable_cases"}
    case_no = me.StringField(primary_key=True)
    applicant_id = me.StringField()
    region_code = me.StringField()
    package_code = me.StringField()


class EvaluationDoc(me.Document):
    meta = {"db_alias": ALIAS, "collection": "evaluations",
            "indexes": ["outbox.at", {"fields": ["case_no", "channel"], "unique": True}]}
    case_no = me.StringField(required=True)
    channel = me.StringField(required=True)
    body = me.DictField()
    outbox = me.ListField(me.DictField())


class EvaluationStore:
    def add_rateable(self, case_no, applicant_id, region_code, package_code):
        RateableCase.objects(case_no=case_no).update_one(
            set__applicant_id=applicant_id, set__region_code=region_code, set__package_code=package_code,
            upsert=True)

    def rateable(self, case_no):
        return RateableCase.objects(case_no=case_no).first()

    def insert(self, body, outbox):
        doc = EvaluationDoc(case_no=body["case_no"], channel=body["channel"], body=body, outbox=outbox)
        try:
            doc.save(force_insert=True)
        except me.NotUniqueError:
            return None
        return doc.pk

    def get(self, case_no):
        doc = EvaluationDoc.objects(case_no=case_no).first()
        return plain(doc.body) if doc else None
