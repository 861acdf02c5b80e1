"""The audit chain on the real MongoDB-wire server: concurrent appenders (threads of several
"processes", each with its own head) keep one valid chain, and `tools.audit verify` names a record
edited, removed or renumbered in the database."""
import io
import threading

import pymongo
import pytest

from services.common import audit
from services.common.config import settings
from tools import audit as audit_tool

pytestmark = pytest.mark.integration
SERVICE = "delivery"
CLERK = audit.AuditActor("clerk-1", "clerk", "", "440100")


@pytest.fixture
def client(test_env):
    c = pymongo.MongoClient(settings().mongo_uri, serverSelectionTimeoutMS=5000)
    yield c
    c.close()


@pytest.fixture
def coll(client):
    coll = client[settings().db_name(SERVICE)][audit.COLLECTION]
    coll.drop()
    yield coll
    coll.drop()


def run_tool(client, *argv):
    out = io.StringIO()
    code = audit_tool.main(list(argv), out=out, err=out, client=client)
    return code, out.getvalue()


def test_appenders_in_several_threads_and_processes_keep_one_valid_chain(coll, client):
    logs = [audit.MongoAuditLog(SERVICE, coll) for _ in range(3)]  # three processes, each its own head
    errors = []

    def append(log, n):
        try:
            for i in range(n):
                log.record(CLERK, "pickup.confirm", f"C{i}", details={"i": i})
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(log, 12)) for log in logs for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    records = list(audit.read_chain(coll))
    assert [r["seq"] for r in records] == list(range(1, 73))
    assert len({r["prev_hash"] for r in records}) == 72  # no two records share a predecessor
    assert audit.verify(records)[0] is None
    code, out = run_tool(client, "verify", "--service", SERVICE)
    assert code == 0 and "intact: 72 records" in out


def test_the_tool_names_a_record_edited_in_the_database(coll, client):
    log = audit.MongoAuditLog(SERVICE, coll)
    for i in range(10):
        log.record(CLERK, "dispatch.record", f"440100XSECS2026112700{i:02d}", details={"carrier": "EMS"})
    code, out = run_tool(client, "verify", "--service", SERVICE)
    assert code == 0, out
    head = out.split("head ")[1].split()
    coll.update_one({"seq": 6}, {"$set": {"actor.sub": "clerk-2"}})
    code, out = run_tool(client, "verify", "--service", SERVICE)
    assert code == 1 and "BROKEN at record 6 (edited)" in out, out
    coll.update_one({"seq": 6}, {"$set": {"actor.sub": "clerk-1"}})  # put back: intact again
    assert run_tool(client, "verify", "--service", SERVICE)[0] == 0

    coll.delete_one({"seq": 4})
    code, out = run_tool(client, "verify", "--service", SERVICE)
    assert code == 1 and "BROKEN at record 4 (removed)" in out, out

    coll.update_one({"seq": 8}, {"$set": {"seq": -9}})
    coll.update_one({"seq": 9}, {"$set": {"seq": 8}})
    coll.update_one({"seq": -9}, {"$set": {"seq": 9}})
    coll.insert_one(dict(audit.build_record(4, "0" * 64, SERVICE, CLERK, "x")))  # refill the gap: still caught
    code, out = run_tool(client, "verify", "--service", SERVICE)
    assert code == 1 and "BROKEN at record 4" in out, out

    # a cut-off tail shows against the head noted earlier
    coll.drop()
    log = audit.MongoAuditLog(SERVICE, coll)
    for i in range(5):
        log.record(CLERK, "dispatch.record", f"C{i}")
    anchor = f"{SERVICE}:5:{list(audit.read_chain(coll))[-1]['hash']}"
    assert run_tool(client, "verify", "--service", SERVICE, "--anchor", anchor)[0] == 0
    coll.delete_one({"seq": 5})
    code, out = run_tool(client, "verify", "--service", SERVICE, "--anchor", anchor)
    assert code == 1 and "BROKEN at record 5 (removed)" in out, out
    assert head[0] == "10"


def test_the_tool_lists_records_by_case_and_actor(coll, client):
    log = audit.MongoAuditLog(SERVICE, coll)
    log.record(CLERK, "pickup.confirm", "CASE-A")
    log.record(audit.unauthenticated("clerk-9", "clerk"), "dispatch.record", "CASE-B", details={"carrier": "EMS"})
    log.record(audit.AuditActor("11010519491231002X", "applicant"), "case.read", "CASE-B")
    code, out = run_tool(client, "list", "--service", SERVICE, "--case", "CASE-B")
    assert code == 0 and "2 record(s)" in out
    assert "clerk:clerk-9 (unauthenticated)  dispatch.record  CASE-B  ok  carrier=EMS" in out
    assert "11010519491231002X" not in out and "1101**********002X" in out
    code, out = run_tool(client, "list", "--service", SERVICE, "--actor", "clerk-1")
    assert "1 record(s)" in out and "pickup.confirm  CASE-A" in out


@pytest.mark.parametrize("n", [0, 1, 2, 3, 37, 64, 65])
def test_a_new_process_finds_the_head_by_seq_lookups(coll, n):
    """last_record finds the head without the descending sort the local server answers by reading
    every record; a new process's first record follows it."""
    first = audit.MongoAuditLog(SERVICE, coll)
    for i in range(n):
        first.record(CLERK, "pickup.confirm", f"C{i}")
    head = audit.last_record(coll)
    assert head == audit._last_by_sort(coll)
    assert head[0] == n
    later = audit.MongoAuditLog(SERVICE, coll)  # another process: its head found by last_record
    later.record(CLERK, "pickup.confirm", "C-next")
    records = list(audit.read_chain(coll))
    assert [r["seq"] for r in records] == list(range(1, n + 2))
    assert audit.verify(records)[0] is None


@pytest.mark.parametrize("deleted", [24, 32])  # 32: where the doubling probes, so the search stops at the gap
def test_a_record_deleted_from_the_chain_stays_reported_and_appends_go_on(coll, client, deleted):
    log = audit.MongoAuditLog(SERVICE, coll)
    for i in range(40):
        log.record(CLERK, "pickup.confirm", f"C{i}")
    coll.delete_one({"seq": deleted})  # someone removes a record in the database
    later = audit.MongoAuditLog(SERVICE, coll)
    for i in range(3):
        later.record(CLERK, "pickup.confirm", f"D{i}")
    added = [r["seq"] for r in audit.read_chain(coll) if r["target"].startswith("D")]
    # all three written; the last two past the real head (the first may have gone into the gap)
    assert len(added) == 3 and added[1:] == [added[2] - 1, added[2]] and added[1] > 40
    code, out = run_tool(client, "verify", "--service", SERVICE)
    assert code != 0 and str(deleted + 1) in out  # the break is still named where it is
