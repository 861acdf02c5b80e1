"""elicense's MongoDB store (database `<prefix>elicense`): licences and per-region signing keys.

The port the handlers use (services.elicense.fakes.MemoryLicenseStore is its in-memory twin, held
to the same contract tests): licences are plain dicts of their fields with the status a
domain.LicenseStatus; signing keys are domain.SigningKey. A change that causes events is saved
with them in the licence's own outbox, in the same atomic write, and the store publishes them after
the commit (services.common.mongo.OutboxStore); the sweep publishes what a crash or a broker outage
left pending."""
import mongoengine as me
from pymongo.errors import DuplicateKeyError

from services.common.bus import outbox_entry
from services.common.mongo import OutboxStore, next_counter, plain
from services.elicense import codec, domain

ALIAS = "elicense"


class LicenseDoc(me.Document):
    meta = {"db_alias": ALIAS, "collection": "licenses",
            "indexes": ["fields.holder_code", "outbox.at", "outbox.next_at", {"fields": ["fields.case_no", "fields.item_code"], "unique": True}]}
    license_id = me.StringField(primary_key=True)
    fields = me.DictField()
    outbox = me.ListField(me.DictField())


class SigningKeyDoc(me.Document):
    meta = {"db_alias": ALIAS, "collection": "signing_keys"}
    key_id = me.StringField(primary_key=True)
    region_code = me.StringField(required=True)
    private_key = me.StringField(required=True)
    public_key = me.StringField(required=True)
    active = me.BooleanField(default=True)
    created_at = me.FloatField(default=0.0)


class CounterDoc(me.Document):
    meta = {"db_alias": ALIAS, "collection": "counters"}
    key = me.StringField(primary_key=True)
    value = me.IntField(default=0)


def outbox_entries(events):
    """The outbox entries of domain events (LicenseIssued, LicenseRevoked)."""
    entries = []
    for event in events or ():
        event_type, message = codec.event_message(event)
        entries.append(outbox_entry(event_type, message, event.case_no))
    return entries


def _licence(doc):
    return codec.licence_of_stored(plain(doc.fields)) if doc is not None else None


def _key(doc):
    if doc is None:
        return None
    return domain.SigningKey(key_id=doc.key_id, region_code=doc.region_code, private_key=doc.private_key,
                             public_key=doc.public_key, active=doc.active, created_at=doc.created_at or 0.0)


class LicenseStore(OutboxStore):
    document = LicenseDoc

    # --- licences ---------------------------------------------------------------------------

    def get(self, license_id):
        return _licence(LicenseDoc.objects(license_id=license_id).first())

    def for_case_item(self, case_no, item_code):
        return _licence(LicenseDoc.objects(fields__case_no=case_no, fields__item_code=item_code).first())

    def by_holder(self, holder_code):
        return [_licence(d) for d in LicenseDoc.objects(fields__holder_code=holder_code)]

    def by_case(self, case_no):
        return [_licence(d) for d in LicenseDoc.objects(fields__case_no=case_no)]

    def insert(self, fields, events=()):
        """Save a new licence with the events it causes; False (nothing saved) when the licence, or
        one for the same case and item, exists already."""
        entries = outbox_entries(events)
        try:
            LicenseDoc(license_id=fields["license_id"], fields=codec.licence_to_stored(fields),
                       outbox=entries).save(force_insert=True)
        except me.NotUniqueError:
            return False
        self.publish(fields["license_id"], entries)
        return True

    def change_status(self, license_id, expected, status, changes=None, events=()):
        """Move a licence from status `expected` to `status`, setting `changes` (more fields) and
        adding `events`, in one conditional write; False (nothing changed) when the licence is not
        (or no longer) in the expected status."""
        entries = outbox_entries(events)
        update = {"set__fields__status": codec.stored_status(status)}
        for name, value in (changes or {}).items():
            if name in ("status", "license_id"):
                raise ValueError(f"{name} is not changed this way")
            update[f"set__fields__{name}"] = value
        if entries:
            update["push_all__outbox"] = entries
        done = LicenseDoc.objects(license_id=license_id, fields__status=codec.stored_status(expected)).update_one(
            **update) == 1
        if done:
            self.publish(license_id, entries)
        return done

    def next_serial(self, key):
        """The next number of `key`, atomically."""
        return next_counter(CounterDoc._get_collection(), key)

    def serial_for(self, key, reservation):
        """The serial number kept for one licence-to-be (`reservation`, e.g. case and item): a retry
        after a failure (S3 away while the document was written) uses the same number, so a failed
        attempt leaves no gap in the register."""
        coll = CounterDoc._get_collection()
        held = coll.find_one({"_id": f"reserved:{reservation}"})
        if held is not None:
            return held["value"]
        value = self.next_serial(key)
        try:
            coll.insert_one({"_id": f"reserved:{reservation}", "value": value})
        except DuplicateKeyError:  # a concurrent redelivery reserved one first: use that
            return coll.find_one({"_id": f"reserved:{reservation}"})["value"]
        return value

    # --- signing keys -----------------------------------------------------------------------

    def active_key(self, region_code):
        return _key(SigningKeyDoc.objects(region_code=region_code, active=True).first())

    def key(self, key_id):
        return _key(SigningKeyDoc.objects(key_id=key_id).first())

    def keys(self, region_code):
        return [_key(d) for d in SigningKeyDoc.objects(region_code=region_code).order_by("key_id")]

    def add_key(self, key):
        """Keep a new key (a domain.SigningKey); the key kept under its id (the first one, if two
        writers chose the same id)."""
        try:
            SigningKeyDoc(key_id=key.key_id, region_code=key.region_code, private_key=key.private_key,
                          public_key=key.public_key, active=key.active,
                          created_at=key.created_at).save(force_insert=True)
        except me.NotUniqueError:
            pass
        return self.key(key.key_id)

    def deactivate_keys_before(self, region_code, created_at):
        """Older keys stop signing; of two rotations at once the later key stays the active one."""
        SigningKeyDoc.objects(region_code=region_code, active=True, created_at__lt=created_at).update(
            set__active=False)
