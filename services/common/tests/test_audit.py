"""The audit chain without a database: records, canonical JSON, the hash chain and what verify()
names when a record is edited, removed or reordered."""
import copy
import datetime
import hashlib
import json
import threading

import pytest

from services.common import audit
from services.common.auth import Actor
from services.common.errors import FailedPrecondition, PermissionDenied

OFFICER = audit.AuditActor("officer-7", "officer", "gaj", "440100")


def chain(n=10):
    log = audit.MemoryAuditLog("joint_review")
    for i in range(1, n + 1):
        log.record(OFFICER, "opinion.record", f"440100XSECS2026112600{i:02d}", details={"item_code": "110000000003",
                                                                                        "decision": "DECISION_APPROVE"})
    return log.records


def test_a_record_has_its_fields_and_is_chained_by_sha256():
    records = chain(3)
    first, second = records[0], records[1]
    assert first["seq"] == 1 and first["prev_hash"] == audit.GENESIS
    assert second["seq"] == 2 and second["prev_hash"] == first["hash"]
    assert set(first) == {"seq", "at", "service", "actor", "action", "target", "outcome", "details", "prev_hash",
                          "hash"}
    assert first["actor"] == {"sub": "officer-7", "role": "officer", "department": "gaj", "region": "440100",
                              "on_behalf_of": "", "auth": "token"}
    assert first["at"].endswith("+00:00") and first["outcome"] == "ok" and first["service"] == "joint_review"
    body = {k: v for k, v in second.items() if k not in ("hash", "prev_hash")}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert second["hash"] == hashlib.sha256(first["hash"].encode() + canonical).hexdigest()


def test_canonical_json_does_not_depend_on_key_order():
    a = {"seq": 1, "details": {"b": 1, "a": "中"}, "action": "x"}
    b = {"action": "x", "details": {"a": "中", "b": 1}, "seq": 1}
    assert audit.canonical(a) == audit.canonical(b) == '{"action":"x","details":{"a":"中","b":1},"seq":1}'.encode()


def test_an_intact_chain_verifies():
    finding, count, head = audit.verify(chain())
    assert finding is None and count == 10 and head[0] == 10


def test_an_edited_record_is_named():
    records = chain()
    records[4]["details"]["decision"] = "DECISION_REJECT"
    finding, _, _ = audit.verify(records)
    assert (finding.seq, finding.kind) == (5, "edited")
    records = chain()
    records[6]["actor"]["sub"] = "someone-else"
    assert audit.verify(records)[0].seq == 7
    records = chain()
    records[1]["at"] = datetime.datetime.now()  # what a hand-made edit in the store may leave: still named
    records[1]["prev_hash"] = "ünicode"
    assert (audit.verify(records)[0].seq, audit.verify(records)[0].kind) == (2, "edited")


def test_an_edited_record_whose_hash_was_rewritten_is_named():
    records = chain()
    records[2]["outcome"] = "PERMISSION_DENIED"
    records[2]["hash"] = audit.chain_hash(records[2]["prev_hash"], records[2])
    finding, _, _ = audit.verify(records)
    assert (finding.seq, finding.kind) == (3, "edited")


def test_a_removed_record_is_named():
    records = chain()
    del records[3]
    finding, _, _ = audit.verify(records)
    assert (finding.seq, finding.kind) == (4, "removed")
    assert "record 5 follows record 3" in finding.message
    records = chain()
    del records[0]
    assert (audit.verify(records)[0].seq, audit.verify(records)[0].kind) == (1, "removed")
    records = chain()
    del records[2:5]
    finding = audit.verify(records)[0]
    assert (finding.seq, finding.kind) == (3, "removed") and "records 3-5" in finding.message


def test_reordered_records_are_named():
    records = chain()
    records[3], records[4] = records[4], records[3]  # read in another order
    finding, _, _ = audit.verify(records)
    assert (finding.seq, finding.kind) == (5, "reordered")
    records = chain()
    records[3]["seq"], records[4]["seq"] = 5, 4  # renumbered in the store
    records[3], records[4] = records[4], records[3]
    finding, _, _ = audit.verify(records)
    assert (finding.seq, finding.kind) == (4, "reordered") and "written as record 5" in finding.message


def test_the_first_bad_record_is_named_when_several_are_bad():
    records = chain()
    records[7]["target"] = "X"
    records[2]["target"] = "Y"
    del records[5]
    assert audit.verify(records)[0].seq == 3


