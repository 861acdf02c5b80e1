"""elicense's MongoDB store (database `<prefix>elicense`): licences and per-region signing keys."""
import mongoengine as me
from pymongo.errors import DuplicateKeyError

from services.common.mongo import next_counter

ALIAS = "elicense"


class LicenseDoc(me.Document):
    meta = {"db_alias": ALIAS, "collection": "licenses",
            "indexes": ["fields.holder_code", "outbox.at", "outbox.next_at", {"fields": ["fields.case_no", "fields.item_code"], "unique": True}]}
    license_id = me.StringField(primary_key=True)
    fields = me.DictField()
    outbox = me.ListField(me.DictField())


class SigningKey(me.Document):
    meta = {"db_alias": ALIAS, "collection": "signing_keys"}
    key_id = me.StringField(primary_key=True)
    region_code = me.StringField(required=True)
    private_key = me.StringField(required=True)
    public_key = me.StringField(required=True)
    active = me.BooleanField(default=True)
    created_at = me.FloatField(default=0.0)


class Counter(me.Document):
    meta = {"db_alias": ALIAS, "collection": "counters"}
    key = me.StringField(primary_key=True)
    value = me.IntField(default=0)


class LicenseStore:
    def for_case_item(self, case_no, item_code):
        return LicenseDoc.objects(fields__case_no=case_no, fields__item_code=item_code).first()

    def get(self, license_id):
        return LicenseDoc.objects(license_id=license_id).first()

    def insert(self, fields, outbox):
        try:
            LicenseDoc(license_id=fields["license_id"], fields=fields, outbox=outbox).save(force_insert=True)
        except me.NotUniqueError:
            return False
        return True

    def by_holder(self, holder_code):
        return list(LicenseDoc.objects(fields__holder_code=holder_code))

    def by_case(self, case_no):
        return list(LicenseDoc.objects(fields__case_no=case_no))

    def next_serial(self, key):
        """The next number of `key`, atomically."""
        return next_counter(Counter._get_collection(), key)

    def serial_for(self, key, reservation):
        """The serial number kept for one licence-to-be (`reservation`, e.g. case and item): a retry
        after a failure (S3 away while the document was written) uses the same number, so a failed
        attempt leaves no gap in the register."""
        coll = Counter._get_collection()
        held = coll.find_one({"_id": f"reserved:{reservation}"})
        if held is not None:
            return held["value"]
        value = self.next_serial(key)
        try:
            coll.insert_one({"_id": f"reserved:{reservation}", "value": value})
        except DuplicateKeyError:  # a concurrent redelivery reserved one first: use that
            return coll.find_one({"_id": f"reserved:{reservation}"})["value"]
        return value

    def active_key(self, region_code):
        return SigningKey.objects(region_code=region_code, active=True).first()

    def key(self, key_id):
        return SigningKey.objects(key_id=key_id).first()

    def keys(self, region_code):
        return list(SigningKey.objects(region_code=region_code).order_by("key_id"))

    def deactivate_keys_before(self, region_code, created_at):
        """Older keys stop signing; of two rotations at once the later key stays the active one."""
        SigningKey.objects(region_code=region_code, active=True, created_at__lt=created_at).update(set__active=False)

    def revoke(self, license_id, at, reason, outbox):
        """Only a valid licence can be revoked; False when it already is."""
        return LicenseDoc.objects(license_id=license_id, fields__status="LICENSE_STATUS_VALID").update_one(
            set__fields__status="LICENSE_STATUS_REVOKED", set__fields__revoked_at=at,
            set__fields__revoke_reason=reason, push_all__outbox=outbox) == 1

    def supersede(self, license_id, at, by_license_id, reason, outbox):
        """Only a valid licence can be superseded; False when it no longer is (a redelivery)."""
        return LicenseDoc.objects(license_id=license_id, fields__status="LICENSE_STATUS_VALID").update_one(
            set__fields__status="LICENSE_STATUS_SUPERSEDED", set__fields__superseded_at=at,
            set__fields__superseded_by=by_license_id, set__fields__supersede_reason=reason,
            push_all__outbox=outbox) == 1

    def add_key(self, key_id, region_code, private_key, public_key, created_at=0.0):
        try:
            SigningKey(key_id=key_id, region_code=region_code, private_key=private_key,
                       public_key=public_key, created_at=created_at).save(force_insert=True)
        except me.NotUniqueError:
            pass
        return self.key(key_id)
