"""intake's MongoDB store (database `<prefix>intake`): the persistence port of the handlers. It takes
and gives domain values (domain.Case, domain.Upload) and maps them explicitly to what is stored, so
stored cases read the same whatever the domain or the proto call things. A case is saved whole,
with the version it was decided on and the events its change causes (kept in its `outbox` in the
same write, published once the write is committed; see services.common.mongo.OutboxStore)."""
import datetime

import mongoengine as me
from pymongo.errors import DuplicateKeyError

from services.common.mongo import OutboxStore, Stored, find_all_stored, find_stored, next_counter, plain
from services.common.recent import PerStore
from services.intake import domain

ALIAS = "intake"


def _now():
    return datetime.datetime.now(datetime.UTC)


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
    created_at = me.DateTimeField(default=_now)


class CaseDoc(me.Document):
    meta = {"db_alias": ALIAS, "collection": "cases",
            "indexes": ["outbox.next_at", ("applicant.id_number", "-submitted_at", "-case_no"),
                        {"fields": ["idempotency_key"], "unique": True, "sparse": True}]}
    # dropped by the worker's first sweep (services.common.mongo.retire_indexes): the compound index
    # above answers a query on the applicant alone, and each index costs every write of a case
    retired_indexes = ((("applicant.id_number", 1),),)
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
    submitted_at = me.DateTimeField(default=_now)
    rectification_rounds = me.DictField()  # item → the last rectification round asked
    revoked_license_ids = me.ListField(me.StringField())  # licences of the case elicense revoked
    delivery_attempt = me.IntField(default=0)  # the latest delivery attempt intake has heard of
    noted = me.ListField(me.StringField())     # the events already recorded on the case
    parties = me.ListField(me.DictField())     # whom the case is about besides the applicant (role, name, id_number, code_type)
    task_holders = me.ListField(me.DictField())  # departments given a task in it: {department_code, region_code}
    version = me.IntField(default=0)           # saved changes; cases stored before it was kept have none (0)
    outbox = me.ListField(me.DictField())


class Counter(me.Document):
    meta = {"db_alias": ALIAS, "collection": "counters"}
    key = me.StringField(primary_key=True)
    value = me.IntField(default=0)


# --- the stored forms ---------------------------------------------------------------------------------

def stored_history(entry):
    out = {"status": domain.STORED_STATUS[entry.status], "at": entry.at, "note": entry.note}
    if entry.note_only:
        out["note_only"] = True
    return out


def history_entry(stored):
    return domain.HistoryEntry(status=domain.STATUS_OF_STORED[stored["status"]], at=stored.get("at", ""),
                               note=stored.get("note", ""), note_only=bool(stored.get("note_only")))


def stored_rectification(rect):
    out = dict(rect or {})
    if out.get("resume_status"):
        out["resume_status"] = domain.STORED_STATUS[domain.CaseStatus(out["resume_status"])]
    return out


def rectification(stored):
    out = plain(stored or {})
    if out.get("resume_status"):
        out["resume_status"] = domain.STATUS_OF_STORED[out["resume_status"]]
    return out


def stored_holder(holder):
    return {"department_code": holder.department_code, "region_code": holder.region_code}


def task_holder(stored):
    return domain.TaskHolder(department_code=stored.get("department_code", ""), region_code=stored.get("region_code", ""))


# what a save may change: everything but the case's identity and what its submission fixed
_CHANGING = ("status", "history", "materials", "license_ids", "revoked_license_ids", "rectification",
             "rectification_rounds", "delivery_attempt", "noted", "task_holders")


def stored_case(case):
    """The stored fields of a case (no `_id`, no outbox); absent keys are left out, not null (the
    idempotency key's index is sparse)."""
    out = {"package_code": case.package_code, "package_version": int(case.package_version or 0),
           "region_code": case.region_code, "applicant": dict(case.applicant or {}),
           "status": domain.STORED_STATUS[case.status], "form": dict(case.form or {}),
           "materials": [dict(m) for m in case.materials], "delivery": dict(case.delivery or {}),
           "history": [stored_history(h) for h in case.history], "license_ids": list(case.license_ids),
           "situations": dict(case.situations or {}), "rectification": stored_rectification(case.rectification),
           "submitted_at": case.submitted_at, "rectification_rounds": dict(case.rectification_rounds or {}),
           "revoked_license_ids": list(case.revoked_license_ids), "delivery_attempt": int(case.delivery_attempt or 0),
           "noted": list(case.noted), "parties": [dict(p) for p in case.parties],
           "task_holders": [stored_holder(h) for h in case.task_holders]}
    if case.idempotency_key:
        out["idempotency_key"] = case.idempotency_key
    if case.request_hash:
        out["request_hash"] = case.request_hash
    return out


def case_of(doc):
    """The domain's case of a stored one (a CaseDoc)."""
    if doc is None:
        return None
    return domain.Case(
        case_no=doc.case_no, package_code=doc.package_code, package_version=doc.package_version or 0,
        region_code=doc.region_code, applicant=plain(doc.applicant or {}),
        status=domain.STATUS_OF_STORED[doc.status], submitted_at=doc.submitted_at, form=plain(doc.form or {}),
        materials=plain(list(doc.materials or [])), delivery=plain(doc.delivery or {}),
        situations=plain(doc.situations or {}), parties=plain(list(doc.parties or [])),
        history=[history_entry(h) for h in doc.history or []], license_ids=list(doc.license_ids or []),
        revoked_license_ids=list(doc.revoked_license_ids or []), rectification=rectification(doc.rectification),
        rectification_rounds=plain(doc.rectification_rounds or {}), delivery_attempt=doc.delivery_attempt or 0,
        noted=list(doc.noted or []), task_holders=[task_holder(h) for h in doc.task_holders or []],
        idempotency_key=doc.idempotency_key or None,
        request_hash=doc.request_hash or None, version=doc.version or 0)


