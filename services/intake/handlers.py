"""intake use cases: streamed uploads, case submission, supplements (补正), withdrawal, watching and
listing cases, and the status a case has as the other services report on it. Store, blobs, bus,
catalog and licences are passed in."""
import base64
import binascii
import datetime
import hashlib
import json
import logging
import time
import uuid

from onething.intake.v1 import events_pb2
from services.common import telemetry
from services.common.bus import outbox_entry
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, TooLarge, Unavailable
from services.common.events import from_payload
from services.common.mongo import flush_outbox, plain
from services.intake import domain
from services.intake.store import CaseDoc, now

BUCKET = "materials"
MAX_IDEMPOTENCY_KEY = 128
log = logging.getLogger(__name__)


class Intake:
    def __init__(self, store, blobs, bus, catalog, max_upload_bytes, licences=None,
                 watch_limit_s=600.0, watch_poll_s=0.2):
        self.store, self.blobs, self.bus, self.catalog = store, blobs, bus, catalog
        self.licences = licences
        self.max_upload_bytes = max_upload_bytes
        self.watch_limit_s, self.watch_poll_s = watch_limit_s, watch_poll_s

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
        if declared_size > self.max_upload_bytes:
            raise TooLarge(f"the file ({declared_size} bytes) is larger than the limit of "
                           f"{self.max_upload_bytes} bytes")
        declared_type = header.get("content_type", "")
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
        claimed = (header.get("sha256") or "").lower()
        if claimed and claimed != sha:
            raise InvalidArgument(f"the file arrived with sha256 {sha}, not the {claimed} the client sent; upload it again")
        key = domain.content_key(sha)
        if self.blobs.stat(BUCKET, key) is None:  # identical content is stored once
            self.blobs.put(BUCKET, key, b"".join(parts), content_type=ctype, metadata={"sha256": sha})
        upload_id = uuid.uuid4().hex
        self.store.save_upload(upload_id=upload_id, applicant_id=applicant_id,
                               material_code=header["material_code"], file_name=header.get("file_name", ""),
                               content_type=ctype, sha256=sha, size=size, object_key=key)
        return {"upload_id": upload_id, "sha256": sha, "size": size, "material_code": header["material_code"],
                "content_type": ctype}

    # submission --------------------------------------------------------------------------
    def submit(self, req):
        """Check everything first; only a valid submission creates a case and one event. The same
        idempotency key from the same applicant returns the case it created, and nothing new."""
        applicant = req.get("applicant") or {}
        key = self._idempotency_key(applicant, req.get("idempotency_key") or "")
        existing = self.store.by_idempotency_key(key)
        if existing is not None:
            return existing
        package_code, region = req.get("package_code", ""), req.get("region_code", "")
        if not package_code:
            raise InvalidArgument("name the package to apply for (package_code)")
        if not region:
            raise InvalidArgument("name the region to apply in (region_code)")
        situations = req.get("situations") or {}
        form = req.get("form") or {}
        domain.check_situations(situations)
        domain.check_delivery(req.get("delivery"))
        package = self.catalog.get_package(package_code, region, situations)
        domain.check_applicant(applicant, package.get("audience"))
        domain.check_form(package.get("form_fields"), form)
        submissions = req.get("materials", [])
        self._no_duplicates(submissions)
        uploads = self._uploads(submissions, applicant["id_number"])
        licences = self._licences(applicant["id_number"])
        covered = domain.check_materials(package, [u.material_code for u in uploads], licences)

        prefix = domain.case_prefix(package, region)
        day = domain.today()
        case_no = domain.case_number(prefix, day, self.store.next_sequence(f"{prefix}{day:%Y%m%d}"))
        telemetry.mark_case(case_no)
        materials = [self._ref(u, package) for u in uploads]
        materials += [{"material_code": code, "name": domain.material_name(package, code),
                       "license_id": lic["license_id"]} for code, lic in covered.items()]
        event = from_payload(events_pb2.CaseSubmitted, {
            "case_no": case_no, "region_code": region, "applicant": applicant, "package": package,
            "materials": materials, "delivery": req.get("delivery") or {}, "form": form})
        doc = CaseDoc(case_no=case_no, idempotency_key=key, package_code=package_code,
                      package_version=int(package.get("version") or 0), region_code=region, applicant=applicant,
                      status=domain.SUBMITTED, form=form, materials=materials, situations=situations,
                      delivery=req.get("delivery") or {},
                      history=[{"status": domain.SUBMITTED, "at": now().isoformat(), "note": "submitted"}],
                      outbox=[outbox_entry("case_submitted", event, case_no)])
        self._write_manifest(case_no, materials)  # first, so a case never exists without it
        if not self.store.insert_case(doc):  # another request with the same key won the race
            self.blobs.delete(BUCKET, self.manifest_key(case_no))
            return self.store.by_idempotency_key(key)
        flush_outbox(CaseDoc, case_no, self.bus, doc.outbox)
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
        for sub in submissions:
            up = self.store.upload(sub.get("upload_id", ""))
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

    def _licences(self, holder_code):
        """The applicant's valid licences (减材料); when elicense cannot be reached, none: every
        material is then asked for, and that is logged."""
        if self.licences is None:
            return []
        try:
            held = self.licences.licences_of(holder_code)
        except Unavailable as exc:
            log.warning("elicense unavailable, asking for every material: %s", exc.message)
            return []
        return domain.valid_licences(held, domain.today())

    def get_case(self, case_no):
        domain.check_case_no(case_no)
        doc = self.store.case(case_no)
        if doc is None:
            raise NotFound(f"there is no case {case_no}")
        return doc

    # 补正 ----------------------------------------------------------------------------------
    def supplement(self, req):
        """Hand in exactly the materials the rectification named; the case resumes where it was and
        `case_supplemented` tells the departments."""
        doc = self.get_case(req.get("case_no", ""))
        applicant_id = req.get("applicant_id", "")
        domain.check_owner(doc.applicant.get("id_number"), applicant_id, "supplement")
        subs = req.get("materials", [])
        if any(not s.get("material_code") for s in subs):
            raise InvalidArgument("name the material of every upload handed in (material_code)")
        rect = plain(doc.rectification or {})
        domain.check_supplement(doc.status, rect, [s["material_code"] for s in subs])
        uploads = self._uploads(subs, applicant_id)
        names = {m["material_code"]: m.get("name", "") for m in doc.materials}
        package = {"materials": [{"code": c, "name": n} for c, n in names.items()]}
        new = {u.material_code: self._ref(u, package) for u in uploads}
        materials = [new.pop(m["material_code"], plain(m)) for m in doc.materials] + list(new.values())
        replaced = [m for m in materials if m["material_code"] in rect["material_codes"]]
        items = []
        for r in rect.get("requests", []):
            if r["item_code"] and r["item_code"] not in items:
                items.append(r["item_code"])
        rounds = {r["item_code"]: int(r["round"]) for r in rect.get("requests", []) if r.get("round")}
        event = events_pb2.CaseSupplemented(case_no=doc.case_no, item_codes=items, rounds=rounds)
        for m in replaced:
            event.materials.add(**m)
        outbox = [outbox_entry("case_supplemented", event, doc.case_no)]
        resume = rect.get("resume_status") or domain.SUBMITTED
        ok = self.store.update_case(doc.case_no, domain.RECTIFYING, {"status": resume, "materials": materials},
                                    f"supplemented {', '.join(rect['material_codes'])}", outbox=outbox,
                                    unset=["rectification"], expect_requests=len(rect.get("requests", [])))
        if not ok:
            now_status = self.store.case(doc.case_no).status
            raise FailedPrecondition(f"the case changed meanwhile (it is {now_status.removeprefix('CASE_STATUS_')} "
                                     "now); look at it again before supplementing")
        self._write_manifest(doc.case_no, materials)
        flush_outbox(CaseDoc, doc.case_no, self.bus, outbox)
        return self.store.case(doc.case_no)

    def rectification_requested(self, event):
        """A department named materials to hand in again: the case waits for them (RECTIFYING).
        Idempotent: a redelivered request changes nothing; a concluded or withdrawn case neither."""
        telemetry.mark_case(event.case_no)
        request = {"item_code": event.item_code, "department_code": event.department_code,
                   "material_codes": list(event.material_codes), "reason": event.reason,
                   "at": now().isoformat(), "round": event.round}
        for _ in range(5):
            doc = self.store.case(event.case_no)
            if doc is None:
                return False
            current = plain(doc.rectification or {})
            if event.round and plain(doc.rectification_rounds or {}).get(event.item_code, 0) >= event.round:
                return False  # this round was asked (and perhaps answered) already: a redelivery
            rect = domain.rectify({"status": doc.status, "rectification": current}, request)
            if rect is None:
                return False
            note = f"rectification: {event.department_code} asks for {', '.join(request['material_codes'])}" + (
                f" ({event.reason})" if event.reason else "")
            if self.store.set_rectification(event.case_no, doc.status, current, domain.RECTIFYING, rect, note,
                                            rounds={event.item_code: event.round} if event.round else None):
                return True
        return False

    # withdrawal ----------------------------------------------------------------------------
    def withdraw(self, req):
        doc = self.get_case(req.get("case_no", ""))
        applicant_id, reason = req.get("applicant_id", ""), (req.get("reason") or "").strip()
        domain.check_owner(doc.applicant.get("id_number"), applicant_id, "withdraw")
        for _ in range(5):
            domain.check_withdraw(doc.status, reason)
            event = events_pb2.CaseWithdrawn(case_no=doc.case_no, reason=reason, applicant_id=applicant_id,
                                             region_code=doc.region_code, package_code=doc.package_code)
            outbox = [outbox_entry("case_withdrawn", event, doc.case_no)]
            if self.store.update_case(doc.case_no, doc.status, {"status": domain.WITHDRAWN},
                                      "withdrawn" + (f": {reason}" if reason else ""), outbox=outbox,
                                      unset=["rectification"]):
                flush_outbox(CaseDoc, doc.case_no, self.bus, outbox)
                return self.store.case(doc.case_no)
            doc = self.store.case(doc.case_no)  # its status moved meanwhile: decide again
        raise Unavailable("the case keeps changing; try again shortly")

    # reading -------------------------------------------------------------------------------
    def watch(self, case_no, is_active=lambda: True):
        """The case now, then the case after each change of its status, until it reaches a final
        status, the time limit passes or the caller goes away."""
        doc = self.get_case(case_no)
        yield doc
        deadline = time.monotonic() + self.watch_limit_s
        seen = (doc.status, len(doc.history))
        while doc.status not in domain.FINAL and time.monotonic() < deadline and is_active():
            time.sleep(self.watch_poll_s)
            doc = self.store.case(case_no)
            if doc is None:
                return
            if (doc.status, len(doc.history)) != seen:
                seen = (doc.status, len(doc.history))
                yield doc

    def list_cases(self, req):
        applicant_id = req.get("applicant_id", "")
        domain.check_applicant_id(applicant_id)
        size = domain.page_size(int(req.get("page_size") or 0))
        after = self._decode_token(req.get("page_token") or "")
        docs = self.store.cases_of(applicant_id, size + 1, after)
        token = ""
        if len(docs) > size:
            docs = docs[:size]
            last = docs[-1]
            token = base64.urlsafe_b64encode(json.dumps(
                {"at": last.submitted_at.isoformat(), "no": last.case_no}).encode()).decode()
        return docs, token

    @staticmethod
    def _decode_token(token):
        if not token:
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(token.encode()))
            at = datetime.datetime.fromisoformat(data["at"])
            domain.check_case_no(data["no"])
            return at, data["no"]
        except (ValueError, KeyError, TypeError, binascii.Error, InvalidArgument):
            raise InvalidArgument("page_token is not one this service gave out; start again without it")

    # what the other services report ------------------------------------------------------
    def _move(self, case_no, status, note, license_ids=None):
        for _ in range(5):
            doc = self.store.case(case_no)
            if doc is None:
                return False
            if domain.advance(doc.status, status) is None:
                if license_ids and doc.status in (domain.DELIVERED, domain.RATED):
                    # reported out of order (delivery first): keep the licences anyway
                    self.store.add_licenses(case_no, license_ids)
                return False
            if self.store.move_status(case_no, doc.status, status, note, license_ids=license_ids):
                return True
        return False

    def case_concluded(self, event):
        status = domain.APPROVED if event.approved else domain.REJECTED
        return self._move(event.case_no, status, event.reason or "concluded", list(event.license_ids))

    def delivery_completed(self, event):
        return self._move(event.case_no, domain.DELIVERED, "results delivered")

    def evaluation_received(self, event):
        return self._move(event.case_no, domain.RATED, "rated")
