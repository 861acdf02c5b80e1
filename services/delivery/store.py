"""delivery's MongoDB store (database `<prefix>delivery`)."""
import mongoengine as me

from services.common.mongo import plain

ALIAS = "delivery"


class DeliveryDoc(me.Document):
    meta = {"db_alias": ALIAS, "collection": "deliveries", "indexes": ["outbox.at"]}
    case_no = me.StringField(primary_key=True)
    body = me.DictField()
    outbox = me.ListField(me.DictField())


class DeliveryStore:
    def get(self, case_no):
        doc = DeliveryDoc.objects(case_no=case_no).first()
        return plain(doc.body) if doc else None

    def insert(self, body, outbox):
        try:
            DeliveryDoc(case_no=body["case_no"], body=body, outbox=outbox).save(force_insert=True)
        except me.NotUniqueError:
            return False
        return True

    def update(self, case_no, expected_status, body, outbox):
        """Replace the delivery and queue its events in one atomic update, only if its status is
        still `expected_status` (so two clerks never both complete it). True when it was updated."""
        return DeliveryDoc.objects(case_no=case_no, body__status=expected_status).update_one(
            set__body=body, push_all__outbox=outbox) == 1
