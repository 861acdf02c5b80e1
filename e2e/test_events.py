"""End to end, "nothing stuck": every event reaches a consumer that makes the case truthful.
A MAIL parcel that comes back (DELIVERY_FAILED on the case), the corrected address and the
re-dispatch, watched status by status; 督办 in the case history; a revoked licence on the case and
in the delivery; and a withdrawal that reaches the departments after they concluded: it wins, the
licences are revoked and nothing is delivered."""
import threading

import grpc
import pytest

from e2e.waits import item_of, wait_until
from onething.common.v1 import common_pb2
from onething.delivery.v1 import delivery_pb2
from onething.elicense.v1 import elicense_pb2
from onething.intake.v1 import intake_pb2
from onething.joint_review.v1 import events_pb2 as review_events
from onething.joint_review.v1 import joint_review_pb2
from services.common.bus import Bus
from tools.client import citizen_id, officer

pytestmark = pytest.mark.e2e
S, D = intake_pb2, delivery_pb2
ADDRESS = common_pb2.Address(recipient="赵敏", phone="13800000000", region_code="440106",
                             line="广州市天河区天河路100号1栋101", postcode="510620")
CORRECTED = common_pb2.Address(recipient="赵敏", phone="13800000000", region_code="440106",
                               line="广州市天河区天河北路200号2栋202", postcode="510620")


def person(first17, name):
    return common_pb2.Applicant(id_number=citizen_id(first17), name=name, phone="13800000000")


def _raises(code, fn, *args, **kwargs):
    with pytest.raises(grpc.RpcError) as err:
        fn(*args, **kwargs)
    assert err.value.code() == code, err.value.details()
    return err.value.details()


def _until(fn, timeout=60.0, what="condition"):
    # NOT_FOUND is "not yet": the thing may not exist yet (joint_review opens a session asynchronously)
    return wait_until(fn, timeout, what, interval=0.2)


def _case(client, no):
    return client.intake.GetCase(S.GetCaseRequest(case_no=no), timeout=10)


def _delivery_status(client, no):
    try:
        return client.delivery_of(no).status
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.NOT_FOUND:
            raise
        return None


def _rate(client, no, applicant_id, timeout=30.0):
    """Rate once evaluation has learnt of the delivery (FAILED_PRECONDITION until then)."""
    return wait_until(lambda: client.rate(no, applicant_id), timeout, f"a rating of {no} accepted",
                      ignore=(grpc.StatusCode.FAILED_PRECONDITION,), interval=0.2)