def upload_of(doc):
    if doc is None:
        return None
    return domain.Upload(upload_id=doc.upload_id, applicant_id=doc.applicant_id, material_code=doc.material_code,
                         sha256=doc.sha256, size=doc.size, object_key=doc.object_key, file_name=doc.file_name or "",
                         content_type=doc.content_type or "", created_at=doc.created_at)


class IntakeStore(OutboxStore):
    """Cases and uploads. Every change of a case is a compare-and-set on its version: a save whose
    case changed meanwhile is refused (False) and the handler decides again on the case as it is
    now. The events a save carries are published after it is committed; what a broker outage or a
    dead process leaves pending is published by `sweep()`."""

    document = CaseDoc
    _recent = PerStore(64)  # the cases this process last read to change, and saved since (services/common/recent.py)

    def save_upload(self, upload):
        UploadDoc._get_collection().insert_one({
            "_id": upload.upload_id, "applicant_id": upload.applicant_id, "material_code": upload.material_code,
            "file_name": upload.file_name, "content_type": upload.content_type, "sha256": upload.sha256,
            "size": int(upload.size), "object_key": upload.object_key, "created_at": upload.created_at or _now()})

    def upload(self, upload_id):
        return upload_of(find_stored(UploadDoc, {"_id": upload_id}))

    def uploads(self, upload_ids):
        """{upload_id: Upload} of those of `upload_ids` that exist, in one query."""
        ids = sorted({i for i in upload_ids if isinstance(i, str) and i})
        if not ids:
            return {}
        return {up.upload_id: up for up in map(upload_of, find_all_stored(UploadDoc, {"_id": {"$in": ids}}))}

    def next_sequence(self, key):
        """The next number of `key`, atomically (concurrent first submissions of a day included)."""
        return next_counter(Counter._get_collection(), key)

    def by_idempotency_key(self, key):
        return case_of(CaseDoc.objects(idempotency_key=key).first()) if key else None

    def insert_case(self, case, events=()):
        """Insert a new case (version 1) with its events; False when its idempotency key (or
        number) is taken already."""
        events = list(events)
        fields = stored_case(case)
        if not fields["rectification"]:
            del fields["rectification"]
        if fields["submitted_at"] is None:
            fields["submitted_at"] = _now()
        try:  # with pymongo alone: mongoengine's building and validating the document cost more than the write
            CaseDoc._get_collection().insert_one({"_id": case.case_no, "version": 1, "outbox": events, **fields})
        except DuplicateKeyError:
            return False
        self.publish(case.case_no, events)
        return True

    def case(self, case_no):
        return case_of(find_stored(CaseDoc, {"_id": case_no}))

    def case_to_change(self, case_no):
        """The case as stored now (None: there is none), kept as this process's recent copy of it."""
        found = CaseDoc._get_collection().find_one({"_id": case_no})
        if found is None:
            self._recent.drop(case_no)
            return None
        found.pop("outbox", None)
        self._recent.put(case_no, found.get("version") or 0, found)
        return case_of(Stored(found, "case_no"))

    def recent(self, case_no):
        """The case as this process last read it to change it (case_to_change), with the saves it made
        from that copy since, or None.
        It may be stale: a save from it may be refused, and a caller must not decide from it alone
        what a fresh read would decide otherwise."""
        found = self._recent.get(case_no)
        return None if found is None else case_of(Stored(found[0], "case_no"))

    def save(self, case, expected_version, events=()):
        """Write the case's changes (status, history, materials, licences, rectification, recorded
        events, delivery attempt, task holders) and add `events` to its outbox, only while the stored case still
        has `expected_version`; then publish those events. True when it was written."""
        events = list(events)
        fields = stored_case(case)
        changes = {name: fields[name] for name in _CHANGING}
        update = {"$set": changes, "$inc": {"version": 1}}
        if not changes["rectification"]:  # kept only while there is one, as it always was
            del changes["rectification"]
            update["$unset"] = {"rectification": ""}
        if events:
            update["$push"] = {"outbox": {"$each": events}}
        # a case stored before versions were kept has none: version 0
        version = {"$in": [0, None]} if not expected_version else int(expected_version)
        written = CaseDoc._get_collection().update_one({"_id": case.case_no, "version": version}, update)
        if written.modified_count != 1:
            self._recent.drop(case.case_no)
            return False
        self.publish(case.case_no, events)
        self._keep_saved(case.case_no, int(expected_version or 0), update)
        return True

    def _keep_saved(self, case_no, expected_version, update):
        """After a save: the copy kept of the version it started from, with what the save wrote, so
        that it is what a read would give (the caller's case may differ from the stored one in what a
        save never writes)."""
        def written(stored, _):
            stored.update(update["$set"])
            for name in update.get("$unset", ()):
                stored.pop(name, None)
            stored["version"] = expected_version + 1
            return stored, None
        self._recent.advanced(case_no, expected_version, written)

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
        return [case_of(d) for d in qs.order_by("-submitted_at", "-case_no").limit(limit)]
