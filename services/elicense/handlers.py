"""elicense use cases: issue a signed licence when an item whose result is a licence is approved,
look licences up and verify them. No framework here: the store (services.elicense.store, or its
in-memory twin in fakes.py) keeps licences and publishes the events each change causes; the
handlers take and return domain values (services.elicense.domain) and plain dicts of a licence's
fields."""
import datetime

from services.common import ids, telemetry
from services.common.audit import MemoryAuditLog, service_actor
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.elicense import document, domain
from services.elicense.domain import CST, REVOKED, SUPERSEDED, VALID

BUCKET = "results"


def utc_now():
    return datetime.datetime.now(datetime.UTC)


def check_region(region_code):
    if not (region_code or "").isdigit() or len(region_code) != 6:
        raise InvalidArgument(f"region code {region_code!r} is not a 6-digit GB/T 2260 code")


class Elicense:
    """`store`: the licence store (port); `blobs`: where licence documents go (bucket `results`);
    `audit`: the audit log (services.common.audit): revocations, key rotations and staff reads;
    `clock()`: now, as an aware datetime."""

    def __init__(self, store, blobs, audit=None, clock=None):
        self.store, self.blobs = store, blobs
        self.audit = audit or MemoryAuditLog("elicense")
        self.clock = clock or utc_now

    def _now(self):
        return self.clock().astimezone(datetime.UTC)

    def _today(self):
        """Licence dates are dates in China, whatever the server's own time zone."""
        return self.clock().astimezone(CST).date()

    def signing_key(self, region_code):
        key = self.store.active_key(region_code)
        if key is None:
            private, public = domain.new_key()
            key = self.store.add_key(domain.SigningKey(f"{region_code}-1", region_code, private, public))
        return key

    def rotate_key(self, region_code, actor=None):
        """A new active key for the region; the old ones stay and still verify what they signed."""
        with self.audit.attempt(actor, "signing_key.rotate", region_code) as details:
            check_region(region_code)
            now = self._now().timestamp()
            private, public = domain.new_key()
            key = self.store.add_key(domain.SigningKey(f"{region_code}-{int(now * 1000)}", region_code, private,
                                                       public, created_at=now))
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
        if fields.get("status") == REVOKED:
            raise FailedPrecondition(f"licence {license_id} was already revoked on {fields.get('revoked_at')}")
        if fields.get("status") == SUPERSEDED:
            raise FailedPrecondition(f"licence {license_id} is no longer valid: it was superseded by "
                                     f"{fields.get('superseded_by')} on {fields.get('superseded_at')}")
        revoked = domain.LicenseRevoked(license_id=license_id, case_no=fields.get("case_no", ""),
                                        holder_code=fields.get("holder_code", ""), reason=reason,
                                        revoked_by=by or "")
        if not self.store.change_status(license_id, VALID, REVOKED,
                                        {"revoked_at": self._now().isoformat(), "revoke_reason": reason},
                                        [revoked]):
            raise FailedPrecondition(f"licence {license_id} was revoked meanwhile")
        return self.get(license_id)

    def on_session_withdrawn(self, withdrawal):
        """joint_review closed a withdrawn case (a domain.Withdrawal): no licence of it stays valid.
        Every licence issued for the case (those the event names and any this store holds for it)
        is revoked, each with its `license_revoked`. Idempotent: a licence revoked already is left
        as it is."""
        telemetry.mark_case(withdrawal.case_no)
        license_ids = list(withdrawal.license_ids)
        if withdrawal.case_no:
            license_ids += [f["license_id"] for f in self.store.by_case(withdrawal.case_no)
                            if f["license_id"] not in license_ids]
        reason = "the case was withdrawn by the applicant" + (
            " after its conclusion" if withdrawal.after_conclusion else "")
        revoked = []
        for license_id in license_ids:
            fields = self.find(license_id)
            if fields is None or fields.get("status") != VALID:
                continue
            try:
                self.revoke(license_id, reason, "joint_review:withdrawal",
                            actor=service_actor("joint_review:withdrawal"))
            except FailedPrecondition:  # revoked meanwhile (a concurrent redelivery)
                continue
            revoked.append(license_id)
        return revoked

    def on_opinion(self, opinion):
        """An approved item whose result is a licence (a domain.Opinion) gets exactly one licence,
        issued to the item's holder party (the applicant, the newborn, the deceased, the buyer, the
        enterprise …) under the implementing body's name; what it supersedes (the seller's
        certificate of a transfer) is marked SUPERSEDED. A redelivery issues nothing new and
        finishes the superseding."""
        if not opinion.issues_a_licence:
            return None
        telemetry.mark_case(opinion.case_no)
        existing = self.store.for_case_item(opinion.case_no, opinion.item_code)
        if existing is not None:  # a redelivery; anything still pending goes out with the sweep
            self._supersede(opinion, existing)
            return existing
        holder = opinion.holder
        if not holder.id_number:  # not a domain refusal: dead-lettered, for an operator to see
            raise ValueError(f"opinion on item {opinion.item_code} of case {opinion.case_no} names no holder "
                             f"(party {holder.role or '?'}): no licence without its holder")
        holder_code_type = holder.code_type or ids.code_type_of(holder.id_number) or ids.CODE_TYPE_CITIZEN_ID
        issuer_code = f"{opinion.region_code}{opinion.department_code.upper()}"
        today = self._today()
        number = self.store.serial_for(f"{opinion.license_type_code}.{issuer_code}",
                                       f"{opinion.case_no}:{opinion.item_code}")
        serial = f"{today:%Y}{number:08d}"
        key = self.signing_key(opinion.region_code)
        fields = {
            "license_id": domain.license_identifier(opinion.license_type_code, issuer_code, serial),
            "type_code": opinion.license_type_code, "type_name": opinion.license_type_name,
            "license_no": f"{opinion.license_type_code}{serial}",
            "issuer_name": opinion.issuer_name or opinion.department_code,
            "issuer_code": issuer_code, "valid_from": today.isoformat(), "valid_to": "",
            "holder_name": holder.name, "holder_code": holder.id_number,
            "holder_code_type": holder_code_type, "item_code": opinion.item_code, "case_no": opinion.case_no,
            "key_id": key.key_id, "status": VALID, "issued_at": self._now().isoformat()}
        fields["signature"] = domain.sign(fields, key.private_key)
        fields["document_key"] = f"licenses/{opinion.case_no}/{fields['license_id']}.pdf"
        self.blobs.put(BUCKET, fields["document_key"], document.render(fields, key.public_key),
                       content_type="application/pdf")
        issued = domain.LicenseIssued(license_id=fields["license_id"], case_no=opinion.case_no,
                                      item_code=opinion.item_code, type_code=fields["type_code"],
                                      holder_code=fields["holder_code"], document_key=fields["document_key"])
        if not self.store.insert(fields, [issued]):
            # a concurrent redelivery won
            fields = self.store.for_case_item(opinion.case_no, opinion.item_code)
        self._supersede(opinion, fields)
        return fields

    def _supersede(self, opinion, issued):
        """Mark SUPERSEDED what the new licence `issued` replaces (opinion.supersedes): the named
        licences, else every valid licence of that type the party holds that was issued before it.
        Each gets `license_revoked` with `superseded_by` from its own outbox. Idempotent: only a
        VALID licence changes; returns the ids superseded now."""
        sup = opinion.supersedes
        if sup is None or not sup.holder_code:
            return []
        type_code = sup.license_type_code or issued["type_code"]
        candidates = self.store.by_holder(sup.holder_code)
        chosen = domain.to_supersede(candidates, issued, type_code, list(sup.license_ids))
        done = []
        now = self._now().isoformat()
        reason = (f"superseded by {issued['type_name']} {issued['license_no']} ({issued['license_id']}) "
                  f"issued for case {issued['case_no']}")
        for old in chosen:
            event = domain.LicenseRevoked(license_id=old["license_id"], case_no=old.get("case_no", ""),
                                          holder_code=old.get("holder_code", ""), reason=reason,
                                          revoked_by=f"elicense:{issued['case_no']}",
                                          superseded_by=issued["license_id"])
            if self.store.change_status(old["license_id"], VALID, SUPERSEDED,
                                        {"superseded_at": now, "superseded_by": issued["license_id"],
                                         "supersede_reason": reason}, [event]):
                done.append(old["license_id"])
        return done

    def get(self, license_id, actor=None, allow=None):
        """A licence; read by a member of staff (`actor`), the read is audited. `allow(fields)`:
        whether the caller may read it (the api's access rule); one they may not read is answered
        exactly as one that does not exist."""
        with self.audit.read(actor, "licence.read", license_id):
            if not license_id:
                raise InvalidArgument("name the licence (license_id)")
            fields = self.store.get(license_id)
            if fields is None or (allow is not None and not allow(fields)):
                raise NotFound(f"there is no licence {license_id}")
        return fields

    def find(self, license_id):
        return self.store.get(license_id)

    def list(self, holder_code="", case_no="", actor=None, allow=None):
        # a member of staff's look-up is audited; a holder code is masked in the record.
        # `allow(holder_code, case_no)`: the api's access rule, raising when the caller may not list
        with self.audit.read(actor, "licences.list", case_no or holder_code) as details:
            if allow is not None:
                allow(holder_code, case_no)
            if holder_code:
                found = self.store.by_holder(holder_code)
            elif case_no:
                found = self.store.by_case(case_no)
            else:
                raise InvalidArgument("name the holder (holder_code) or the case (case_no)")
            details["license_ids"] = [f["license_id"] for f in found]
        return found

    def verify(self, license_id):
        fields = self.get(license_id)
        key = self.store.key(fields.get("key_id", ""))
        if key is None:
            return False, "the key that signed this licence is unknown", fields
        valid, reason = domain.verify(fields, key.public_key, today=self._today().isoformat())
        return valid, reason, fields
