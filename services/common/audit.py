"""The audit log: who did what, to what, when, with what outcome. Append-only and hash-chained.

Every service keeps one chain, in the collection `audit` of its own database (see MongoAuditLog for
why). A record:

    {"seq": 17, "at": "2026-11-27T08:00:00.123456+00:00", "service": "joint_review",
     "actor": {"sub": "officer-7", "role": "officer", "department": "gaj", "region": "440100",
               "on_behalf_of": "", "auth": "token"},
     "action": "opinion.record", "target": "440100XSECS202611260001", "outcome": "ok",
     "details": {"item_code": "110000000003", "decision": "DECISION_APPROVE"},
     "prev_hash": "<hash of record 16>", "hash": "<sha256 hex>"}

    hash = sha256(prev_hash + canonical(record without prev_hash and hash))

where canonical is JSON with sorted keys, no spaces, UTF-8. The first record's prev_hash is 64
zeros. `seq` counts from 1 without gaps; a unique index on it lets exactly one record follow each
record, so two appends never share a predecessor. `verify()` walks a chain and names the first
record that was edited, removed or reordered.

The actor comes from the verified token (`auth` "token"). Where an RPC has no token yet, the api
passes the actor the request names, marked `auth` "unauthenticated"; work a service does on its own
(an event it handles) has `auth` "service". `details` never hold personal data: codes, ids, counts
and decisions only; every string in them is masked (services.common.privacy) as a safety net.

The core (records, canonical JSON, the chain, verification, MemoryAuditLog) knows no framework;
MongoAuditLog is the adapter the services use, `actor_of(context)` the api role's helper."""
import contextlib
import datetime
import hashlib
import json
import logging
import random
import threading
import time
from dataclasses import asdict, dataclass

from services.common.errors import DomainError
from services.common.privacy import mask_text

log = logging.getLogger(__name__)

GENESIS = "0" * 64
COLLECTION = "audit"
TOKEN, UNAUTHENTICATED, SERVICE = "token", "unauthenticated", "service"
STAFF_ROLES = ("clerk", "officer", "operator", "sre")
OK = "ok"


# --- who --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AuditActor:
    sub: str
    role: str
    department: str = ""
    region: str = ""
    on_behalf_of: str = ""
    auth: str = TOKEN  # token | unauthenticated | service

    @property
    def is_staff(self):
        """A member of staff (clerk, officer, operator, sre): their reads of personal data are audited."""
        return self.role in STAFF_ROLES

    def as_dict(self):
        return {k: ("" if v is None else str(v)) for k, v in asdict(self).items()}


def from_auth(actor, on_behalf_of=""):
    """The audit actor of a verified token's actor (services.common.auth.Actor)."""
    return AuditActor(actor.sub, actor.role, getattr(actor, "department", "") or "", getattr(actor, "region", "") or "",
                      on_behalf_of or getattr(actor, "on_behalf_of", "") or "", TOKEN)


def unauthenticated(sub, role, department="", region="", on_behalf_of=""):
    """Someone the request names but no token proves (RPCs that do not take tokens yet)."""
    return AuditActor(sub or "anonymous", role or "unknown", department or "", region or "", on_behalf_of or "",
                      UNAUTHENTICATED)


def service_actor(name, on_behalf_of=""):
    """A process of the platform acting on its own (an event it handles, a desk's rule)."""
    return AuditActor(name, "service", "", "", on_behalf_of, SERVICE)


def actor_of(context, sub="", role="", department="", region="", on_behalf_of=""):
    """For the api role: the caller of a gRPC call as the audit log records it. The caller the api
    server verified (services.common.policy, with the applicant a clerk acts for), else a valid
    bearer token, gives the actor (the request's names are then ignored); without one, the names
    the request gives, marked unauthenticated. A refused or absent token is not this function's to
    judge (the api's own checks do): it only decides what the record says."""
    verified = _verified_caller()
    if verified is not None:  # the api server's access policy verified the token already
        return from_auth(verified.actor, on_behalf_of or getattr(verified, "on_behalf_of", "") or "")
    from services.common import auth
    metadata = context.invocation_metadata() or ()
    if any(k == "authorization" for k, _ in metadata):
        try:
            return from_auth(auth.actor_from_metadata(metadata), on_behalf_of)
        except (DomainError, OSError):  # a bad token, or no identity provider key here: unproven
            pass
    return unauthenticated(sub, role, department, region, on_behalf_of)


