"""elicense use cases: issue a signed licence when an item whose result is a licence is approved,
look licences up and verify them. No framework here: the store (services.elicense.store, or its
in-memory twin in fakes.py) keeps licences and publishes the events each change causes; the
handlers take and return domain values (services.elicense.domain) and plain dicts of a licence's
fields."""
import dataclasses
import datetime
import logging

from services.common import ids, telemetry
from services.common.audit import MemoryAuditLog, service_actor
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.elicense import document, domain
from services.elicense.domain import CST, REVOKED, SUPERSEDED, VALID

BUCKET = "results"
# the largest licence document VerifyLicenseDocument reads (services/common/limits.py says the same
# to the api's callers); elicense's own are under 10 KB
MAX_DOCUMENT_BYTES = 1024 * 1024

log = logging.getLogger("elicense")


def utc_now():
    return datetime.datetime.now(datetime.UTC)


def check_region(region_code):
    if not (region_code or "").isdigit() or len(region_code) != 6:
        raise InvalidArgument(f"region code {region_code!r} is not a 6-digit GB/T 2260 code")


class Elicense:
    """`store`: the licence store (port); `blobs`: where licence documents go (bucket `results`);
    `audit`: the audit log (services.common.audit): revocations, key rotations and staff reads;
    `clock()`: now, as an aware datetime; `site`: the region code of the site this elicense
    belongs to (the keys it makes are its own, those other sites publish go to its key directory)."""

    def __init__(self, store, blobs, audit=None, clock=None, site=""):
        self.store, self.blobs = store, blobs
        self.audit = audit or MemoryAuditLog("elicense")
        self.clock = clock or utc_now
        self.site = site

    def _now(self):
        return self.clock().astimezone(datetime.UTC)

    def _today(self):
        """Licence dates are dates in China, whatever the server's own time zone."""
        return self.clock().astimezone(CST).date()

    # --- this site's signing keys --------------------------------------------------------------

    def signing_key(self, region_code):
        """The region's active key; its first one is made (and published) when none exists yet."""
        key = self.store.active_key(region_code)
        if key is None:
            private, public = domain.new_key()
            made = domain.SigningKey(domain.key_identifier(region_code, 1, self.site), region_code, private, public,
                                     created_at=self._now().timestamp())
            key = self.store.add_key(made, [domain.published(made, self.site)])
        return key

    def rotate_key(self, region_code, actor=None):
        """A new active key for the region, published; the old ones stop signing (each published
        again with its retirement) and stay to verify what they signed."""
        with self.audit.attempt(actor, "signing_key.rotate", region_code) as details:
            check_region(region_code)
            now = self._now().timestamp()
            private, public = domain.new_key()
            made = domain.SigningKey(domain.key_identifier(region_code, int(now * 1000), self.site), region_code,
                                     private, public, created_at=now)
            key = self.store.add_key(made, [domain.published(made, self.site)])
            for old in self.store.keys(region_code):
                if old.active and old.key_id != key.key_id and old.created_at <= now:
                    retired = dataclasses.replace(old, active=False, retired_at=now)
                    self.store.retire_key(old.key_id, now, [domain.published(retired, self.site)])
            details["key_id"] = key.key_id
        return key

    def announce_keys(self):
        """Publish every key this site holds (`signing_key_published`), as the worker does once when
        it starts: a site that joined later, or missed an announcement, learns them. Each event's
        id is derived from the key and its retirement, so what a site has seen already is absorbed
        by its inbox. The number of events added to the keys' outboxes."""
        keys = self.store.every_key()
        added = 0
        for key in keys:
            region_keys = [k for k in keys if k.region_code == key.region_code]
            announced = dataclasses.replace(key, retired_at=domain.retirement(key, region_keys))
            added += self.store.announce_key(key.key_id, [domain.published(announced, self.site)])
        return added

    def published_keys(self, region_code):
        """The public keys that verify region `region_code`'s licences: this site's own and those of
        its key directory, each with the site that holds it; by key id."""
        check_region(region_code)
        own = self.store.keys(region_code)
        found = {k.key_id: domain.published(dataclasses.replace(k, retired_at=domain.retirement(k, own)), self.site)
                 for k in own}
        for key in self.store.directory_keys(region_code):
            found.setdefault(key.key_id, key)  # an own key is never shadowed
        return [found[key_id] for key_id in sorted(found)]

    # --- the key directory: the keys other sites publish ----------------------------------------

    def on_signing_key_published(self, key, sent_from=""):
        """Another site's key (a domain.PublishedKey; `sent_from`: the site its event's envelope
        names) goes into the key directory, so that what that site signs verifies here. This site's
        own keys coming back over the links are ignored (None). A key that contradicts what is
        known (a key id already known with another public key, one of this site's own key ids, an
        event whose envelope and payload name different sites) or is no key at all is refused
        (FailedPrecondition / InvalidArgument, logged) and changes nothing. A repeat changes
        nothing; a known key's retirement is recorded. The domain.DirectoryOutcome."""
        if sent_from and sent_from != key.site_region:
            raise self._refuse(InvalidArgument, f"signing key {key.key_id[:70]!r}: the event comes from site "
                                                f"{sent_from[:12]} but names site {key.site_region[:12]!r}")
        if key.site_region == self.site:
            log.debug("own signing key %s came back over the links: ignored", key.key_id)
            return None
        problems = domain.published_key_problems(key)
        if problems:
            raise self._refuse(InvalidArgument, f"signing key {key.key_id[:70]!r} of site {key.site_region[:12]} "
                                                f"refused: {'; '.join(problems)}")
        if self.store.key(key.key_id) is not None:
            raise self._refuse(FailedPrecondition, f"signing key {key.key_id} published by site {key.site_region} "
                                                   "refused: this site holds a key of that id itself")
        for _ in range(3):  # a concurrent first announcement of the same key: merge with it
            known = self.store.directory_key(key.key_id)
            if known is None:
                if self.store.add_directory_key(key, received_at=self._now().timestamp()):
                    return domain.DirectoryOutcome.ADDED
                continue
            merged = domain.merged_directory_key(known, key)
            if merged is None:
                raise self._refuse(FailedPrecondition, (
                    f"signing key {key.key_id} published by site {key.site_region} refused: the key directory "
                    f"knows that id as another key (site {known.site_region}, issuer region {known.issuer_region}); "
                    "it is never overwritten"))
            if merged == known:
                return domain.DirectoryOutcome.UNCHANGED
            if self.store.update_directory_key(merged):
                return domain.DirectoryOutcome.UPDATED
        raise RuntimeError(f"signing key {key.key_id}: the key directory kept changing; tried 3 times")

    @staticmethod
    def _refuse(error, message):
        log.error("%s", message)
        return error(message)

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

    def verify_document(self, data):
        """A licence document (the PDF's bytes) issued by any site (a domain.DocumentCheck): the
        signature with the key that signed it, found by the document's key id among this site's own
        keys and its key directory, never with the key the document itself carries; the key must
        sign for the licence's issuer region; then the validity dates; then, for a licence this site
        issued, its status here. Another site's licence verifies with its status said to be known
        at its issuing site only. Unreadable input is InvalidArgument."""
        if not data:
            raise InvalidArgument("give the licence document (document): the bytes of its PDF",
                                  zh="请提供电子证照文件。")
        if len(data) > MAX_DOCUMENT_BYTES:
            raise InvalidArgument(f"document is {len(data)} bytes long; a licence document is at most "
                                  f"{MAX_DOCUMENT_BYTES} bytes", zh="电子证照文件过大。")
        try:
            fields = document.read(bytes(data))
        except ValueError as exc:
            raise InvalidArgument(f"document: {exc}", zh="该文件不是本平台签发的电子证照。") from None
        shown = {k: v for k, v in fields.items()
                 if k not in ("status", "revoked_at", "superseded_at", "superseded_by", "public_key")}
        key_id = str(fields.get("key_id") or "")
        signer = self._signer(key_id)
        if signer is None:
            return domain.DocumentCheck(False, (
                f"the key that signed this document ({key_id[:70] or 'none named'}) is unknown at this site: it is "
                "neither one of its own keys nor one another site has published to its key directory"), shown)
        public, site, signs_for, own = signer
        issuer_region = str(fields.get("issuer_code") or "")[:6]
        if signs_for != issuer_region:
            return domain.DocumentCheck(False, (
                f"key {key_id} signs the licences of region {signs_for}, but this document names issuer "
                f"{fields.get('issuer_code', '')[:20]}"), shown, site)
        today = self._today().isoformat()
        valid, reason = domain.verify({**shown, "status": VALID}, public, today=today)
        if not valid:
            return domain.DocumentCheck(False, reason, shown, site)
        if not own:
            return domain.DocumentCheck(True, (
                f"signature and validity check out with key {key_id} of site {site}; whether the licence has "
                f"since been revoked or superseded is known only at its issuing site {site}"),
                shown, site, domain.StatusCheck.AT_ISSUING_SITE)
        held = self.store.get(shown.get("license_id", ""))
        if held is None:
            return domain.DocumentCheck(False, (
                f"signed with this site's key {key_id}, but this site keeps no licence {shown.get('license_id')}"),
                shown, site, domain.StatusCheck.CHECKED)
        if held.get("signature") != shown.get("signature"):
            return domain.DocumentCheck(False, (
                f"this document does not match licence {held['license_id']} as this site keeps it"),
                shown, site, domain.StatusCheck.CHECKED)
        status = {k: held[k] for k in ("status", "revoked_at", "superseded_at", "superseded_by") if held.get(k)}
        valid, reason = domain.verify({**shown, **status}, public, today=today)
        return domain.DocumentCheck(valid, reason, {**shown, **status}, site, domain.StatusCheck.CHECKED)

    def _signer(self, key_id):
        """(public key, site holding it, region it signs for, whether it is this site's own) of the
        key `key_id`: one of this site's own, else one of its key directory; None when unknown."""
        if not key_id:
            return None
        own = self.store.key(key_id)
        if own is not None:
            return own.public_key, self.site, own.region_code, True
        foreign = self.store.directory_key(key_id)
        if foreign is not None:
            return foreign.public_key, foreign.site_region, foreign.issuer_region, False
        return None