def test_a_cut_off_tail_is_found_with_an_anchor():
    records = chain()
    anchor = (records[-1]["seq"], records[-1]["hash"])
    assert audit.verify(records, anchor=anchor)[0] is None
    finding = audit.verify(records[:7], anchor=anchor)[0]
    assert (finding.seq, finding.kind) == (8, "removed")
    rewritten = copy.deepcopy(records)
    rewritten[-1]["target"] = "Z"
    rewritten[-1]["hash"] = audit.chain_hash(rewritten[-1]["prev_hash"], rewritten[-1])
    assert audit.verify(rewritten, anchor=anchor)[0].seq == 10


def test_appends_from_many_threads_keep_one_chain():
    log = audit.MemoryAuditLog("delivery")
    threads = [threading.Thread(target=lambda: [log.record(OFFICER, "pickup.confirm", "C") for _ in range(50)])
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r["seq"] for r in log.records] == list(range(1, 401))
    assert log.verify() is None


def test_details_hold_no_personal_data():
    log = audit.MemoryAuditLog("intake")
    record = log.record(OFFICER, "case.read", "C1", details={"note": "ID 11010519491231002X tel 13800000000",
                                                             "nested": {"id": "11010519491231002X"}, "n": 3})
    text = json.dumps(record, ensure_ascii=False)
    assert "11010519491231002X" not in text and "13800000000" not in text
    assert record["details"]["note"] == "ID 1101**********002X tel 138****0000" and record["details"]["n"] == 3


def test_attempt_records_success_and_refusal_and_reads_only_by_staff():
    log = audit.MemoryAuditLog("joint_review")
    with log.attempt(OFFICER, "opinion.record", "C1", item_code="I1") as details:
        details["decision"] = "DECISION_APPROVE"
    with pytest.raises(PermissionDenied):
        with log.attempt(Actor("officer-8", "officer", "wsjk", "440100"), "opinion.record", "C1"):
            raise PermissionDenied("not yours")
    with pytest.raises(FailedPrecondition):
        with log.read(OFFICER, "session.read", "C2"):
            raise FailedPrecondition("no")
    with log.read(audit.AuditActor("11010519491231002X", "applicant"), "case.read", "C3"):
        pass
    with log.read(None, "case.read", "C4"):
        pass
    assert [(r["action"], r["target"], r["outcome"]) for r in log.records] == [
        ("opinion.record", "C1", "ok"), ("opinion.record", "C1", "PERMISSION_DENIED"),
        ("session.read", "C2", "FAILED_PRECONDITION")]
    assert log.records[0]["details"] == {"item_code": "I1", "decision": "DECISION_APPROVE"}
    assert log.records[1]["actor"]["sub"] == "officer-8" and log.records[1]["actor"]["auth"] == "token"


class _Context:
    def __init__(self, metadata):
        self._metadata = metadata

    def invocation_metadata(self):
        return self._metadata


def test_the_actor_comes_from_the_token_else_the_request_marked_unauthenticated(tmp_path, monkeypatch):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from services.common import auth
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = tmp_path / "idp.pub"
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    monkeypatch.setenv("ONETHING_AUTH_PUBLIC_KEY_FILE", str(public))
    token = auth.mint("clerk-3", "clerk", region="440100", private_key_pem=private)
    who = audit.actor_of(_Context([("authorization", f"Bearer {token}")]), sub="clerk-claimed", role="clerk")
    assert (who.sub, who.role, who.region, who.auth) == ("clerk-3", "clerk", "440100", "token")
    who = audit.actor_of(_Context([]), sub="clerk-claimed", role="clerk")
    assert (who.sub, who.role, who.auth) == ("clerk-claimed", "clerk", "unauthenticated")
    who = audit.actor_of(_Context([("authorization", "Bearer forged")]), sub="clerk-claimed", role="clerk")
    assert who.auth == "unauthenticated"
    assert audit.token_actor(_Context([])) is None


def test_the_caller_the_api_server_verified_is_the_actor_with_whom_a_clerk_acts_for():
    from services.common import policy
    bound = policy.bind(policy.Caller(actor=Actor("clerk-1", "clerk", "", "440100"),
                                      on_behalf_of="11010519491231002X"))
    try:
        who = audit.actor_of(_Context([]), sub="named-in-request", role="clerk")
    finally:
        policy.unbind(bound)
    assert (who.sub, who.role, who.region, who.on_behalf_of, who.auth) == (
        "clerk-1", "clerk", "440100", "11010519491231002X", "token")
    assert audit.token_actor(_Context([])) is None  # nothing bound any more