def _verified_caller():
    """The caller the api server's interceptor verified for this call (services.common.policy), if
    there is one with an actor."""
    try:
        from services.common import policy
    except ImportError:  # pragma: no cover - a build without the access policy
        return None
    caller = policy.current_or_none()
    return caller if caller is not None and getattr(caller, "actor", None) is not None else None


def token_actor(context, on_behalf_of=""):
    """The verified token's actor, or None when the call carries no valid token."""
    actor = actor_of(context, on_behalf_of=on_behalf_of)
    return actor if actor.auth == TOKEN else None


# --- records and the chain ----------------------------------------------------------------------

def canonical(record):
    """The bytes a record is hashed over: every field but prev_hash, hash and the store's _id, as
    JSON with sorted keys and no spaces, UTF-8."""
    body = {k: v for k, v in record.items() if k not in ("_id", "hash", "prev_hash")}
    # default=str: a value someone put into the store by hand still hashes (and then fails to match)
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")


def chain_hash(prev_hash, record):
    return hashlib.sha256(str(prev_hash or "").encode("utf-8") + canonical(record)).hexdigest()


def _clean(value, depth=0):
    """Details as plain JSON values, strings masked and bounded."""
    if depth > 4:
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v, depth + 1) for k, v in list(value.items())[:50]}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value) if isinstance(value, (set, frozenset)) else value
        return [_clean(v, depth + 1) for v in list(items)[:200]]
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return repr(value)
    return mask_text(str(value))[:500]


def _now():
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds")


def as_actor(actor):
    """An AuditActor from what a handler was given: an AuditActor, a verified token's actor
    (services.common.auth.Actor) or nothing (recorded as an unknown, unauthenticated caller)."""
    if actor is None:
        return unauthenticated("", "")
    if isinstance(actor, AuditActor):
        return actor
    if isinstance(actor, dict):
        return AuditActor(**{k: str(actor.get(k) or "") for k in ("sub", "role", "department", "region",
                                                                 "on_behalf_of", "auth") if k in actor})
    return from_auth(actor)


def build_record(seq, prev_hash, service, actor, action, target="", outcome=OK, details=None, at=None):
    record = {"seq": int(seq), "at": at or _now(), "service": service, "actor": as_actor(actor).as_dict(),
              "action": action, "target": mask_text(str(target or "")), "outcome": outcome or OK,
              "details": _clean(dict(details or {})), "prev_hash": prev_hash}
    record["hash"] = chain_hash(prev_hash, record)
    return record


@dataclass(frozen=True)
class Finding:
    """The first thing wrong with a chain: the record it is about and what happened to it."""
    seq: int
    kind: str      # edited | removed | reordered
    message: str


def _written_as(record, window=64):
    """The seq a record was hashed with, when its content is intact but its seq was changed."""
    seq = record.get("seq")
    if not isinstance(seq, int):
        return None
    prev_hash, stored = record.get("prev_hash", ""), record.get("hash")
    for delta in range(1, window + 1):
        for candidate in (seq - delta, seq + delta):
            if candidate >= 1 and chain_hash(prev_hash, dict(record, seq=candidate)) == stored:
                return candidate
    return None


