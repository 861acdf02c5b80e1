"""delivery use cases: when a case is approved, send its results by the channel the applicant
chose; then the clerk and the carrier move WINDOW and MAIL deliveries on. No framework here;
`licenses(id)` looks a licence up at elicense (over the bus), only for a licence whose document
key case_concluded does not give (events and sessions from before joint_review kept the keys).
What other services report comes in as the domain's values (domain.CaseConcluded,
SessionWithdrawn, LicenseRevoked), decoded by worker.py; a delivery goes out as a dict whose
status and channel are domain.Status and domain.Channel (api.py encodes it).

Every change appends to the delivery's history and hands the store its events with it: the store
(the port, services.delivery.store or services.delivery.fakes) saves both in one atomic update,
only if the delivery is still as it was read, and publishes the events after the commit. The
pickup code is kept on the delivery only: never in an event, a history note or a log line."""
import datetime
from datetime import timedelta

from onething.delivery.v1 import events_pb2
from services.common import telemetry
from services.common.address import check_address
from services.common.audit import MemoryAuditLog, as_actor
from services.common.bus import outbox_entry
from services.common.errors import Busy, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from services.common.privacy import mask_id
from services.delivery import domain, wire

RESULTS = "results"
REVOKED = "LICENSE_STATUS_REVOKED"
LINK_TTL = timedelta(hours=24)


def _now():
    return datetime.datetime.now(datetime.UTC)


def _channel_number(channel):
    return domain.CHANNEL_NUMBERS[domain.Channel(channel)]


