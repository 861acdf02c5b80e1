"""elicense's MongoDB store (database `<prefix>elicense`): licences, this site's per-region signing
keys, and its key directory (the keys other sites published).

The port the handlers use (services.elicense.fakes.MemoryLicenseStore is its in-memory twin, held
to the same contract tests): licences are plain dicts of their fields with the status a
domain.LicenseStatus; signing keys are domain.SigningKey, directory keys domain.PublishedKey. A
change that causes events is saved with them in the licence's (or the signing key's) own outbox,
in the same atomic write, and the store publishes them after the commit
(services.common.mongo.OutboxStore); the sweep publishes what a crash or a broker outage left
pending."""
import mongoengine as me
from pymongo.errors import DuplicateKeyError

from services.common import write_behind
from services.common.bus import outbox_entry
from services.common.mongo import OutboxStore, flush_outbox, next_counter, plain, sweep_outbox
from services.elicense import codec, domain

ALIAS = "elicense"


class LicenseDoc(me.Document):
    meta = {"db_alias": ALIAS, "collection": "licenses",
            "indexes": ["fields.holder_code", "outbox.next_at", {"fields": ["fields.case_no", "fields.item_code"], "unique": True}]}
    license_id = me.StringField(primary_key=True)
    fields = me.DictField()
    outbox = me.ListField(me.DictField())


class SigningKeyDoc(me.Document):
    """One of this site's own keys, with the outbox of its `signing_key_published` events."""
    meta = {"db_alias": ALIAS, "collection": "signing_keys", "indexes": ["outbox.next_at"]}
    key_id = me.StringField(primary_key=True)
    region_code = me.StringField(required=True)
    private_key = me.StringField(required=True)
    public_key = me.StringField(required=True)
    active = me.BooleanField(default=True)
    created_at = me.FloatField(default=0.0)
    retired_at = me.FloatField(default=0.0)
    outbox = me.ListField(me.DictField())


class DirectoryKeyDoc(me.Document):
    """The key directory: a signing key another site published (its public half only)."""
    meta = {"db_alias": ALIAS, "collection": "directory_keys", "indexes": ["issuer_region"]}
    key_id = me.StringField(primary_key=True)
    site_region = me.StringField(required=True)
    issuer_region = me.StringField(required=True)
    algorithm = me.StringField(required=True)
    public_key = me.StringField(required=True)
    valid_from = me.FloatField(default=0.0)
    valid_until = me.FloatField(default=0.0)
    received_at = me.FloatField(default=0.0)


class CounterDoc(me.Document):
    """One register's last serial number. Only counters live here: the local MongoDB server
    (SecantusDB 0.7) answers findAndModify by reading the whole collection, so the collection the
    serials are drawn from must stay a handful of documents (reservations have their own)."""
    meta = {"db_alias": ALIAS, "collection": "counters"}
    key = me.StringField(primary_key=True)
    value = me.IntField(default=0)


class ReservationDoc(me.Document):
    """The serial kept for one licence-to-be (serial_for), by `<case>:<item>`."""
    meta = {"db_alias": ALIAS, "collection": "serial_reservations"}
    key = me.StringField(primary_key=True)
    value = me.IntField(required=True)


LEGACY_RESERVATION = "reserved:"  # how reservations were kept in `counters` before they had their own collection


def move_reservations(limit=1000):
    """Move the reservations earlier versions kept in `counters` to their own collection, `limit`
    at a time; the number moved. Safe to run again or from two processes at once: a reservation is
    copied (a copy there already is kept) before it leaves `counters`."""
    counters, reservations = CounterDoc._get_collection(), ReservationDoc._get_collection()
    moved = 0
    while True:
        batch = list(counters.find({"_id": {"$regex": f"^{LEGACY_RESERVATION}"}}).limit(limit))
        if not batch:
            return moved
        for doc in batch:
            try:
                reservations.insert_one({"_id": doc["_id"][len(LEGACY_RESERVATION):], "value": doc["value"]})
            except DuplicateKeyError:
                pass
        counters.delete_many({"_id": {"$in": [d["_id"] for d in batch]}})
        moved += len(batch)


def outbox_entries(events):
    """The outbox entries of domain events (LicenseIssued, LicenseRevoked, PublishedKey). An event
    whose id is derived from what it says (PublishedKey.event_id) keeps that id, so a repeat is
    absorbed by the consumers' inboxes; any other gets a new one."""
    entries = []
    for event in events or ():
        event_type, message = codec.event_message(event)
        entry = outbox_entry(event_type, message, getattr(event, "case_no", ""))
        if getattr(event, "event_id", ""):
            entry["id"] = event.event_id
        entries.append(entry)
    return entries


def _licence(doc):
    return codec.licence_of_stored(plain(doc.fields)) if doc is not None else None


def _key(doc):
    if doc is None:
        return None
    return domain.SigningKey(key_id=doc.key_id, region_code=doc.region_code, private_key=doc.private_key,
                             public_key=doc.public_key, active=doc.active, created_at=doc.created_at or 0.0,
                             retired_at=doc.retired_at or 0.0)


def _directory_key(doc):
    if doc is None:
        return None
    return domain.PublishedKey(site_region=doc.site_region, key_id=doc.key_id, issuer_region=doc.issuer_region,
                               public_key=doc.public_key, algorithm=codec.algorithm_of_stored(doc.algorithm),
                               valid_from=doc.valid_from or 0.0, valid_until=doc.valid_until or 0.0)