def test_a_returned_parcel_is_shown_then_sent_again_to_the_corrected_address(client, probe):
    a = person("44010619750505123", "赵敏")
    materials = client.upload_all(a.id_number, ["M01", "M02", "M03", "M04"])
    case = client.submit(a, materials, channel_=common_pb2.DELIVERY_CHANNEL_MAIL, address=ADDRESS)
    no = case.case_no
    seen = []
    watcher = threading.Thread(target=lambda: seen.extend(c.status for c in client.watch(no, timeout=180)))
    watcher.start()

    _until(lambda: _delivery_status(client, no) == D.DELIVERY_STATUS_PREPARED, timeout=90, what="the parcel prepared")
    client.wait_status(no, {S.CASE_STATUS_APPROVED}, timeout=30)
    # refused: a delivery that has not failed is not sent again; bad input; unknown case
    assert "has not failed" in _raises(grpc.StatusCode.FAILED_PRECONDITION, client.redispatch, no, CORRECTED, "EMS",
                                       "1234567890123")
    client.record_dispatch(no, "EMS", "EA473124829CN", "clerk-9")
    _raises(grpc.StatusCode.INVALID_ARGUMENT, client.record_undeliverable, no, "EA000000000CN", "查无此人")
    _raises(grpc.StatusCode.INVALID_ARGUMENT, client.record_undeliverable, no, "EA473124829CN", "")
    failed = client.record_undeliverable(no, "EA473124829CN", "地址不详，查无此人")
    assert failed.status == D.DELIVERY_STATUS_FAILED and failed.failure_reason == "地址不详，查无此人"
    case = client.wait_status(no, {S.CASE_STATUS_DELIVERY_FAILED}, timeout=30)
    assert "查无此人" in case.history[-1].note

    bad = common_pb2.Address(recipient="赵敏", phone="13800000000", region_code="440106", line="天河北路200号",
                             postcode="5106")
    assert "postcode" in _raises(grpc.StatusCode.INVALID_ARGUMENT, client.redispatch, no, bad, "SF", "SF1234567890123")
    assert "tracking number" in _raises(grpc.StatusCode.INVALID_ARGUMENT, client.redispatch, no, CORRECTED, "SF", "12")
    _raises(grpc.StatusCode.NOT_FOUND, client.redispatch, "440100XSECS209901019999", CORRECTED, "SF",
            "SF1234567890123")
    assert client.delivery_of(no).status == D.DELIVERY_STATUS_FAILED  # refusals changed nothing

    again = client.redispatch(no, CORRECTED, "SF", "SF1234567890123", "clerk-9")
    assert again.status == D.DELIVERY_STATUS_DISPATCHED and again.attempt == 2
    assert again.address.line == CORRECTED.line and again.tracking_number == "SF1234567890123"
    _raises(grpc.StatusCode.FAILED_PRECONDITION, client.redispatch, no, CORRECTED, "SF", "SF1234567890124")
    case = client.wait_status(no, {S.CASE_STATUS_APPROVED}, timeout=30)
    assert "SF1234567890123" in case.history[-1].note
    client.record_delivered(no, "SF1234567890123", "赵敏")
    client.wait_status(no, {S.CASE_STATUS_DELIVERED}, timeout=30)
    _rate(client, no, a.id_number)
    watcher.join(60)
    assert not watcher.is_alive()

    # WatchCase sent every status change, in order, none skipped
    assert seen[0] in (S.CASE_STATUS_SUBMITTED, S.CASE_STATUS_IN_REVIEW)
    assert [s for s in seen if s != S.CASE_STATUS_SUBMITTED] == [
        S.CASE_STATUS_IN_REVIEW, S.CASE_STATUS_APPROVED, S.CASE_STATUS_DELIVERY_FAILED, S.CASE_STATUS_APPROVED,
        S.CASE_STATUS_DELIVERED, S.CASE_STATUS_RATED]
    final = _case(client, no)
    assert [h.status for h in final.history if not h.note_only] == [
        S.CASE_STATUS_SUBMITTED, S.CASE_STATUS_IN_REVIEW, S.CASE_STATUS_APPROVED, S.CASE_STATUS_DELIVERY_FAILED,
        S.CASE_STATUS_APPROVED, S.CASE_STATUS_DELIVERED, S.CASE_STATUS_RATED]
    keys = [k for k, _ in probe.for_case(no) if k.startswith("delivery_")]
    assert keys == ["delivery_dispatched", "delivery_failed", "delivery_dispatched", "delivery_completed"]


def test_an_overdue_task_reaches_the_case_history(client):
    a = person("44010619760606123", "钱坤")
    no = client.newborn_case(applicant=a).case_no
    client.wait_status(no, {S.CASE_STATUS_IN_REVIEW, S.CASE_STATUS_APPROVED, S.CASE_STATUS_DELIVERED}, timeout=30)
    # what joint_review's clock check publishes for a task past its promised limit: 公安's 出生登记
    registration = item_of(client, "XSECS", department="gaj")
    Bus("joint_review").publish("task_overdue", review_events.TaskOverdue(
        case_no=no, item_code=registration, department_code="gaj", region_code="440100", elapsed_days=9,
        limit_days=5), no)
    case = _until(lambda: (lambda c: c if any("督办" in h.note for h in c.history) else None)(_case(client, no)),
                  timeout=30, what="the 督办 note")
    [note] = [h for h in case.history if "督办" in h.note]
    assert note.note_only and "gaj" in note.note and "9 of 5" in note.note