def verify(records, lookup=None, anchor=None):
    """Walk a chain in the order given (seq order, as the store keeps it) and return
    (first Finding or None, number of records read, (head seq, head hash)).

    `lookup(hash)` finds a record by its hash anywhere in the chain (to tell a record moved from a
    record removed); `anchor` = (seq, hash) of a head noted earlier, outside the chain (a chain can
    not show by itself that its last records were cut off)."""
    if lookup is None and isinstance(records, (list, tuple)):
        by_hash = {r.get("hash"): r for r in records}
        lookup = by_hash.get
    prev, count = None, 0
    a_seq, a_hash = (int(anchor[0]), anchor[1]) if anchor is not None else (None, None)
    for r in records:
        count += 1
        seq = r.get("seq")
        expected_seq = prev["seq"] + 1 if prev else 1
        expected_prev = prev["hash"] if prev else GENESIS
        if chain_hash(r.get("prev_hash", ""), r) != r.get("hash"):
            written = _written_as(r)
            if written is not None:
                return Finding(seq, "reordered", f"the record numbered {seq} was written as record {written}: "
                                                 "records were renumbered (reordered)"), count, _head(prev)
            return Finding(seq, "edited", f"record {seq} was edited: its content does not match its hash"), \
                count, _head(prev)
        if seq == expected_seq and r.get("prev_hash") == expected_prev:
            if seq == a_seq and r.get("hash") != a_hash:
                return Finding(seq, "edited", f"record {seq} does not have the hash noted for it (the anchor): "
                                              "the chain was rewritten up to it"), count, _head(prev)
            prev = r
            continue
        linked = lookup(r.get("prev_hash")) if lookup and r.get("prev_hash") != GENESIS else None
        if r.get("prev_hash") == GENESIS and seq != 1:
            linked = {"seq": 0}
        if linked is not None and linked.get("seq") != (prev or {}).get("seq"):
            return Finding(seq, "reordered", f"record {seq} stands after record {(prev or {}).get('seq', 0)} but was "
                                             f"written after record {linked.get('seq')}: records were reordered"), \
                count, _head(prev)
        if isinstance(seq, int) and seq > expected_seq:
            missing = f"record {expected_seq}" if seq == expected_seq + 1 else f"records {expected_seq}-{seq - 1}"
            return Finding(expected_seq, "removed", f"{missing} removed: record {seq} follows record "
                                                    f"{expected_seq - 1}"), count, _head(prev)
        if seq == expected_seq and prev is not None:
            return Finding(prev["seq"], "edited", f"record {prev['seq']} was edited and its hash rewritten: record "
                                                  f"{seq} was chained to a different record {prev['seq']}"), \
                count, _head(prev)
        return Finding(seq if isinstance(seq, int) else expected_seq, "reordered",
                       f"record {seq} is out of place (expected record {expected_seq})"), count, _head(prev)
    head = _head(prev)
    if a_seq is not None:
        if head[0] < a_seq:
            return Finding(head[0] + 1, "removed", f"records after {head[0]} removed: the chain was noted at "
                                                   f"record {a_seq}"), count, head
    return None, count, head


def _head(record):
    return (record["seq"], record["hash"]) if record else (0, GENESIS)


# --- the log: the port handlers use -----------------------------------------------------------------

class AuditUnavailable(RuntimeError):
    """The audit record could not be written."""


class AuditLog:
    """The port handlers are given: `record` one action, or wrap it in `attempt` so that a refusal
    is recorded with its status (PERMISSION_DENIED, FAILED_PRECONDITION …) and a success as "ok"."""

    def __init__(self, service):
        self.service = service

    def record(self, actor, action, target="", outcome=OK, details=None):
        return self._append(lambda seq, prev: build_record(seq, prev, self.service, actor, action, target, outcome,
                                                           details))

    @contextlib.contextmanager
    def attempt(self, actor, action, target="", **details):
        """with audit.attempt(actor, "opinion.record", case_no, item_code=...) as details: ...
        The body may add to `details`. A domain refusal is recorded with its code and raised on; a
        record that cannot be written then does not hide the refusal. A success is recorded after
        the body; if that fails, the caller sees the failure (a store outage: worth a retry)."""
        actor = as_actor(actor)
        try:
            yield details
        except DomainError as exc:
            self._quietly(actor, action, target, exc.code, details)
            raise
        # anything else (a store away) is a fault, not a decision: nothing happened to record
        self.record(actor, action, target, OK, details)

    def read(self, actor, action, target="", **details):
        """A read of personal data: audited when a member of staff reads (an applicant's reads of
        their own records are not); a context manager like `attempt`."""
        if actor is None or not as_actor(actor).is_staff:
            return contextlib.nullcontext(details)
        return self.attempt(actor, action, target, **details)

    def _quietly(self, actor, action, target, outcome, details):
        try:
            self.record(actor, action, target, outcome, details)
        except Exception:
            log.warning("audit record of a refused %s on %s could not be written", action, target, exc_info=True)

    def _append(self, build):
        raise NotImplementedError


class MemoryAuditLog(AuditLog):
    """The chain in memory: for unit tests, and what a handler built without one gets."""

    def __init__(self, service="test"):
        super().__init__(service)
        self.records = []
        self._lock = threading.Lock()

    def _append(self, build):
        with self._lock:
            prev = self.records[-1] if self.records else None
            record = build(prev["seq"] + 1 if prev else 1, prev["hash"] if prev else GENESIS)
            self.records.append(record)
            return record

    def actions(self):
        return [r["action"] for r in self.records]

    def find(self, action=None, target=None):
        return [r for r in self.records if (action is None or r["action"] == action)
                and (target is None or r["target"] == target)]

    def verify(self):
        return verify(self.records)[0]


# --- the MongoDB adapter -----------------------------------------------------------------------------

