"""intake use cases: streamed uploads, case submission, supplements (补正), withdrawal, watching and
listing cases, and the status a case has as the other services report on it. Store, blobs,
catalog, licences and clock are passed in (services/intake/wiring.py); the store saves a case with
the version it was decided on and the events the change causes, and publishes them itself. Cases
go in and out as domain values (domain.Case)."""
import copy
import dataclasses
import datetime
import hashlib
import json
import logging
import time
import uuid

from onething.intake.v1 import events_pb2
from services.common import paging, telemetry
from services.common.audit import MemoryAuditLog
from services.common.bus import outbox_entry
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, TooLarge, Unavailable
from services.common.events import from_payload
from services.intake import domain, metrics

BUCKET = "materials"
MAX_IDEMPOTENCY_KEY = 128
DOWNLOAD_PART_BYTES = 256 * 1024  # one ranged read of object storage, one message of DownloadMaterial
log = logging.getLogger(__name__)


def utc_now():
    return datetime.datetime.now(datetime.UTC)


def watch_step(case, sent):
    """What a watch that has sent the first `sent` entries of a case's history sends when it looks
    again and finds `case` (None: the case is gone): (the views to send, in order, the entries now
    sent, whether the watch ends). A view is the case as of one change of its status (notes that
    leave the status as it is are not sent); the watch ends at the first final status, or when the
    case is gone. Shared by Intake.watch and the api's watch hub (services/intake/watch_hub.py)."""
    if case is None:
        return [], sent, True
    views = []
    for i in range(sent, len(case.history)):
        if case.history[i].note_only:
            continue
        view = case.as_of(i)
        views.append(view)
        if view.status in domain.FINAL:
            return views, len(case.history), True
    return views, len(case.history), case.status in domain.FINAL


