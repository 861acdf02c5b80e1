"""intake use cases: streamed uploads, case submission, and the status a case has as the other
services report on it. Store, blobs, bus and catalog are passed in."""
import hashlib
import uuid

from onething.intake.v1 import events_pb2
from services.common import telemetry
from services.common.bus import outbox_entry
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, TooLarge
from services.common.events import from_payload
from services.common.mongo import flush_outbox
from services.intake import domain
from services.intake.store import CaseDoc, now

BUCKET = "materials"


class Intake:
    def __init__(self, store, blobs, bus, catalog, max_upload_bytes):
        self.store, self.blobs, self.bus, self.catalog = store, blobs, bus, catalog
        self.max_upload_bytes = max_upload_bytes

    # uploads -----------------------------------------------------------------------------
    def upload(self, header, chunks):
        """Take one material as a stream of chunks; store it once its size and sha256 check out."""
        if not header.get("applicant_id"):
            raise InvalidArgument("the upload header must name the applicant (applicant_id)")
        if not header.get("material_code"):
            raise InvalidArgument("the upload header must name the material (material_code)")
        digest, parts, size = hashlib.sha256(), [], 0
        for chunk in chunks:
            size += len(chunk)
            if size > self.max_upload_bytes:
                raise TooLarge(f"the file is larger than the limit of {self.max_upload_bytes} bytes")
            digest.update(chunk)
            parts.append(chunk)
        if size == 0:
            raise InvalidArgument("the file is empty")
        sha = digest.hexdigest()
        claimed = (header.get("sha256") or "").lower()
        if claimed and claimed != sha:
            raise InvalidArgument(f"the file arrived with sha256 {sha}, not the {claimed} the client sent; upload it again")
        data = b"".join(parts)
        upload_id = uuid.uuid4().hex
        key = f"uploads/{upload_id}"
        ctype = domain.sniff_content_type(data[:16])
        self.blobs.put(BUCKET, key, data, content_type=ctype, metadata={"sha256": sha})
        self.store.save_upload(upload_id=upload_id, applicant_id=header["applicant_id"],
                               material_code=header["material_code"], file_name=header.get("file_name", ""),
                               content_type=ctype, sha256=sha, size=size, object_key=key)
        return {"upload_id": upload_id, "sha256": sha, "size": size, "material_code": header["material_code"]}

    # submission --------------------------------------------------------------------------
    def submit(self, req):
        """Check everything first; only a valid submission creates a case and one event."""
        key = req.get("idempotency_key") or ""
        existing = self.store.by_idempotency_key(key)
        if existing is not None:
            return existing
        package_code, region = req.get("package_code", ""), req.get("region_code", "")
        if not package_code:
            raise InvalidArgument("name the package to apply for (package_code)")
        if not region:
            raise InvalidArgument("name the region to apply in (region_code)")
        applicant = req.get("applicant") or {}
        domain.check_delivery(req.get("delivery"))
        package = self.catalog.get_package(package_code, region)
        domain.check_applicant(applicant, package.get("audience"))
        uploads = self._uploads(req.get("materials", []), applicant["id_number"])
        domain.check_materials(package, [u.material_code for u in uploads])

        prefix = domain.implementing_code(region, package_code)
        day = domain.today()
        case_no = domain.case_number(prefix, day, self.store.next_sequence(f"{prefix}{day:%Y%m%d}"))
        telemetry.mark_case(case_no)
        materials = []
        for u in uploads:
            dst = f"cases/{case_no}/{u.material_code}/{u.upload_id}"
            self.blobs.copy(BUCKET, u.object_key, dst)
            materials.append({"material_code": u.material_code, "object_key": dst, "sha256": u.sha256,
                              "size": u.size, "content_type": u.content_type,
                              "name": next((m["name"] for m in package.get("materials", [])
                                            if m["code"] == u.material_code), u.material_code)})
        event = from_payload(events_pb2.CaseSubmitted, {
            "case_no": case_no, "region_code": region, "applicant": applicant, "package": package,
            "materials": materials, "delivery": req.get("delivery") or {}, "form": req.get("form") or {}})
        doc = CaseDoc(case_no=case_no, idempotency_key=key or None, package_code=package_code,
                      package_version=int(package["version"]), region_code=region, applicant=applicant,
                      status=domain.SUBMITTED, form=req.get("form") or {}, materials=materials,
                      delivery=req.get("delivery") or {},
                      history=[{"status": domain.SUBMITTED, "at": now().isoformat(), "note": "submitted"}],
                      outbox=[outbox_entry("case_submitted", event, case_no)])
        if not self.store.insert_case(doc):
            return self.store.by_idempotency_key(key)
        flush_outbox(CaseDoc, case_no, self.bus, doc.outbox)
        return self.store.case(case_no)

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

    def get_case(self, case_no):
        domain.check_case_no(case_no)
        doc = self.store.case(case_no)
        if doc is None:
            raise NotFound(f"there is no case {case_no}")
        return doc

    # what the other services report ------------------------------------------------------
    def _move(self, case_no, status, note, license_ids=None):
        for _ in range(5):
            doc = self.store.case(case_no)
            if doc is None:
                return False
            if domain.advance(doc.status, status) is None:
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
