"""delivery's MongoDB store (database `<prefix>delivery`): its persistence port.

A delivery is saved with the events its change causes (the outbox, in the same atomic write) and
the store publishes them once the write is committed; a handler only says "save this, expecting
that status, with these events". The domain's enums are written as the strings the collection
has always held (domain.STORED_STATUSES / STORED_CHANNELS) and read back into enums."""
import mongoengine as me
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from services.common.mongo import OutboxStore, plain
from services.delivery import domain

ALIAS = "delivery"


class DeliveryDoc(me.Document):
    meta = {"db_alias": ALIAS, "collection": "deliveries", "indexes": ["outbox.next_at"]}
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


def to_stored(body):
    """The delivery as the collection holds it: statuses and channel as their stored strings."""
    stored = dict(body)
    if "status" in stored:
        stored["status"] = domain.STORED_STATUSES[domain.Status(stored["status"])]
    if "channel" in stored:
        stored["channel"] = domain.STORED_CHANNELS[domain.Channel(stored["channel"])]
    if "history" in stored:
        stored["history"] = [dict(h, status=domain.STORED_STATUSES[domain.Status(h["status"])])
                             for h in stored["history"]]
    return stored


def from_stored(stored):
    """The delivery as the domain works on it: statuses and channel as enums."""
    body = plain(stored)
    if "status" in body:
        body["status"] = domain.status_of_stored(body["status"])
    if "channel" in body:
        body["channel"] = domain.channel_of_stored(body["channel"])
    if "history" in body:
        body["history"] = [dict(h, status=domain.status_of_stored(h["status"])) for h in body["history"]]
    return body


class DeliveryStore(OutboxStore):
    """Deliveries (with their outbox) and the revocations delivery has learnt of."""

    document = DeliveryDoc

    def __init__(self, bus=None):
        super().__init__(bus)

    # -- deliveries ------------------------------------------------------------------------------

    def get(self, case_no):
        doc = DeliveryDoc._get_collection().find_one({"_id": case_no}, {"body": 1})
        return from_stored(doc["body"]) if doc else None

    def insert(self, body, events=()):
        """A new delivery with its events; False (and nothing written or published) when the case
        already has one. The events are published once the insert is committed."""
        events = list(events)
        try:
            DeliveryDoc(case_no=body["case_no"], body=to_stored(body), outbox=events).save(force_insert=True)
        except me.NotUniqueError:
            return False
        self.publish(body["case_no"], events)
        return True

    def update(self, case_no, expected_status, body, events=()):
        """Replace the delivery and queue its events in one atomic update, only if its status is
        still `expected_status` (so two clerks never both complete it); then publish the events.
        True when it was updated."""
        events = list(events)
        updated = DeliveryDoc._get_collection().update_one(
            {"_id": case_no, "body.status": domain.STORED_STATUSES[domain.Status(expected_status)]},
            {"$set": {"body": to_stored(body)}, "$push": {"outbox": {"$each": events}}}).matched_count == 1
        if updated:
            self.publish(case_no, events)
        return updated

    def record_pickup_failure(self, case_no, max_attempts, locked_until):
        """One more wrong pickup code, counted atomically (clerks at two windows cannot both get a free
        try); at `max_attempts` in a row the count starts again and the pickup is locked until
        `locked_until` (ISO time). Returns (wrong codes so far, locked now)."""
        coll = DeliveryDoc._get_collection()
        doc = coll.find_one_and_update({"_id": case_no}, {"$inc": {"body.pickup_failures": 1}},
                                       return_document=ReturnDocument.AFTER)
        failures = int(((doc or {}).get("body") or {}).get("pickup_failures") or 0)
        if failures >= max_attempts:
            coll.update_one({"_id": case_no, "body.pickup_failures": failures},
                            {"$set": {"body.pickup_failures": 0, "body.pickup_locked_until": locked_until}})
            return failures, True
        return failures, False

    # -- revocations -----------------------------------------------------------------------------

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
        return {d["_id"]: {"revoked_at": d.get("revoked_at") or "", "reason": d.get("reason") or ""}
                for d in RevocationDoc._get_collection().find({"case_no": case_no})}
