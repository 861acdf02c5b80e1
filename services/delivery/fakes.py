"""The in-memory stand-in for delivery's store (services.delivery.store.DeliveryStore), for unit
tests: the same methods and the same outbox rules (events published after a committed save, kept
pending when the bus fails, published later by `sweep`), run against the same contract tests
(tests/test_delivery_store_contract.py)."""
import copy

from services.common.memory import MemoryOutbox
from services.delivery import domain


class MemoryDeliveryStore(MemoryOutbox):
    """`docs`: {case_no: {"body": the delivery (domain form), "outbox": [pending entries]}};
    `revoked`: {licence id: {"case_no", "revoked_at", "reason"}}. Tests may read both."""

    def __init__(self, bus=None):
        super().__init__(bus)
        self.docs = {}
        self.revoked = {}

    # -- deliveries ------------------------------------------------------------------------------

    def get(self, case_no):
        doc = self.docs.get(case_no)
        return copy.deepcopy(doc["body"]) if doc else None

    def insert(self, body, events=()):
        if body["case_no"] in self.docs:
            return False
        events = copy.deepcopy(list(events))
        self.docs[body["case_no"]] = {"body": _checked(body), "outbox": list(events)}
        self.publish(body["case_no"], events)
        return True

    def update(self, case_no, expected_status, body, events=()):
        doc = self.docs.get(case_no)
        if doc is None or doc["body"]["status"] != domain.Status(expected_status):
            return False
        events = copy.deepcopy(list(events))
        doc["body"] = _checked(body)
        doc["outbox"].extend(events)
        self.publish(case_no, events)
        return True

    def record_pickup_failure(self, case_no, max_attempts, locked_until):
        body = self.docs[case_no]["body"]
        body["pickup_failures"] = int(body.get("pickup_failures") or 0) + 1
        if body["pickup_failures"] >= max_attempts:
            failures, body["pickup_failures"], body["pickup_locked_until"] = body["pickup_failures"], 0, locked_until
            return failures, True
        return body["pickup_failures"], False

    # -- revocations -----------------------------------------------------------------------------

    def add_revocation(self, license_id, case_no, revoked_at, reason):
        self.revoked.setdefault(license_id, {"case_no": case_no, "revoked_at": revoked_at, "reason": reason})

    def revocations(self, case_no):
        return {lid: {"revoked_at": r["revoked_at"] or "", "reason": r["reason"] or ""}
                for lid, r in self.revoked.items() if r["case_no"] == case_no}


def _checked(body):
    """A copy of the delivery, refusing what the real store could not write: a status or channel
    outside the domain's enums (the store maps each to its stored string)."""
    body = copy.deepcopy(body)
    if "status" in body:
        body["status"] = domain.Status(body["status"])
    if "channel" in body:
        body["channel"] = domain.Channel(body["channel"])
    for h in body.get("history", []):
        h["status"] = domain.Status(h["status"])
    return body