class LicenseStore(OutboxStore):
    document = LicenseDoc
    #: whether reservations an earlier version kept among the counters may still be there: False once
    #: this process has moved them (build_elicense, at start), so a serial no longer looks there too
    legacy_reservations = True

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
        coll = ReservationDoc._get_collection()
        held = coll.find_one({"_id": reservation})
        if held is None and self.legacy_reservations:  # one an earlier version made, not moved yet
            held = CounterDoc._get_collection().find_one({"_id": f"{LEGACY_RESERVATION}{reservation}"})
        if held is not None:
            return held["value"]
        value = self.next_serial(key)
        try:
            coll.insert_one({"_id": reservation, "value": value})
        except DuplicateKeyError:  # a concurrent redelivery reserved one first: use that
            return coll.find_one({"_id": reservation})["value"]
        return value

    # --- signing keys -----------------------------------------------------------------------

    def active_key(self, region_code):
        return _key(SigningKeyDoc.objects(region_code=region_code, active=True).first())

    def key(self, key_id):
        return _key(SigningKeyDoc.objects(key_id=key_id).first())

    def keys(self, region_code):
        return [_key(d) for d in SigningKeyDoc.objects(region_code=region_code).order_by("key_id")]

    def every_key(self):
        """Every key this site holds, of every region, by id."""
        return [_key(d) for d in SigningKeyDoc.objects.order_by("key_id")]

    def add_key(self, key, events=()):
        """Keep a new key (a domain.SigningKey) with the events it causes; the key kept under its id
        (the first one, if two writers chose the same id: the loser's events are not kept)."""
        entries = outbox_entries(events)
        try:
            SigningKeyDoc(key_id=key.key_id, region_code=key.region_code, private_key=key.private_key,
                          public_key=key.public_key, active=key.active, created_at=key.created_at,
                          retired_at=key.retired_at, outbox=entries).save(force_insert=True)
        except me.NotUniqueError:
            return self.key(key.key_id)
        self._publish_key(key.key_id, entries)
        return self.key(key.key_id)

    def retire_key(self, key_id, retired_at, events=()):
        """An active key made no later than `retired_at` stops signing then, with the events it
        causes, in one conditional write; False (nothing changed) when it is not (or no longer) such
        a key (of two rotations at once, the later key stays the active one)."""
        entries = outbox_entries(events)
        update = {"set__active": False, "set__retired_at": retired_at}
        if entries:
            update["push_all__outbox"] = entries
        done = SigningKeyDoc.objects(key_id=key_id, active=True, created_at__lte=retired_at).update_one(
            **update) == 1
        if done:
            self._publish_key(key_id, entries)
        return done

    def announce_key(self, key_id, events):
        """Add `events` (their ids derived from what they say) to a key's outbox unless an entry of
        the same id is pending there already, and publish them; the number added."""
        coll = SigningKeyDoc._get_collection()
        added = [e for e in outbox_entries(events)
                 if coll.update_one({"_id": key_id, "outbox.id": {"$ne": e["id"]}},
                                    {"$push": {"outbox": e}}).modified_count == 1]
        self._publish_key(key_id, added)
        return len(added)

    def _publish_key(self, key_id, entries):
        if entries and self.bus is not None:
            flush_outbox(SigningKeyDoc, key_id, self.bus, entries)

    # --- the key directory: keys other sites published -------------------------------------------

    def directory_key(self, key_id):
        return _directory_key(DirectoryKeyDoc.objects(key_id=key_id).first())

    def directory_keys(self, issuer_region):
        return [_directory_key(d) for d in DirectoryKeyDoc.objects(issuer_region=issuer_region).order_by("key_id")]

    def add_directory_key(self, key, received_at=0.0):
        """Keep a key another site published (a domain.PublishedKey); False (nothing changed) when a
        key of that id is known already."""
        try:
            DirectoryKeyDoc(key_id=key.key_id, site_region=key.site_region, issuer_region=key.issuer_region,
                            algorithm=codec.stored_algorithm(key.algorithm), public_key=key.public_key,
                            valid_from=key.valid_from, valid_until=key.valid_until,
                            received_at=received_at).save(force_insert=True)
        except me.NotUniqueError:
            return False
        return True

    def update_directory_key(self, key):
        """Set the dates of a known directory key, only while it is the same key (its public key and
        site); False (nothing changed) otherwise."""
        return DirectoryKeyDoc.objects(key_id=key.key_id, public_key=key.public_key,
                                       site_region=key.site_region).update_one(
            set__valid_from=key.valid_from, set__valid_until=key.valid_until) == 1

    # --- the outbox of both kinds of aggregate -------------------------------------------------

    def sweep(self, limit=100):
        """Publish due entries of licences and of signing keys; the number published."""
        if self.bus is None:
            return 0
        return sweep_outbox(LicenseDoc, self.bus, limit=limit) + sweep_outbox(SigningKeyDoc, self.bus, limit=limit)

    def pending(self, aggregate_id):
        """The entries still waiting on one licence or signing key."""
        write_behind.flush()  # published ones whose removal waits are not pending
        for doc_cls in (LicenseDoc, SigningKeyDoc):
            doc = doc_cls._get_collection().find_one({"_id": aggregate_id}, {"outbox": 1})
            if doc is not None:
                return list(doc.get("outbox") or [])
        return []
