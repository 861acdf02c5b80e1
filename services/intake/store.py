"""intake's MongoDB store (database `<prefix>intake`)."""
import datetime

import mongoengine as me
from pymongo import ReturnDocument

ALIAS = "intake"


def now():
    return datetime.datetime.now(datetime.timezone.utc)


class UploadDoc(me.Document):
    meta = {"db_alias": ALIAS, "collection": "uploads"}
    upload_id = me.StringField(primary_key=True)
    applicant_id = me.StringField(required=True)
    material_code = me.StringField(required=True)
    file_name = me.StringField()
    content_type = me.StringField()
    sha256 = me.StringField(required=True)
    size = me.IntField(required=True)
    object_key = me.StringField(required=True)
    created_at = me.DateTimeField(default=now)


class CaseDoc(me.Document):
    meta = {"db_alias": ALIAS, "collection": "cases",
            "indexes": ["applicant.id_number", "outbox.at",
                        {"fields": ["idempotency_key"], "unique": True, "sparse": True}]}
    case_no = me.StringField(primary_key=True)
    idempotency_key = me.StringField()
    package_code = me.StringField(required=True)
    package_version = me.IntField(required=True)
    region_code = me.StringField(required=True)
    applicant = me.DictField()
    status = me.StringField(required=True)
    form = me.DictField()
    materials = me.ListField(me.DictField())
    delivery = me.DictField()
    history = me.ListField(me.DictField())
    license_ids = me.ListField(me.StringField())
    submitted_at = me.DateTimeField(default=now)
    outbox = me.ListField(me.DictField())


class Counter(me.Document):
    meta = {"db_alias": ALIAS, "collection": "counters"}
    key = me.StringField(primary_key=True)
    value = me.IntField(default=0)


class IntakeStore:
    def save_upload(self, **fields):
        UploadDoc(**fields).save(force_insert=True)

    def upload(self, upload_id):
        return UploadDoc.objects(upload_id=upload_id).first()

    def next_sequence(self, key):
        coll = Counter._get_collection()
        doc = coll.find_one_and_update({"_id": key}, {"$inc": {"value": 1}}, upsert=True,
                                       return_document=ReturnDocument.AFTER)
        return doc["value"]

    def by_idempotency_key(self, key):
        return CaseDoc.objects(idempotency_key=key).first() if key else None

    def insert_case(self, doc):
        """Insert; False when the idempotency key is already taken."""
        try:
            doc.save(force_insert=True)
        except me.NotUniqueError:
            return False
        return True

    def case(self, case_no):
        return CaseDoc.objects(case_no=case_no).first()

    def move_status(self, case_no, expected, status, note, outbox=None, license_ids=None):
        """Compare-and-set on the status so concurrent events cannot move a case backwards."""
        update = {"set__status": status,
                  "push__history": {"status": status, "at": now().isoformat(), "note": note}}
        if license_ids:
            update["add_to_set__license_ids"] = list(license_ids)
        if outbox:
            update["push_all__outbox"] = outbox
        return CaseDoc.objects(case_no=case_no, status=expected).update_one(**update) == 1