class Delivery:
    """`store`: the persistence port (it publishes the events it is given); `blobs`: issues the
    download links; `clock()`: now, as an aware datetime."""

    def __init__(self, store, blobs, pickup_code=domain.new_pickup_code, audit=None, pickup_max_attempts=5,
                 pickup_lock=timedelta(minutes=30), clock=_now):
        self.store, self.blobs = store, blobs
        self.pickup_code = pickup_code
        # wrong pickup codes: after `pickup_max_attempts` in a row, ConfirmPickup is locked for
        # `pickup_lock` (RESOURCE_EXHAUSTED, even for the right code); the right code resets the count
        self.pickup_max_attempts, self.pickup_lock, self.clock = int(pickup_max_attempts), pickup_lock, clock
        # the audit log (services.common.audit): pickups, dispatches and staff reads; never the
        # pickup code or the address
        self.audit = audit or MemoryAuditLog("delivery")

    # -- case approved -------------------------------------------------------------------------

    def on_case_concluded(self, event, licenses):
        if not event.approved:
            return None
        telemetry.mark_case(event.case_no)
        existing = self.store.get(event.case_no)
        if existing is not None:  # a redelivery; anything still pending goes out with the sweep
            return existing
        channel = domain.Channel(event.channel)
        results = []
        revoked = self.store.revocations(event.case_no)
        for license_id in event.license_ids:
            key = event.document_key(license_id)
            # the event names the document; only an event from before joint_review gave the keys
            # (or a session stored before it kept them) makes delivery ask elicense
            lic = {} if key else (licenses(license_id) or {})
            key = key or lic.get("document_key", "")
            item = {"license_id": license_id, "object_key": key}
            if lic.get("status") == REVOKED and license_id not in revoked:
                revoked[license_id] = {"revoked_at": lic.get("revoked_at", ""), "reason": lic.get("revoke_reason", "")}
            if license_id in revoked:  # revoked before its delivery: no link for it
                item.update(revoked=True, revoked_at=revoked[license_id]["revoked_at"],
                            revoke_reason=revoked[license_id]["reason"])
            elif channel == domain.ELECTRONIC and key:
                item["download_url"] = self.blobs.download_url(RESULTS, key, LINK_TTL)
                item["expires_at"] = (self.clock() + LINK_TTL).isoformat()
            results.append(item)
        steps = domain.steps_for(channel)
        at = self.clock().isoformat()
        body = {"case_no": event.case_no, "channel": channel, "status": steps[-1], "results": results,
                "applicant_id": event.applicant_id, "region_code": event.region_code,
                "package_code": event.package_code, "lead_department": event.lead_department, "attempt": 1,
                "history": [{"status": s, "at": at, "note": "", "by": ""} for s in steps]}
        outbox = []
        if channel == domain.ELECTRONIC:
            outbox.append(outbox_entry("delivery_dispatched", events_pb2.DeliveryDispatched(
                case_no=event.case_no, channel=_channel_number(channel), attempt=1), event.case_no))
            outbox.append(self._completed(body, at, ""))
        elif channel == domain.WINDOW:
            body["pickup_code"] = self.pickup_code()
            body["history"][-1]["note"] = "results wait at the window; the applicant shows the pickup code"
            outbox.append(outbox_entry("delivery_ready_for_pickup", events_pb2.DeliveryReadyForPickup(
                case_no=event.case_no, channel=_channel_number(channel), applicant_id=event.applicant_id,
                region_code=event.region_code), event.case_no))
        elif channel == domain.MAIL:
            address = dict(event.address)
            body["address"] = address
            try:
                # intake checks the address at submit; this is the defensive second look
                check_address(address)
            except InvalidArgument as exc:
                body["status"], body["failure_reason"] = domain.FAILED, exc.message
                body["history"].append({"status": domain.FAILED, "at": at, "note": exc.message, "by": ""})
                outbox.append(outbox_entry("delivery_failed", events_pb2.DeliveryFailed(
                    case_no=event.case_no, channel=_channel_number(channel), applicant_id=event.applicant_id,
                    region_code=event.region_code, reason=exc.message, attempt=1), event.case_no))
        else:
            body["status"] = domain.FAILED
            body["failure_reason"] = f"no delivery channel chosen (DELIVERY_CHANNEL_{channel})"
            body["history"].append({"status": domain.FAILED, "at": at, "note": body["failure_reason"], "by": ""})
            outbox.append(outbox_entry("delivery_failed", events_pb2.DeliveryFailed(
                case_no=event.case_no, channel=_channel_number(channel), applicant_id=event.applicant_id,
                region_code=event.region_code, reason=body["failure_reason"], attempt=1), event.case_no))
        self.store.insert(body, outbox)  # False: the case has one already (a racing redelivery, a withdrawal)
        return self._view(self.store.get(event.case_no))

    def _completed(self, body, at, by):
        return outbox_entry("delivery_completed", events_pb2.DeliveryCompleted(
            case_no=body["case_no"], channel=_channel_number(body["channel"]), applicant_id=body["applicant_id"],
            region_code=body.get("region_code", ""), package_code=body.get("package_code", ""),
            lead_department=body.get("lead_department", ""), completed_at=wire.timestamp_of_iso(at),
            completed_by=by, attempt=body.get("attempt", 1)), body["case_no"])

    # -- the clerk and the carrier -------------------------------------------------------------

    def _load(self, case_no, allow=None):
        """The delivery; `allow(body)` is the api's access rule: it raises when the caller may not act
        on it (PERMISSION_DENIED for a clerk of another region, NOT_FOUND for someone else's)."""
        if not case_no:
            raise InvalidArgument("name the case (case_no)")
        telemetry.mark_case(case_no)
        body = self.store.get(case_no)
        if body is None:
            raise NotFound(f"there is no delivery for case {case_no} (yet)")
        if allow is not None:
            allow(body)
        return body

    def _move(self, body, status, at, note, by, outbox, **changes):
        expected = body["status"]
        body = dict(body, status=status, **changes)
        body["history"] = [*body["history"], {"status": status, "at": at, "note": note, "by": by}]
        if not self.store.update(body["case_no"], expected, body, outbox):
            # someone else moved it between our read and our write
            raise FailedPrecondition(f"the delivery of case {body['case_no']} changed meanwhile; look again")
        return self._view(body)

    def confirm_pickup(self, case_no, pickup_code, clerk_id, actor=None, allow=None):
        with self.audit.attempt(actor, "pickup.confirm", case_no):
            return self._confirm_pickup(case_no, pickup_code, clerk_id, allow)

    def _confirm_pickup(self, case_no, pickup_code, clerk_id, allow=None):
        if not (pickup_code or "").strip() or not (clerk_id or "").strip():
            raise InvalidArgument("a pickup needs the applicant's pickup code and the clerk (clerk_id)")
        body = self._load(case_no, allow)
        self._check_pickup_lock(body)
        try:
            domain.check_pickup(body, pickup_code)
        except PermissionDenied as exc:  # a wrong code: counted; too many in a row lock the pickup
            failures, locked = self.store.record_pickup_failure(
                case_no, self.pickup_max_attempts, (self.clock() + self.pickup_lock).isoformat())
            if locked:
                raise PermissionDenied(f"{exc.message}; after {failures} wrong codes in a row the pickup is locked "
                                       f"for {self.pickup_lock.total_seconds() / 60:g} minutes",
                                       zh="取件码错误次数过多，已暂时锁定，请稍后再试。") from None
            raise
        at = self.clock().isoformat()
        return self._move(body, domain.COMPLETED, at, "picked up at the window", clerk_id,
                          [self._completed(body, at, clerk_id)], pickup_failures=0, pickup_locked_until="")

    def _check_pickup_lock(self, body):
        until = body.get("pickup_locked_until") or ""
        if not until:
            return
        left = (datetime.datetime.fromisoformat(until) - self.clock()).total_seconds()
        if left > 0:
            raise Busy(f"the pickup of case {body['case_no']} is locked after {self.pickup_max_attempts} wrong codes; "
                       f"try again in {max(1, round(left / 60))} minutes", zh="取件码错误次数过多，已暂时锁定，请稍后再试。",
                       retry_after_s=left)

    def record_dispatch(self, case_no, carrier, tracking_number, clerk_id, actor=None, allow=None):
        with self.audit.attempt(actor, "dispatch.record", case_no, carrier=carrier):
            return self._record_dispatch(case_no, carrier, tracking_number, clerk_id, allow)

    def _record_dispatch(self, case_no, carrier, tracking_number, clerk_id, allow=None):
        if not (clerk_id or "").strip():
            raise InvalidArgument("name the clerk who dispatched the parcel (clerk_id)")
        carrier, number = domain.normalise_tracking(carrier, tracking_number)
        body = self._load(case_no, allow)
        domain.check_dispatch(body)
        event = events_pb2.DeliveryDispatched(case_no=case_no, channel=_channel_number(body["channel"]),
                                              carrier=domain.carrier_number(carrier), tracking_number=number,
                                              dispatched_by=clerk_id, attempt=body.get("attempt", 1))
        return self._move(body, domain.DISPATCHED, self.clock().isoformat(),
                          f"handed to {carrier}, tracking number {number}", clerk_id,
                          [outbox_entry("delivery_dispatched", event, case_no)], carrier=carrier,
                          tracking_number=number)

    def record_delivered(self, case_no, tracking_number, signed_by, allow=None):
        if not (signed_by or "").strip():
            raise InvalidArgument("name who signed for the parcel (signed_by)")
        body = self._load(case_no, allow)
        domain.check_delivered(body, tracking_number)
        at = self.clock().isoformat()
        return self._move(body, domain.COMPLETED, at, f"signed for by {signed_by}", signed_by,
                          [self._completed(body, at, signed_by)])

    def record_undeliverable(self, case_no, tracking_number, reason, allow=None):
        """MAIL: the carrier brings the parcel back (wrong address, nobody there): FAILED, and
        `delivery_failed` tells intake, which shows the applicant the case's results did not arrive."""
        reason = (reason or "").strip()
        if not reason:
            raise InvalidArgument("say why the parcel could not be delivered (reason)")
        body = self._load(case_no, allow)
        domain.check_undeliverable(body, tracking_number)
        event = events_pb2.DeliveryFailed(case_no=case_no, channel=_channel_number(body["channel"]),
                                          applicant_id=body.get("applicant_id", ""),
                                          region_code=body.get("region_code", ""), reason=reason,
                                          attempt=body.get("attempt", 1))
        return self._move(body, domain.FAILED, self.clock().isoformat(), f"undeliverable: {reason}", "",
                          [outbox_entry("delivery_failed", event, case_no)], failure_reason=reason)

    def redispatch(self, case_no, address, carrier, tracking_number, clerk_id, actor=None, allow=None):
        """Send a failed delivery again (see _redispatch); the new address stays out of the audit record."""
        with self.audit.attempt(actor, "dispatch.redispatch", case_no, carrier=carrier) as details:
            body = self._redispatch(case_no, address, carrier, tracking_number, clerk_id, allow)
            details["attempt"] = body.get("attempt", 0)
        return body

    def _redispatch(self, case_no, address, carrier, tracking_number, clerk_id, allow=None):
        """A failed delivery goes out again by mail to a corrected address (checked like the one
        given at submission): DISPATCHED, attempt + 1, `delivery_dispatched` again."""
        if not case_no:
            raise InvalidArgument("name the case (case_no)")
        if not (clerk_id or "").strip():
            raise InvalidArgument("name the clerk who sends the parcel again (clerk_id)")
        address = {k: (v or "").strip() for k, v in dict(address or {}).items()}
        check_address(address)
        carrier, number = domain.normalise_tracking(carrier, tracking_number)
        body = self._load(case_no, allow)
        domain.check_redispatch(body)
        attempt = int(body.get("attempt", 1)) + 1
        event = events_pb2.DeliveryDispatched(case_no=case_no, channel=_channel_number(domain.MAIL),
                                              carrier=domain.carrier_number(carrier), tracking_number=number,
                                              dispatched_by=clerk_id, attempt=attempt)
        return self._move(body, domain.DISPATCHED, self.clock().isoformat(),
                          f"sent again to the corrected address: handed to {carrier}, tracking number {number}",
                          clerk_id, [outbox_entry("delivery_dispatched", event, case_no)], channel=domain.MAIL,
                          address=address, carrier=carrier, tracking_number=number, attempt=attempt,
                          failure_reason="")

    # -- what other services report -----------------------------------------------------------

    def on_license_revoked(self, event):
        """elicense revoked a licence: from now on no link to it is given (GetDelivery shows it as
        revoked). Kept apart from the delivery, so it counts even if the delivery comes later."""
        if not event.license_id:
            return False
        telemetry.mark_case(event.case_no)
        self.store.add_revocation(event.license_id, event.case_no, self.clock().isoformat(), event.reason)
        return True

    def on_session_withdrawn(self, event):
        """The case was withdrawn after its conclusion (joint_review decided; see SessionWithdrawn):
        nothing is delivered. The delivery is CANCELLED, its links and pickup code dropped; if it
        does not exist yet, a cancelled one is made, so the late case_concluded delivers nothing."""
        if not event.after_conclusion or not event.case_no:
            return None
        telemetry.mark_case(event.case_no)
        note = "the case was withdrawn after its conclusion: nothing is delivered, its licences are revoked"
        for _ in range(10):
            body = self.store.get(event.case_no)
            at = self.clock().isoformat()
            if body is None:
                body = {"case_no": event.case_no, "channel": domain.Channel.UNSPECIFIED,
                        "status": domain.CANCELLED, "results": [], "region_code": event.region_code, "attempt": 0,
                        "history": [{"status": domain.CANCELLED, "at": at, "note": note, "by": ""}]}
                if self.store.insert(body, []):
                    return self._view(body)
                continue
            if body["status"] == domain.CANCELLED:
                return self._view(body)  # a redelivery
            expected = body["status"]
            body.pop("pickup_code", None)
            body["results"] = [{k: v for k, v in r.items() if k not in ("download_url", "expires_at")}
                               for r in body.get("results", [])]
            body["status"] = domain.CANCELLED
            body["history"] = [*body["history"], {"status": domain.CANCELLED, "at": at, "note": note, "by": ""}]
            if self.store.update(event.case_no, expected, body, []):
                return self._view(body)
        raise RuntimeError(f"the delivery of case {event.case_no} kept changing under us")

    def _view(self, body):
        """The delivery as callers see it: a revoked licence is marked so and its link is not given."""
        if body is None:
            return None
        revoked = self.store.revocations(body["case_no"])
        if revoked:
            body = dict(body, results=[dict(r) for r in body.get("results", [])])
            for r in body["results"]:
                if r["license_id"] in revoked:
                    r.pop("download_url", None)
                    r.pop("expires_at", None)
                    r.update(revoked=True, revoked_at=revoked[r["license_id"]]["revoked_at"],
                             revoke_reason=revoked[r["license_id"]]["reason"])
        return body

    def get(self, case_no, actor=None, allow=None):
        """The delivery; read by a member of staff (`actor`), the read is audited and the applicant's
        identity number masked (a clerk sends the parcel to the address; the number is not needed)."""
        with self.audit.read(actor, "delivery.read", case_no):
            body = self._view(self._load(case_no, allow))
        if actor is not None and as_actor(actor).is_staff and body.get("applicant_id"):
            body = dict(body, applicant_id=mask_id(body["applicant_id"]))
        return body

