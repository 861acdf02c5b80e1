"""intake's MongoDB store (database `<prefix>intake`)."""
import datetime

import mongoengine as me
from services.common.mongo import next_counter

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
            "indexes": ["applicant.id_number", "outbox.at", "outbox.next_at", ("applicant.id_number", "-submitted_at", "-case_no"),
                        {"fields": ["idempotency_key"], "unique": True, "sparse": True}]}
    case_no = me.StringField(primary_key=True)
    idempotency_key = me.StringField()
    request_hash = me.StringField()    # sha256 of what the submission asked for (a reused key must match)
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
    situations = me.DictField()
    rectification = me.DictField()     # while RECTIFYING: named materials, requests, resume_status
    submitted_at = me.DateTimeField(default=now)
    rectification_rounds = me.DictField()  # item → the last rectification round asked
    revoked_license_ids = me.ListField(me.StringField())  # licences of the case elicense revoked
    delivery_attempt = me.IntField(default=0)  # the latest delivery attempt intake has heard of
    noted = me.ListField(me.StringField())     # the events already recorded (see IntakeStore.record)
    parties = me.ListField(me.DictField())     # whom the case is about besides the applicant (role, name, id_number, code_type)
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
        """The next number of `key`, atomically (concurrent first submissions of a day included)."""
        return next_counter(Counter._get_collection(), key)

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

    def add_licenses(self, case_no, license_ids):
        CaseDoc.objects(case_no=case_no).update_one(add_to_set__license_ids=list(license_ids))

    def move_status(self, case_no, expected, status, note, outbox=None, license_ids=None):
        """Compare-and-set on the status so concurrent events cannot move a case backwards."""
        update = {"set__status": status,
                  "push__history": {"status": status, "at": now().isoformat(), "note": note}}
        if license_ids:
            update["add_to_set__license_ids"] = list(license_ids)
        if outbox:
            update["push_all__outbox"] = outbox
        return CaseDoc.objects(case_no=case_no, status=expected).update_one(**update) == 1

    def update_case(self, case_no, expected_status, set_fields, note, outbox=None, unset=(), expect_requests=None):
        """Compare-and-set: change the case only while it still has `expected_status` (and, for a
        rectification, the same requests), so concurrent changes never overwrite each other."""
        query = {"_id": case_no, "status": expected_status}
        if expect_requests is not None:
            query["rectification.requests"] = {"$size": expect_requests}
        update = {"$set": dict(set_fields),
                  "$push": {"history": {"status": set_fields.get("status", expected_status),
                                        "at": now().isoformat(), "note": note}}}
        if outbox:
            update["$push"]["outbox"] = {"$each": list(outbox)}
        if unset:
            update["$unset"] = {f: "" for f in unset}
        return CaseDoc._get_collection().update_one(query, update).modified_count == 1

    def record(self, case_no, expected_status, status, note, key, set_fields=None, add_to_set=None, raise_attempt=0,
               expect=None):
        """One change an event makes, compare-and-set: only while the case still has
        `expected_status` (and the `expect` values) and has not recorded `key` yet, so a redelivered
        event changes nothing. Appends a history entry (`note_only` when the status stays), remembers
        `key`, sets `set_fields`, adds `add_to_set` values and raises delivery_attempt to
        `raise_attempt`. True when it changed the case."""
        query = {"_id": case_no, "status": expected_status, "noted": {"$ne": key}, **(expect or {})}
        entry = {"status": status, "at": now().isoformat(), "note": note}
        if status == expected_status:
            entry["note_only"] = True
        update = {"$set": {"status": status, **(set_fields or {})}, "$push": {"history": entry},
                  "$addToSet": {"noted": key, **(add_to_set or {})}}
        if raise_attempt:
            update["$max"] = {"delivery_attempt": int(raise_attempt)}
        return CaseDoc._get_collection().update_one(query, update).modified_count == 1

    def set_rectification(self, case_no, expected_status, expected_rectification, status, rectification, note,
                          rounds=None):
        query = {"_id": case_no, "status": expected_status}
        if expected_status == "CASE_STATUS_RECTIFYING":
            query["rectification.requests"] = {"$size": len(expected_rectification.get("requests", []))}
        changes = {"status": status, "rectification": rectification}
        for item, n in (rounds or {}).items():
            changes[f"rectification_rounds.{item}"] = n
        update = {"$set": changes,
                  "$push": {"history": {"status": status, "at": now().isoformat(), "note": note}}}
        return CaseDoc._get_collection().update_one(query, update).modified_count == 1

    def cases_of(self, applicant_id, limit, after=None, region_prefix=None):
        """An applicant's cases, newest first; `after` = (submitted_at, case_no) of the last one seen;
        `region_prefix`: only cases whose region code starts with it (services.common.config.region_prefix)."""
        query = {"applicant__id_number": applicant_id}
        qs = CaseDoc.objects(**query)
        if region_prefix is not None:
            qs = qs.filter(__raw__={"region_code": {"$regex": f"^{region_prefix}[0-9]*$"}})
        if after is not None:
            at, case_no = after
            qs = qs.filter(__raw__={"$or": [{"submitted_at": {"$lt": at}},
                                            {"submitted_at": at, "_id": {"$lt": case_no}}]})
        return list(qs.order_by("-submitted_at", "-case_no").limit(limit))
