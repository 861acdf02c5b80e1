"""delivery's MongoDB store (database `<prefix>delivery`)."""
import mongoengine as me
from pymongo.errors import DuplicateKeyError

from services.common.mongo import plain

ALIAS = "delivery"


class DeliveryDoc(me.Document):
    meta = {"db_alias": ALIAS, "collection": "deliveries", "indexes": ["outbox.at", "outbox.next_at"]}
    case_no = me.StringField(primary_key=True)
    body = me.DictField()
    outbox = me.ListField(me.DictField())


class RevocationDoc(me.Document):
    """A licence elicense revoked, as delivery learnt it (license_revoked): its link is no longer
    given. Kept apart from the deliveries, so a revocation that arrives before the delivery exists
    still counts."""
    meta = {"db_alias": ALIAS, "collection": "revocations", "indexes": ["case_no"]}
    license_id = me.StringField(primary_key=True)
    case_no = me.StringField()
    revoked_at = me.StringField()
    reason = me.StringField()


class DeliveryStore:
    def add_revocation(self, license_id, case_no, revoked_at, reason):
        """Idempotent: the first report of a revocation is kept, a redelivered one changes nothing."""
        try:
            RevocationDoc._get_collection().update_one(
                {"_id": license_id},
                {"$setOnInsert": {"case_no": case_no, "revoked_at": revoked_at, "reason": reason}}, upsert=True)
        except DuplicateKeyError:  # a concurrent redelivery inserted it first
            pass

    def revocations(self, case_no):
        """{licence id: {"revoked_at", "reason"}} of the case's revoked licences."""
        return {d.license_id: {"revoked_at": d.revoked_at or "", "reason": d.reason or ""}
                for d in RevocationDoc.objects(case_no=case_no)}

    def get(self, case_no):
        doc = DeliveryDoc.objects(case_no=case_no).first()
        return plain(doc.body) if doc else None

    def insert(self, body, outbox):
        try:
            DeliveryDoc(case_no=body["case_no"], body=body, outbox=outbox).save(force_insert=True)
        except me.NotUniqueError:
            return False
        return True

    def record_pickup_failure(self, case_no, max_attempts, locked_until):
        """One more wrong pickup code, counted atomically (clerks at two windows cannot both get a free
        try); at `max_attempts` in a row the count starts again and the pickup is locked until
        `locked_until` (ISO time). Returns (wrong codes so far, locked now)."""
        from pymongo import ReturnDocument
        coll = DeliveryDoc._get_collection()
        doc = coll.find_one_and_update({"_id": case_no}, {"$inc": {"body.pickup_failures": 1}},
                                       return_document=ReturnDocument.AFTER)
        failures = int(((doc or {}).get("body") or {}).get("pickup_failures") or 0)
        if failures >= max_attempts:
            coll.update_one({"_id": case_no, "body.pickup_failures": failures},
                            {"$set": {"body.pickup_failures": 0, "body.pickup_locked_until": locked_until}})
            return failures, True
        return failures, False

    def update(self, case_no, expected_status, body, outbox):
        """Replace the delivery and queue its events in one atomic update, only if its status is
        still `expected_status` (so two clerks never both complete it). True when it was updated."""
        return DeliveryDoc.objects(case_no=case_no, body__status=expected_status).update_one(
            set__body=body, push_all__outbox=outbox) == 1