class Intake:
    def __init__(self, store, blobs, catalog, max_upload_bytes, licences=None,
                 watch_limit_s=600.0, watch_poll_s=0.2, audit=None, clock=None):
        self.store, self.blobs, self.catalog = store, blobs, catalog
        self.clock = clock or utc_now  # an aware datetime: now
        # the audit log (services.common.audit): staff reads of cases
        self.audit = audit or MemoryAuditLog("intake")
        self.licences = licences
        self.max_upload_bytes = max_upload_bytes
        self.watch_limit_s, self.watch_poll_s = watch_limit_s, watch_poll_s
        self.serves = None  # region_code -> bool: which regions this site handles (None: all)
        self.download_part_bytes = DOWNLOAD_PART_BYTES

    # uploads -----------------------------------------------------------------------------
    def upload(self, header, chunks):
        """Take one material as a stream of chunks: refuse it as soon as it is too large or its
        first bytes are not a PDF, PNG or JPEG; keep the bytes once per content (sha256), however
        many uploads carry them, and a record of this upload."""
        applicant_id = header.get("applicant_id")
        if not applicant_id:
            raise InvalidArgument("the upload header must name the applicant (applicant_id)")
        domain.check_applicant_id(applicant_id)
        if not header.get("material_code"):
            raise InvalidArgument("the upload header must name the material (material_code)")
        declared_size = int(header.get("size") or 0)
        if declared_size < 0:
            raise InvalidArgument(f"the upload header declares a size of {declared_size} bytes; a size is 0 (not "
                                  "declared) or more")
        if declared_size > self.max_upload_bytes:
            raise TooLarge(f"the file ({declared_size} bytes) is larger than the limit of "
                           f"{self.max_upload_bytes} bytes")
        declared_type = header.get("content_type", "")
        claimed = (header.get("sha256") or "").lower()
        if domain.is_sha256(claimed) and hasattr(self.blobs, "put_stream"):
            return self._upload_streamed(header, applicant_id, chunks, claimed, declared_size, declared_type)
        digest, parts, size, head = hashlib.sha256(), [], 0, b""
        for chunk in chunks:
            size += len(chunk)
            if size > self.max_upload_bytes:
                raise TooLarge(f"the file is larger than the limit of {self.max_upload_bytes} bytes")
            if len(head) < domain.SNIFF_BYTES:
                head = (head + chunk)[:domain.SNIFF_BYTES]
                if len(head) == domain.SNIFF_BYTES:  # refuse early, before the rest arrives
                    domain.check_content_type(domain.sniff_content_type(head), declared_type)
            digest.update(chunk)
            parts.append(chunk)
        if size == 0:
            raise InvalidArgument("the file is empty")
        ctype = domain.sniff_content_type(head)
        domain.check_content_type(ctype, declared_type)
        if declared_size and declared_size != size:
            raise InvalidArgument(f"the file arrived with {size} bytes, not the {declared_size} the header declared; "
                                  "upload it again")
        sha = digest.hexdigest()
        if claimed and claimed != sha:
            raise InvalidArgument(f"the file arrived with sha256 {sha}, not the {claimed} the client sent; upload it again")
        key = domain.content_key(sha)
        if self.blobs.stat(BUCKET, key) is None:  # identical content is stored once
            self.blobs.put(BUCKET, key, b"".join(parts), content_type=ctype, metadata={"sha256": sha})
        return self._record_upload(header, applicant_id, ctype, sha, size, key)

    def _record_upload(self, header, applicant_id, ctype, sha, size, key):
        """The record of one upload of content stored (or found) under `key`."""
        upload_id = uuid.uuid4().hex
        self.store.save_upload(domain.Upload(
            upload_id=upload_id, applicant_id=applicant_id, material_code=header["material_code"],
            file_name=header.get("file_name", ""), content_type=ctype, sha256=sha, size=size, object_key=key,
            created_at=self.clock()))
        return {"upload_id": upload_id, "sha256": sha, "size": size, "material_code": header["material_code"],
                "content_type": ctype}

    def _upload_streamed(self, header, applicant_id, chunks, claimed, declared_size, declared_type):
        """An upload whose client declared its sha256: its bytes go to S3 while they arrive, under the
        key of the content they claim to be, in a put that completes only once every byte has come
        and its hash is the one claimed (anything else aborts it: nothing is stored). Content stored
        already is only checked, not stored again."""
        digest, size, head, pending = hashlib.sha256(), 0, b"", []
        chunks = iter(chunks)

        def take(chunk):
            nonlocal size
            size += len(chunk)
            if size > self.max_upload_bytes:
                raise TooLarge(f"the file is larger than the limit of {self.max_upload_bytes} bytes")
            digest.update(chunk)
            return chunk

        for chunk in chunks:  # the first bytes name the type, before anything is stored
            pending.append(take(chunk))
            head = (head + chunk)[:domain.SNIFF_BYTES]
            if len(head) == domain.SNIFF_BYTES:
                break
        if size == 0:
            raise InvalidArgument("the file is empty")
        ctype = domain.sniff_content_type(head)
        domain.check_content_type(ctype, declared_type)

        def checked():
            yield from pending
            for chunk in chunks:
                yield take(chunk)
            if declared_size and declared_size != size:
                raise InvalidArgument(f"the file arrived with {size} bytes, not the {declared_size} the header "
                                      "declared; upload it again")
            if digest.hexdigest() != claimed:
                raise InvalidArgument(f"the file arrived with sha256 {digest.hexdigest()}, not the {claimed} the "
                                      "client sent; upload it again")

        key = domain.content_key(claimed)
        if self.blobs.stat(BUCKET, key) is None:  # identical content is stored once
            self.blobs.put_stream(BUCKET, key, checked(), content_type=ctype, metadata={"sha256": claimed},
                                  length=declared_size or None)
        else:
            for _ in checked():
                pass
        return self._record_upload(header, applicant_id, ctype, claimed, size, key)

    # submission --------------------------------------------------------------------------

    def submit(self, req, acted_by="", by=""):
        """Check everything first; only a valid submission creates a case and one event. The same
        idempotency key from the same applicant returns the case it created, and nothing new.
        `acted_by` (for the event) and `by` (for the history: "clerk X on behalf of …") say who acted
        when it was not the applicant themselves."""
        applicant = req.get("applicant") or {}
        key = self._idempotency_key(applicant, req.get("idempotency_key") or "")
        digest = domain.request_digest(req)
        existing = self.store.by_idempotency_key(key)
        if existing is not None:  # a retry: the same case, if it asks for the same
            return domain.check_same_request(existing, digest, req.get("idempotency_key") or "")
        package_code, region = req.get("package_code", ""), req.get("region_code", "")
        if not package_code:
            raise InvalidArgument("name the package to apply for (package_code)")
        if not region:
            raise InvalidArgument("name the region to apply in (region_code)")
        if self.serves is not None and not self.serves(region):
            raise FailedPrecondition(f"this site does not handle cases for region {region[:8]!r}; "
                                     f"apply at the site of that region")
        situations = req.get("situations") or {}
        form = req.get("form") or {}
        domain.check_situations(situations)
        domain.check_delivery(req.get("delivery"))
        package = self.catalog.get_package(package_code, region, situations)
        domain.check_applicant(applicant, package.get("audience"))
        domain.check_form(package.get("form_fields"), form)
        parties = domain.check_parties(package, req.get("parties") or [])
        submissions = req.get("materials", [])
        self._no_duplicates(submissions)
        uploads = self._uploads(submissions, applicant["id_number"])
        holders = domain.holders(applicant, parties)
        submitted = [u.material_code for u in uploads]
        licences = self._licences(*domain.licence_holders(package, submitted, holders))
        covered = domain.check_materials(package, submitted, licences, holders)

        prefix = domain.case_prefix(package, region)
        now = self.clock()
        day = domain.today(now)
        case_no = domain.case_number(prefix, day, self.store.next_sequence(f"{prefix}{day:%Y%m%d}"))
        telemetry.mark_case(case_no)
        materials = [self._ref(u, package) for u in uploads]
        materials += [{"material_code": code, "name": domain.material_name(package, code),
                       "license_id": lic["license_id"]} for code, lic in covered.items()]
        event = from_payload(events_pb2.CaseSubmitted, {
            "case_no": case_no, "region_code": region, "applicant": applicant,
            "package_snapshot": domain.package_snapshot(package), "materials": materials,
            "delivery": req.get("delivery") or {}, "form": form, "parties": parties, "acted_by": acted_by or "applicant"})
        case = domain.Case(
            case_no=case_no, idempotency_key=key, request_hash=digest if key else None, package_code=package_code,
            package_version=int(package.get("version") or 0), region_code=region, applicant=applicant,
            status=domain.SUBMITTED, submitted_at=now, form=form, materials=materials, situations=situations,
            delivery=req.get("delivery") or {}, parties=parties,
            history=[domain.HistoryEntry(domain.SUBMITTED, now.isoformat(), "submitted" + (f" by {by}" if by else ""))])
        self._write_manifest(case_no, materials)  # first, so a case never exists without it
        if not self.store.insert_case(case, [outbox_entry("case_submitted", event, case_no)]):
            # another request with the same key won the race
            self.blobs.delete(BUCKET, self.manifest_key(case_no))
            return domain.check_same_request(self.store.by_idempotency_key(key), digest,
                                             req.get("idempotency_key") or "")
        return self.store.case(case_no)

    @staticmethod
    def _idempotency_key(applicant, key):
        if len(key) > MAX_IDEMPOTENCY_KEY:
            raise InvalidArgument(f"the idempotency key is longer than {MAX_IDEMPOTENCY_KEY} characters")
        # scoped to the applicant: another applicant's request with the same key is another case
        return f"{applicant.get('id_number', '')}:{key}" if key else None

    @staticmethod
    def manifest_key(case_no):
        return f"cases/{case_no}/manifest.json"

    def _write_manifest(self, case_no, materials):
        body = json.dumps(domain.manifest(case_no, materials), ensure_ascii=False, indent=1).encode()
        self.blobs.put(BUCKET, self.manifest_key(case_no), body, content_type="application/json")

    @staticmethod
    def _ref(upload, package):
        return {"material_code": upload.material_code, "object_key": upload.object_key, "sha256": upload.sha256,
                "size": upload.size, "content_type": upload.content_type,
                "name": domain.material_name(package, upload.material_code)}

    @staticmethod
    def _no_duplicates(submissions):
        codes = [s.get("material_code") or "" for s in submissions]
        twice = sorted({c for c in codes if c and codes.count(c) > 1})
        if twice:
            raise InvalidArgument(f"material {', '.join(twice)} is handed in more than once")

    def _uploads(self, submissions, applicant_id):
        uploads = []
        found = self.store.uploads([sub.get("upload_id", "") for sub in submissions])  # one query for all
        for sub in submissions:
            up = found.get(sub.get("upload_id", ""))
            if up is None:
                raise FailedPrecondition(f"upload {sub.get('upload_id')!r} for material {sub.get('material_code')} "
                                         "does not exist; upload the file first")
            if up.applicant_id != applicant_id:
                raise FailedPrecondition(f"upload {up.upload_id} was made by another applicant")
            if sub.get("material_code") and sub["material_code"] != up.material_code:
                raise InvalidArgument(f"upload {up.upload_id} holds material {up.material_code}, "
                                      f"not {sub['material_code']}")
            uploads.append(up)
        return uploads

    def _licences(self, *holder_codes):
        """The valid licences of the holders named (减材料: the applicant, and the parties the
        missing materials are about); when elicense cannot be reached, none: every material is then
        asked for, and that is logged."""
        if self.licences is None:
            return []
        held = []
        try:
            for holder_code in holder_codes:  # each as elicense lists it for that holder
                held += [dict(lic, holder_code=lic.get("holder_code") or holder_code)
                         for lic in self.licences.licences_of(holder_code)]
        except Unavailable as exc:
            log.warning("elicense unavailable, asking for every material: %s", exc.message)
            return []
        return domain.valid_licences(held, domain.today(self.clock()))

    def get_case(self, case_no, actor=None, allow=None):
        """The case; read by a member of staff (`actor`: a clerk, an officer), the read is audited.
        `allow(case)`: whether the caller may see it (the api's access rule); a case they may not
        see is answered exactly as one that does not exist."""
        with self.audit.read(actor, "case.read", case_no):
            return self._visible(case_no, allow)

    def _visible(self, case_no, allow):
        domain.check_case_no(case_no)
        case = self.store.case(case_no)
        if case is None or (allow is not None and not allow(case)):
            raise NotFound(f"there is no case {case_no}")
        return case

    # a case's materials, read back ---------------------------------------------------------
    def download(self, case_no, material_code, actor=None, allow=None):
        """A material of the case as handed in: (domain.MaterialFile, its bytes in parts of at most
        `download_part_bytes`). Who may see the case (`allow(case)`) is checked first, so a case
        they may not see, and its materials, answer as if they did not exist; a read by a member of
        staff is audited (refusals too). The parts are read from object storage one at a time as
        the caller takes them (bounded memory); the last one checks the whole against the size and
        sha256 kept since the upload (MaterialDamaged: DATA_LOSS)."""
        with self.audit.read(actor, "material.read", case_no, material_code=(material_code or "")[:64]):
            domain.check_material_code(material_code)
            case = self._visible(case_no, allow)
            material = domain.material_file(case, material_code)
        telemetry.mark_case(case.case_no)
        return material, self._parts(material)

    def _parts(self, material):
        """The material's bytes, one ranged read per part. The read that reaches the end asks for
        one byte more than was kept, so an object longer than the material shows as well as a
        shorter or changed one; the part that does not add up is not sent."""
        digest, read, part = hashlib.sha256(), 0, max(1, int(self.download_part_bytes))
        while True:
            want = min(part, material.size - read + 1)
            data = self.blobs.read_range(BUCKET, material.object_key, read, want) or b""  # None: gone
            digest.update(data)
            read += len(data)
            if len(data) < want or read > material.size:  # the end (or past it)
                domain.check_material_bytes(material, read, digest.hexdigest())
                if data or not read:  # an empty material is one empty part: its reader still learns what it is
                    yield data
                return
            yield data

    # 补正 ----------------------------------------------------------------------------------
    def supplement(self, req, allow=None, acted_by="", by=""):
        """Hand in exactly the materials the rectification named; the case resumes where it was and
        `case_supplemented` tells the departments."""
        case = self.get_case(req.get("case_no", ""), allow=allow)
        applicant_id = req.get("applicant_id", "")
        domain.check_owner(case.applicant.get("id_number"), applicant_id, "supplement")
        subs = req.get("materials", [])
        if any(not s.get("material_code") for s in subs):
            raise InvalidArgument("name the material of every upload handed in (material_code)")
        rect = copy.deepcopy(case.rectification or {})
        domain.check_supplement(case.status, rect, [s["material_code"] for s in subs])
        uploads = self._uploads(subs, applicant_id)
        names = {m["material_code"]: m.get("name", "") for m in case.materials}
        package = {"materials": [{"code": c, "name": n} for c, n in names.items()]}
        new = {u.material_code: self._ref(u, package) for u in uploads}
        materials = [new.pop(m["material_code"], copy.deepcopy(m)) for m in case.materials] + list(new.values())
        replaced = [m for m in materials if m["material_code"] in rect["material_codes"]]
        items = []
        for r in rect.get("requests", []):
            if r["item_code"] and r["item_code"] not in items:
                items.append(r["item_code"])
        rounds = {r["item_code"]: int(r["round"]) for r in rect.get("requests", []) if r.get("round")}
        event = events_pb2.CaseSupplemented(case_no=case.case_no, item_codes=items, rounds=rounds,
                                            acted_by=acted_by or "applicant")
        for m in replaced:
            event.materials.add(**m)
        events = [outbox_entry("case_supplemented", event, case.case_no)]
        note = f"supplemented {', '.join(rect['material_codes'])}" + (f" by {by}" if by else "")
        for _ in range(5):
            resume = case.rectification.get("resume_status") or domain.SUBMITTED  # where it was, as of now
            changed = case.changed(resume, note, self.clock().isoformat(), materials=materials, rectification={})
            if self.store.save(changed, case.version, events):
                break
            case = self.store.case(case.case_no)
            # the rectification answered is no longer the case's (a new request, a conclusion, a
            # withdrawal came first): the applicant must look again; a note added meanwhile is not
            if case.status != domain.RECTIFYING or \
                    len(case.rectification.get("requests", [])) != len(rect.get("requests", [])):
                raise FailedPrecondition(f"the case changed meanwhile (it is {case.status} now); look at it again "
                                         "before supplementing")
        else:
            raise Unavailable("the case keeps changing; try again shortly")
        self._write_manifest(case.case_no, materials)
        return self.store.case(case.case_no)

    def rectification_requested(self, event):
        """A department named materials to hand in again: the case waits for them (RECTIFYING).
        Idempotent: a redelivered request changes nothing; a concluded or withdrawn case neither."""
        telemetry.mark_case(event.case_no)
        request = {"item_code": event.item_code, "department_code": event.department_code,
                   "material_codes": list(event.material_codes), "reason": event.reason,
                   "at": self.clock().isoformat(), "round": event.round}
        for case, fresh in self._versions(event.case_no):
            if case is None:
                return False
            if event.round and case.rectification_rounds.get(event.item_code, 0) >= event.round:
                rect = None  # this round was asked (and perhaps answered) already: a redelivery
            else:
                rect = domain.rectify({"status": case.status, "rectification": copy.deepcopy(case.rectification)},
                                      request)
            if rect is None:
                if fresh:
                    return False
                continue
            note = f"rectification: {event.department_code} asks for {', '.join(request['material_codes'])}" + (
                f" ({event.reason})" if event.reason else "")
            rounds = dict(case.rectification_rounds)
            if event.round:
                rounds[event.item_code] = event.round
            changed = case.changed(domain.RECTIFYING, note, self.clock().isoformat(), rectification=rect,
                                   rectification_rounds=rounds)
            if self.store.save(changed, case.version):
                return True

    # withdrawal ----------------------------------------------------------------------------
    def withdraw(self, req, allow=None, acted_by="", by=""):
        case = self.get_case(req.get("case_no", ""), allow=allow)
        applicant_id, reason = req.get("applicant_id", ""), (req.get("reason") or "").strip()
        domain.check_owner(case.applicant.get("id_number"), applicant_id, "withdraw")
        note = "withdrawn" + (f" by {by}" if by else "") + (f": {reason}" if reason else "")
        for _ in range(5):
            domain.check_withdraw(case.status, reason)
            event = events_pb2.CaseWithdrawn(case_no=case.case_no, reason=reason, applicant_id=applicant_id,
                                             region_code=case.region_code, package_code=case.package_code,
                                             acted_by=acted_by or "applicant")
            now = self.clock()
            changed = case.changed(domain.WITHDRAWN, note, now.isoformat(), rectification={})
            if self.store.save(changed, case.version, [outbox_entry("case_withdrawn", event, case.case_no)]):
                metrics.case_moved(case, domain.WITHDRAWN, now)
                return self.store.case(case.case_no)
            case = self.store.case(case.case_no)  # it changed meanwhile: decide again
        raise Unavailable("the case keeps changing; try again shortly")

    # reading -------------------------------------------------------------------------------
    def watch(self, case_no, is_active=lambda: True, actor=None, allow=None):
        """The case now, then the case as of each change of its status, in order, until it reaches a
        final status, the time limit passes or the caller goes away. Read from the case's history,
        which every change appends to, so changes that follow each other between two looks are
        all sent, none skipped; notes that leave the status as it is (note_only) are not sent."""
        case = self.get_case(case_no, actor=actor, allow=allow)
        yield case
        deadline = time.monotonic() + self.watch_limit_s
        sent, done = len(case.history), case.status in domain.FINAL
        while not done and time.monotonic() < deadline and is_active():
            time.sleep(self.watch_poll_s)
            views, sent, done = watch_step(self.store.case(case_no), sent)
            yield from views


    def list_cases(self, req, actor=None, region_prefix=None):
        """An applicant's cases, newest first; `region_prefix` (a clerk's region, as
        config.region_prefix gives it) keeps those of that region and below."""
        applicant_id = req.get("applicant_id", "")
        # a member of staff's look-up is audited (the applicant's ID masked in the record)
        with self.audit.read(actor, "cases.list", applicant_id) as details:
            domain.check_applicant_id(applicant_id)
            size = domain.page_size(int(req.get("page_size") or 0))
            after = self._decode_token(req.get("page_token") or "")
            cases = self.store.cases_of(applicant_id, size + 1, after, region_prefix=region_prefix)
            details["case_nos"] = [c.case_no for c in cases[:size]]
        token = ""
        if len(cases) > size:
            cases = cases[:size]
            last = cases[-1]
            token = paging.encode_token({"at": last.submitted_at.isoformat(), "no": last.case_no})
        return cases, token

    @staticmethod
    def _decode_token(token):
        def read(data):
            at = datetime.datetime.fromisoformat(data["at"])
            domain.check_case_no(data["no"])
            return at, data["no"]
        return paging.decode_token(token, read)

    # what the other services report ------------------------------------------------------
    def _versions(self, case_no, tries=10):
        """The case to decide what an event changes, once per try, with whether it was read now:
        first as this process last read or saved it (store.recent: no read, but it may be stale),
        then as stored now. A save from a stale copy meets the version check and the next try reads;
        what a copy shows needs no change is decided again on a fresh read, so only a fresh read
        decides that. Past `tries` reads the event is tried again later."""
        kept = self.store.recent(case_no)
        if kept is not None:
            yield kept, False
        for _ in range(tries):
            yield self.store.case_to_change(case_no), True
        raise RuntimeError(f"case {case_no} kept changing under us")  # the event is tried again

    def _move(self, case_no, status, note, license_ids=()):
        """Move the case forward to `status` (never backwards), adding the licences the move brings."""
        for case, fresh in self._versions(case_no):
            if case is None:
                return False
            added = _added(case.license_ids, license_ids)
            if domain.advance(case.status, status) is not None:
                now = self.clock()
                changed = case.changed(status, note, now.isoformat(), license_ids=case.license_ids + added)
                if self.store.save(changed, case.version):
                    metrics.case_moved(case, status, now)  # a case's end is observed once, here
                    return True
            elif added and case.status in (domain.DELIVERED, domain.RATED, domain.DELIVERY_FAILED):
                # reported out of order (delivery first): keep the licences anyway
                if self.store.save(dataclasses.replace(case, license_ids=case.license_ids + added), case.version):
                    return False
            elif fresh:
                return False

    def case_concluded(self, event):
        status = domain.APPROVED if event.approved else domain.REJECTED
        return self._move(event.case_no, status, event.reason or "concluded", list(event.license_ids))

    def delivery_completed(self, event):
        return self._move(event.case_no, domain.DELIVERED, "results delivered")

    def evaluation_received(self, event):
        return self._move(event.case_no, domain.RATED, "rated")

    # events recorded on the case (idempotent: each event's key is recorded with its change) --
    def _record(self, case_no, key, decide):
        """Apply what one event means for the case: `decide(case)` gives (status, note, the case's
        fields it changes) or None when the event changes nothing. Saved with the case's version and
        the event's key, decided again when another change came first; a redelivered event changes
        nothing. A note that keeps the status is `note_only`."""
        if not case_no:
            return False
        telemetry.mark_case(case_no)
        for case, fresh in self._versions(case_no):
            decision = None if case is None or key in case.noted else decide(case)
            if decision is None:
                if fresh:
                    return False
                continue
            status, note, fields = decision
            changed = case.changed(status, note, self.clock().isoformat(), note_only=status == case.status,
                                   noted=[*case.noted, key], **fields)
            if self.store.save(changed, case.version):
                return True

    def task_assigned(self, event):
        """One department's task (a domain.TaskAssigned): as tasks_assigned with that one holder."""
        return self.tasks_assigned(domain.TasksAssigned(
            event.case_no, (domain.TaskHolder(event.department_code, event.region_code),)))

    def tasks_assigned(self, event):
        """joint_review gave departments of regions tasks in the case (a domain.TasksAssigned): from
        now on those departments' officers (of those regions) may read the case and its materials.
        Idempotent: each department and region is recorded once however often its tasks are
        assigned. All of one change's departments in one write. Saved with the case's version,
        decided again when another change came first; the history is not touched (the applicant
        sees the review opened, not each assignment). A case intake does not have changes nothing
        (False)."""
        for holder in event.holders:
            domain.check_task_holder(holder, event.case_no)
        if not event.holders:
            raise InvalidArgument(f"tasks_assigned of case {event.case_no[:64]} names no department")
        telemetry.mark_case(event.case_no)
        for case, fresh in self._versions(event.case_no):
            if case is None:
                log.warning("tasks_assigned for case %s, which intake does not have: nothing recorded",
                            (event.case_no or "-")[:64])
                return False
            holders = domain.with_holders(case.task_holders, event.holders)
            if holders is None:
                if fresh:
                    return False
                continue
            if self.store.save(dataclasses.replace(case, task_holders=holders), case.version):
                return True

    def session_opened(self, event):
        """joint_review opened the case's session: the departments are at work (IN_REVIEW). A case
        waiting for materials already returns to IN_REVIEW once supplemented."""
        note = f"review opened: {len(event.item_codes)} items with {', '.join(event.department_codes)}"

        def decide(case):
            if case.status == domain.SUBMITTED:
                return domain.IN_REVIEW, note, {}
            resume = case.rectification.get("resume_status")
            if case.status == domain.RECTIFYING and resume == domain.SUBMITTED:
                return case.status, note, {"rectification": dict(case.rectification, resume_status=domain.IN_REVIEW)}
            return None

        return self._record(event.case_no, "session_opened", decide)

    def task_overdue(self, event):
        """督办: a department is past its promised limit; the case's history says so (its status stays)."""
        note = (f"督办: department {event.department_code} is past its promised limit for item {event.item_code} "
                f"({event.elapsed_days} of {event.limit_days} working days); escalated")
        return self._record(event.case_no, f"task_overdue:{event.item_code}",
                            lambda case: (case.status, note, {}))

    def session_concluded(self, event):
        """A joint session (the joint site inspection) finished: its outcome goes into the history."""
        if event.kind == "INSPECTION":
            note = "joint site inspection done: " + (
                "every department found it in order" if event.passed else
                "defects found; the departments concerned ask for them to be put right") + (
                f" (report {event.report_key})" if event.report_key else "")
        else:
            note = f"joint session {event.kind} concluded" + ("" if event.passed else " with defects")
        key = f"session_concluded:{event.kind}:{event.concluded_at or event.report_key}"
        return self._record(event.case_no, key, lambda case: (case.status, note, {}))

    def session_withdrawn(self, event):
        """joint_review closed the withdrawn case. Only a withdrawal that arrived after the
        departments had concluded adds something the applicant must know: that conclusion is void."""
        if not event.after_conclusion:
            return False
        what = event.overridden or "concluded"
        note = (f"the withdrawal reached the departments after they had concluded the case ({what}); "
                "that conclusion is void: its licences are revoked and nothing is delivered")
        return self._record(event.case_no, "session_withdrawn", lambda case: (case.status, note, {}))

    def delivery_failed(self, event):
        """The results could not be delivered: the applicant sees DELIVERY_FAILED until delivery
        sends them again (Redispatch to a corrected address). An old attempt's failure changes nothing."""
        attempt = event.attempt or 1
        note = f"results could not be delivered: {event.reason}" + (
            "; give the window a corrected address to have them sent again" if event.reason else "")

        def decide(case):
            status = domain.after_failure(case.status, attempt, case.delivery_attempt)
            return None if status is None else (status, note, {"delivery_attempt": max(case.delivery_attempt,
                                                                                        attempt)})

        return self._record(event.case_no, f"delivery_failed:{attempt}", decide)

    def delivery_dispatched(self, event):
        """The results left by mail (the tracking number goes into the history); sent again after a
        failure, the case is APPROVED again. ELECTRONIC links are issued and completed at once:
        delivery_completed says all there is."""
        attempt = event.attempt or 1
        sent = f"handed to {event.carrier}, tracking number {event.tracking_number}" if event.carrier else "dispatched"
        note = (f"results sent again to the corrected address: {sent}" if attempt > 1 else f"results {sent}")

        def decide(case):
            status = domain.after_dispatch(case.status, attempt, case.delivery_attempt)
            if status is None or (status == case.status and not event.by_mail):
                return None
            return status, note, {"delivery_attempt": max(case.delivery_attempt, attempt)}

        return self._record(event.case_no, f"delivery_dispatched:{attempt}", decide)

    def delivery_ready_for_pickup(self, event):
        note = "results wait at the window: show the pickup code (GetDelivery) to collect them"

        def decide(case):
            return (case.status, note, {}) if case.status in (*domain.OPEN, domain.APPROVED) else None

        return self._record(event.case_no, "delivery_ready_for_pickup", decide)

    def license_revoked(self, event):
        """elicense revoked a licence of the case, or superseded it (a later licence replaced it: the
        seller's certificate after a transfer): the case lists it among its revoked licences, its
        history says which and why."""
        if event.superseded_by:
            note = f"licence {event.license_id} superseded by {event.superseded_by}: it is no longer valid"
        else:
            note = f"licence {event.license_id} revoked" + (f": {event.reason}" if event.reason else "")
        return self._record(event.case_no, f"license_revoked:{event.license_id}", lambda case: (
            case.status, note, {"revoked_license_ids": case.revoked_license_ids + _added(case.revoked_license_ids,
                                                                                         [event.license_id])}))

    def bad_review_opened(self, event):
        note = (f"差评 ({event.channel}) received: department {event.department_code} must put it right "
                f"by {event.deadline}")
        return self._record(event.case_no, f"bad_review_opened:{event.channel}", lambda case: (case.status, note, {}))

    def bad_review_closed(self, event):
        note = (f"差评 ({event.channel}) put right by department {event.department_code} "
                f"({'on time' if event.on_time else 'late'}): {event.result}")
        return self._record(event.case_no, f"bad_review_closed:{event.channel}", lambda case: (case.status, note, {}))


def _added(present, more):
    """Those of `more` not in `present` yet, each once, in order (a set's add)."""
    out = []
    for value in more or ():
        if value not in present and value not in out:
            out.append(value)
    return out
