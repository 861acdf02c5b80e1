"""elicense use cases: issue a signed licence when an item whose result is a licence is approved,
look licences up and verify them. No framework here."""
import datetime
import time

from onething.common.v1 import common_pb2
from onething.elicense.v1 import events_pb2
from services.common import ids, telemetry
from services.common.audit import MemoryAuditLog, service_actor
from services.common.bus import outbox_entry
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.common.mongo import flush_outbox, plain
from services.elicense import document, domain
from services.elicense.store import LicenseDoc

BUCKET = "results"
CST = datetime.timezone(datetime.timedelta(hours=8))


def _today_cst():
    """Licence dates are dates in China, whatever the server's own time zone."""
    return datetime.datetime.now(CST).date()


def check_region(region_code):
    if not (region_code or "").isdigit() or len(region_code) != 6:
        raise InvalidArgument(f"region code {region_code!r} is not a 6-digit GB/T 2260 code")


class Elicense:
    def __init__(self, store, blobs, bus, audit=None):
        self.store, self.blobs, self.bus = store, blobs, bus
        # the audit log (services.common.audit): revocations, key rotations and staff reads
        self.audit = audit or MemoryAuditLog("elicense")

    def signing_key(self, region_code):
        key = self.store.active_key(region_code)
        if key is None:
            private, public = domain.new_key()
            key = self.store.add_key(f"{region_code}-1", region_code, private, public)
        return key

    def rotate_key(self, region_code, actor=None):
        """A new active key for the region; the old ones stay and still verify what they signed."""
        with self.audit.attempt(actor, "signing_key.rotate", region_code) as details:
            check_region(region_code)
            now = time.time()
            private, public = domain.new_key()
            key = self.store.add_key(f"{region_code}-{int(now * 1000)}", region_code, private, public,
                                     created_at=now)
            self.store.deactivate_keys_before(region_code, now)
            details["key_id"] = key.key_id
        return key

    def keys(self, region_code):
        check_region(region_code)
        return self.store.keys(region_code)

    def revoke(self, license_id, reason, by, actor=None):
        """Revoke a valid licence (`actor`: who, for the audit log; the reason stays with the licence)."""
        with self.audit.attempt(actor, "licence.revoke", license_id) as details:
            fields = self._revoke(license_id, reason, by)
            details["case_no"] = fields.get("case_no", "")
        return fields

    def _revoke(self, license_id, reason, by):
        if not (reason or "").strip():
            raise InvalidArgument("say why the licence is revoked (reason)")
        fields = self.get(license_id)
        telemetry.mark_case(fields.get("case_no"))
        if fields.get("status") == domain.REVOKED:
            raise FailedPrecondition(f"licence {license_id} was already revoked on {fields.get('revoked_at')}")
        if fields.get("status") == domain.SUPERSEDED:
            raise FailedPrecondition(f"licence {license_id} is no longer valid: it was superseded by "
                                     f"{fields.get('superseded_by')} on {fields.get('superseded_at')}")
        revoked = events_pb2.LicenseRevoked(license_id=license_id, case_no=fields.get("case_no", ""),
                                            holder_code=fields.get("holder_code", ""), reason=reason,
                                            revoked_by=by or "")
        outbox = [outbox_entry("license_revoked", revoked, fields.get("case_no", ""))]
        now = datetime.datetime.now(datetime.timezone.utc).isoformat()
        if not self.store.revoke(license_id, now, reason, outbox):
            raise FailedPrecondition(f"licence {license_id} was revoked meanwhile")
        flush_outbox(LicenseDoc, license_id, self.bus, outbox)
        return self.get(license_id)

    def on_session_withdrawn(self, event):
        """joint_review closed a withdrawn case: no licence of it stays valid. Every licence issued
        for the case (those the event names and any this store holds for it) is revoked, each with
        its `license_revoked`. Idempotent: a licence revoked already is left as it is."""
        telemetry.mark_case(event.case_no)
        ids = list(event.license_ids)
        if event.case_no:
            ids += [d.license_id for d in self.store.by_case(event.case_no) if d.license_id not in ids]
        reason = "the case was withdrawn by the applicant" + (
            " after its conclusion" if event.after_conclusion else "")
        revoked = []
        for license_id in ids:
            fields = self.find(license_id)
            if fields is None or fields.get("status") != domain.VALID:
                continue
            try:
                self.revoke(license_id, reason, "joint_review:withdrawal",
                            actor=service_actor("joint_review:withdrawal"))
            except FailedPrecondition:  # revoked meanwhile (a concurrent redelivery)
                continue
            revoked.append(license_id)
        return revoked

    def on_opinion(self, event):
        """An approved item whose result is a licence gets exactly one licence, issued to the item's
        holder party (the applicant, the newborn, the deceased, the buyer, the enterprise …) under
        the implementing body's name; what it supersedes (the seller's certificate of a transfer) is
        marked SUPERSEDED. A redelivery issues nothing new and finishes the superseding."""
        if event.decision != common_pb2.DECISION_APPROVE or event.result_type != common_pb2.RESULT_TYPE_LICENSE:
            return None
        telemetry.mark_case(event.case_no)
        existing = self.store.for_case_item(event.case_no, event.item_code)
        if existing is not None:  # a redelivery; anything still pending goes out with the sweep
            fields = plain(existing.fields)
            self._supersede(event, fields)
            return fields
        holder = event.holder
        if not holder.id_number:  # not a domain refusal: dead-lettered, for an operator to see
            raise ValueError(f"opinion on item {event.item_code} of case {event.case_no} names no holder "
                             f"(party {holder.role or '?'}): no licence without its holder")
        holder_code_type = holder.code_type or ids.code_type_of(holder.id_number) or ids.CODE_TYPE_CITIZEN_ID
        issuer_code = f"{event.region_code}{event.department_code.upper()}"
        serial = f"{_today_cst():%Y}{self.store.serial_for(f'{event.license_type_code}.{issuer_code}', f'{event.case_no}:{event.item_code}'):08d}"
        key = self.signing_key(event.region_code)
        fields = {
            "license_id": domain.license_identifier(event.license_type_code, issuer_code, serial),
            "type_code": event.license_type_code, "type_name": event.license_type_name,
            "license_no": f"{event.license_type_code}{serial}",
            "issuer_name": event.issuer_name or event.department_code,
            "issuer_code": issuer_code, "valid_from": _today_cst().isoformat(), "valid_to": "",
            "holder_name": holder.name, "holder_code": holder.id_number,
            "holder_code_type": holder_code_type, "item_code": event.item_code, "case_no": event.case_no,
            "key_id": key.key_id, "status": domain.VALID,
            "issued_at": datetime.datetime.now(datetime.timezone.utc).isoformat()}
        fields["signature"] = domain.sign(fields, key.private_key)
        fields["document_key"] = f"licenses/{event.case_no}/{fields['license_id']}.pdf"
        self.blobs.put(BUCKET, fields["document_key"], document.render(fields, key.public_key),
                       content_type="application/pdf")
        issued = events_pb2.LicenseIssued(license_id=fields["license_id"], case_no=event.case_no,
                                          item_code=event.item_code, type_code=fields["type_code"],
                                          holder_code=fields["holder_code"], document_key=fields["document_key"])
        outbox = [outbox_entry("license_issued", issued, event.case_no)]
        if not self.store.insert(fields, outbox):
            existing = self.store.for_case_item(event.case_no, event.item_code)  # a concurrent redelivery won
            fields = plain(existing.fields)
            self._supersede(event, fields)
            return fields
        flush_outbox(LicenseDoc, fields["license_id"], self.bus, outbox)
        self._supersede(event, fields)
        return fields

    def _supersede(self, event, issued):
        """Mark SUPERSEDED what the new licence `issued` replaces (event.supersedes): the named
        licences, else every valid licence of that type the party holds that was issued before it.
        Each gets `license_revoked` with `superseded_by` from its own outbox. Idempotent: only a
        VALID licence changes; returns the ids superseded now."""
        if not event.HasField("supersedes") or not event.supersedes.holder_code:
            return []
        sup = event.supersedes
        type_code = sup.license_type_code or issued["type_code"]
        candidates = [plain(d.fields) for d in self.store.by_holder(sup.holder_code)]
        chosen = domain.to_supersede(candidates, issued, type_code, list(sup.license_ids))
        done = []
        now = datetime.datetime.now(datetime.timezone.utc).isoformat()
        reason = (f"superseded by {issued['type_name']} {issued['license_no']} ({issued['license_id']}) "
                  f"issued for case {issued['case_no']}")
        for old in chosen:
            msg = events_pb2.LicenseRevoked(license_id=old["license_id"], case_no=old.get("case_no", ""),
                                            holder_code=old.get("holder_code", ""), reason=reason,
                                            revoked_by=f"elicense:{issued['case_no']}",
                                            superseded_by=issued["license_id"])
            outbox = [outbox_entry("license_revoked", msg, old.get("case_no", ""))]
            if self.store.supersede(old["license_id"], now, issued["license_id"], reason, outbox):
                flush_outbox(LicenseDoc, old["license_id"], self.bus, outbox)
                done.append(old["license_id"])
        return done

    def get(self, license_id, actor=None, allow=None):
        """A licence; read by a member of staff (`actor`), the read is audited. `allow(fields)`:
        whether the caller may read it (the api's access rule); one they may not read is answered
        exactly as one that does not exist."""
        with self.audit.read(actor, "licence.read", license_id):
            if not license_id:
                raise InvalidArgument("name the licence (license_id)")
            doc = self.store.get(license_id)
            if doc is None or (allow is not None and not allow(plain(doc.fields))):
                raise NotFound(f"there is no licence {license_id}")
        return plain(doc.fields)

    def find(self, license_id):
        doc = self.store.get(license_id)
        return plain(doc.fields) if doc else None

    def list(self, holder_code="", case_no="", actor=None, allow=None):
        # a member of staff's look-up is audited; a holder code is masked in the record.
        # `allow(holder_code, case_no)`: the api's access rule, raising when the caller may not list
        with self.audit.read(actor, "licences.list", case_no or holder_code) as details:
            if allow is not None:
                allow(holder_code, case_no)
            if holder_code:
                found = [plain(d.fields) for d in self.store.by_holder(holder_code)]
            elif case_no:
                found = [plain(d.fields) for d in self.store.by_case(case_no)]
            else:
                raise InvalidArgument("name the holder (holder_code) or the case (case_no)")
            details["license_ids"] = [f["license_id"] for f in found]
        return found

    def verify(self, license_id):
        fields = self.get(license_id)
        key = self.store.key(fields.get("key_id", ""))
        if key is None:
            return False, "the key that signed this licence is unknown", fields
        valid, reason = domain.verify(fields, key.public_key)
        return valid, reason, fields