def test_a_revoked_licence_shows_on_the_case_and_loses_its_link(client, probe):
    a = person("44010619770707123", "孙俪")
    no = client.newborn_case(applicant=a).case_no
    client.wait_status(no, {S.CASE_STATUS_DELIVERED}, timeout=90)
    lic = next(l for l in client.licenses(no) if l.type_code == "CSYXZM")
    assert client.delivery_of(no).results[0].download_url
    with pytest.raises(grpc.RpcError) as err:  # only the issuing department
        client.elicense.RevokeLicense(elicense_pb2.RevokeLicenseRequest(license_id=lic.license_id, reason="x"),
                                      metadata=officer("gaj"), timeout=10)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    client.elicense.RevokeLicense(elicense_pb2.RevokeLicenseRequest(license_id=lic.license_id, reason="出生信息有误"),
                                  metadata=officer("wsjk"), timeout=10)

    case = _until(lambda: (lambda c: c if lic.license_id in c.revoked_license_ids else None)(_case(client, no)),
                  timeout=30, what="the revoked licence on the case")
    assert case.status == S.CASE_STATUS_DELIVERED  # the status stays; the history says what happened
    assert any(h.note_only and lic.license_id in h.note and "出生信息有误" in h.note for h in case.history)

    def revoked_in_delivery():
        results = {r.license_id: r for r in client.delivery_of(no).results}
        return results if results[lic.license_id].revoked else None
    results = _until(revoked_in_delivery, timeout=30, what="the revoked licence in the delivery")
    assert not results[lic.license_id].download_url and results[lic.license_id].revoke_reason == "出生信息有误"
    other = next(r for lid, r in results.items() if lid != lic.license_id)
    assert other.download_url and not other.revoked


def test_a_withdrawal_after_the_conclusion_wins_and_nothing_stays_issued_or_delivered(client, probe, suite_running):
    """intake has not heard of the conclusion (its worker is stopped), so it accepts the withdrawal;
    joint_review had concluded the case: the withdrawal still wins there, the licences are revoked and
    the delivery is cancelled."""
    a = person("44010619780808123", "周迅")
    suite_running.stop("intake-worker")
    try:
        no = client.newborn_case(applicant=a).case_no
        _until(lambda: client.session(no).status == joint_review_pb2.SESSION_STATUS_APPROVED, timeout=90,
               what="joint_review's conclusion")
        _until(lambda: len(client.licenses(no)) == 2, timeout=30, what="the two licences")
        assert _case(client, no).status == S.CASE_STATUS_SUBMITTED
        assert client.withdraw(no, a.id_number, "搬到外地").status == S.CASE_STATUS_WITHDRAWN

        session = _until(lambda: (lambda s: s if s.status == joint_review_pb2.SESSION_STATUS_WITHDRAWN else None)(
            client.session(no)), timeout=30, what="the withdrawn session")
        assert joint_review_pb2.SessionStatus.Name(session.withdrawn_after) == "SESSION_STATUS_APPROVED"
        _until(lambda: all(l.status == elicense_pb2.LICENSE_STATUS_REVOKED for l in client.licenses(no)), timeout=30,
               what="every licence revoked")
        assert not any(client.verify(l.license_id).valid for l in client.licenses(no))
        _until(lambda: _delivery_status(client, no) == D.DELIVERY_STATUS_CANCELLED, timeout=30,
               what="the cancelled delivery")
        assert all(not r.download_url for r in client.delivery_of(no).results)
    finally:
        suite_running.start("intake-worker")
        suite_running.wait_consuming(["intake-worker"])

    # intake takes what waited in its queues: the case stays withdrawn and says why its licences went
    case = _until(lambda: (lambda c: c if len(c.revoked_license_ids) == 2 and any(
        "void" in h.note for h in c.history) else None)(_case(client, no)), timeout=60, what="intake catching up")
    assert case.status == S.CASE_STATUS_WITHDRAWN
    assert [h.status for h in case.history if not h.note_only] == [S.CASE_STATUS_SUBMITTED, S.CASE_STATUS_WITHDRAWN]
    keys = [k for k, _ in probe.for_case(no)]
    assert keys.count("case_concluded") == 1 and keys.count("session_withdrawn") == 1
    assert keys.count("license_revoked") == 2
    # and a withdrawal once intake knows the conclusion is refused
    b = person("44010619790909123", "吴京")
    other = client.newborn_case(applicant=b).case_no
    client.wait_status(other, {S.CASE_STATUS_APPROVED, S.CASE_STATUS_DELIVERED}, timeout=90)
    assert "already" in _raises(grpc.StatusCode.FAILED_PRECONDITION, client.withdraw, other, b.id_number)