class MongoAuditLog(AuditLog):
    """The chain of one service in the collection `audit` of the service's own database.

    Why one chain per service database and not one audit database: every service owns its database
    and needs no credentials for any other (DESIGN.md §3), a service can at worst damage its own
    chain, appends of busy services do not queue behind each other, and `tools.audit` reads the six
    chains as an operator with read access to each database.

    Appends under concurrency (several threads, several processes of the same service): the record
    takes seq = head + 1 and prev_hash = head's hash, and the unique index on seq lets one insert
    win; a loser reads the records it missed (by seq, indexed) and tries again on the new head. The
    head is kept per process and found once (last_record). Records are never updated or deleted by the
    code; `tools.audit verify` detects it when someone does."""

    MAX_ATTEMPTS = 200

    def __init__(self, service, collection=None):
        super().__init__(service)
        self._collection = collection
        self._lock = threading.Lock()
        self._head = None
        self._indexed = False

    @property
    def collection(self):
        if self._collection is None:
            import mongoengine
            self._collection = mongoengine.get_db(alias=self.service)[COLLECTION]
        if not self._indexed:
            ensure_indexes(self._collection)
            self._indexed = True
        return self._collection

    def _append(self, build):
        from pymongo.errors import DuplicateKeyError
        coll = self.collection
        with self._lock:
            for attempt in range(self.MAX_ATTEMPTS):
                if self._head is None:
                    self._head = last_record(coll)
                seq, prev_hash = self._head[0] + 1, self._head[1]
                record = build(seq, prev_hash)
                try:
                    coll.insert_one(dict(record))
                except DuplicateKeyError:
                    self._head = _catch_up(coll, self._head)
                    if attempt > 3:
                        time.sleep(random.uniform(0, 0.002 * attempt))
                    continue
                except Exception:
                    self._head = None  # written or not: find out next time
                    raise
                self._head = (seq, record["hash"])
                return record
        raise AuditUnavailable(f"could not append to the audit chain of {self.service} "
                               f"after {self.MAX_ATTEMPTS} attempts")


def ensure_indexes(coll):
    """seq: one successor per record; target and actor.sub: what `tools.audit list` looks up. (The
    hash is looked up only to explain a broken chain: no index, fewer writes per append.)"""
    coll.create_index("seq", unique=True, name="seq_unique")
    coll.create_index("target", name="target")
    coll.create_index("actor.sub", name="actor_sub")


def last_record(coll):
    """(seq, hash) of the head. Seqs run 1, 2, 3, … without gaps (each append takes head + 1, the
    unique index lets one win, nothing deletes), so the head is found by doubling and then halving
    on the seq index, about 2·log2(n) lookups (30 ms at 9,100 records), not by a descending sort,
    which the local server answers by reading every record (0.8 s at 9,100; a count is no cheaper).
    Where someone deleted a record the search may stop at that gap: the next append then takes the
    gap's seq, whose successor does not link to it, so `tools.audit verify` still reports the break
    there, and the append after it finds the real head (DuplicateKeyError, _catch_up)."""
    def at(seq):
        return coll.find_one({"seq": seq})

    if at(1) is None:
        return _last_by_sort(coll)
    low, high = 1, 2
    while at(high) is not None:
        low, high = high, 2 * high
    while high - low > 1:  # at(low) is a record, at(high) none
        middle = (low + high) // 2
        if at(middle) is not None:
            low = middle
        else:
            high = middle
    doc = at(low)
    return doc["seq"], doc["hash"]


def _last_by_sort(coll):
    doc = coll.find_one({}, {"seq": 1, "hash": 1}, sort=[("seq", -1)])
    return (doc["seq"], doc["hash"]) if doc else (0, GENESIS)


def _catch_up(coll, head, most=64):
    """The head after the records other writers appended since `head` (looked up by seq)."""
    seq, hash_ = head
    for _ in range(most):
        doc = coll.find_one({"seq": seq + 1}, {"seq": 1, "hash": 1})
        if doc is None:
            return seq, hash_
        seq, hash_ = doc["seq"], doc["hash"]
    return None  # far behind: sort again


def read_chain(coll):
    """Every record of a chain in seq order, without the store's _id."""
    yield from coll.find({}, {"_id": 0}).sort("seq", 1)


def verify_collection(coll, anchor=None):
    def lookup(hash_):
        return coll.find_one({"hash": hash_}, {"_id": 0})
    return verify(read_chain(coll), lookup=lookup, anchor=anchor)
