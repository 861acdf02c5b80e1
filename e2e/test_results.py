"""End to end: results reaching the applicant and the applicant's 好差评 — a MAIL case through the
real suite from submission to the carrier's delivery, then a 差评, its rectification (call-back,
closure) and the statistics by region, department and package reflecting it; and a WINDOW pickup."""
import datetime as dt

import grpc
import pytest

from e2e.waits import rate_when_rateable, wait_event, wait_until
from onething.common.v1 import common_pb2
from onething.delivery.v1 import delivery_pb2
from onething.evaluation.v1 import evaluation_pb2
from onething.intake.v1 import intake_pb2
from services.common.workdays import add_workdays
from tools.client import citizen_id

pytestmark = pytest.mark.e2e
SHANGHAI = dt.timezone(dt.timedelta(hours=8))
ADDRESS = common_pb2.Address(recipient="李华", phone="13800000000", region_code="440106",
                             line="广州市天河区天河路100号1栋101", postcode="510620")
REGION, PACKAGE, LEAD = "440100", "XSECS", "wsjk"
GROUPS = {"region": (evaluation_pb2.STATISTICS_GROUP_REGION, REGION),
          "department": (evaluation_pb2.STATISTICS_GROUP_DEPARTMENT, LEAD),
          "package": (evaluation_pb2.STATISTICS_GROUP_PACKAGE, PACKAGE)}


def _submit(client, first17, name, channel, address=None):
    applicant = common_pb2.Applicant(id_number=citizen_id(first17), name=name, phone="13800000000")
    materials = client.upload_all(applicant.id_number, ["M01", "M02", "M03", "M04"])
    return client.submit(applicant, materials, channel_=channel, address=address)


def _wait_delivery(client, case_no, status, timeout=60.0):
    def reached():  # NOT_FOUND: no delivery until the case is concluded
        delivery = client.delivery_of(case_no)
        return delivery if delivery.status == status else None
    return wait_until(reached, timeout, f"delivery of {case_no} {delivery_pb2.DeliveryStatus.Name(status)}")


def _expect(code, call, *args, **kwargs):
    with pytest.raises(grpc.RpcError) as err:
        call(*args, **kwargs)
    assert err.value.code() == code, err.value.details()
    return err.value.details()


def _stats(client):
    out = {}
    for name, (group, key) in GROUPS.items():
        rows = {r.key: r for r in client.statistics(group)}
        out[name] = rows.get(key, evaluation_pb2.StatisticsRow(key=key))
    return out


def test_mail_delivery_then_bad_review_rectified_and_counted(client, probe):
    case = _submit(client, "44010619880808123", "李华", common_pb2.DELIVERY_CHANNEL_MAIL, ADDRESS)
    no, applicant_id = case.case_no, case.applicant.id_number

    # approved: the parcel is prepared for the clerk, with the address, and nothing is sent yet
    delivery = _wait_delivery(client, no, delivery_pb2.DELIVERY_STATUS_PREPARED)
    assert delivery.channel == common_pb2.DELIVERY_CHANNEL_MAIL
    assert delivery.address.postcode == "510620" and delivery.address.recipient == "李华"
    assert len(delivery.results) == 2 and not delivery.pickup_code
    assert delivery.lead_department == LEAD and delivery.package_code == PACKAGE

    # out of order and malformed: refused, nothing changes
    _expect(grpc.StatusCode.FAILED_PRECONDITION, client.record_delivered, no, "1234567890123", "李华")
    assert "EMS" in _expect(grpc.StatusCode.INVALID_ARGUMENT, client.record_dispatch, no, "EMS", "12345")
    _expect(grpc.StatusCode.FAILED_PRECONDITION, client.confirm_pickup, no, "123456")
    assert client.delivery_of(no).status == delivery_pb2.DELIVERY_STATUS_PREPARED

    sent = client.record_dispatch(no, "EMS", "EA473124829CN", "clerk-9")
    assert sent.status == delivery_pb2.DELIVERY_STATUS_DISPATCHED and sent.tracking_number == "EA473124829CN"
    _expect(grpc.StatusCode.FAILED_PRECONDITION, client.record_dispatch, no, "EMS", "1234567890123")
    _expect(grpc.StatusCode.INVALID_ARGUMENT, client.record_delivered, no, "EA000000000CN", "李华")
    done = client.record_delivered(no, "EA473124829CN", "李华")
    assert done.status == delivery_pb2.DELIVERY_STATUS_COMPLETED
    assert [h.status for h in done.history] == [delivery_pb2.DELIVERY_STATUS_PREPARED,
                                                delivery_pb2.DELIVERY_STATUS_DISPATCHED,
                                                delivery_pb2.DELIVERY_STATUS_COMPLETED]
    assert [h.by for h in done.history][1:] == ["clerk-9", "李华"]
    _expect(grpc.StatusCode.FAILED_PRECONDITION, client.record_delivered, no, "EA473124829CN", "李华")
    assert client.wait_status(no, {intake_pb2.CASE_STATUS_DELIVERED}).status == intake_pb2.CASE_STATUS_DELIVERED

    # a 差评 by the applicant opens a rectification for the lead department, due in 5 working days
    before = _stats(client)
    _expect(grpc.StatusCode.INVALID_ARGUMENT, rate_when_rateable, client, no, applicant_id,
            grade=evaluation_pb2.GRADE_VERY_DISSATISFIED)  # a 差评 needs a comment
    rating = rate_when_rateable(client, no, applicant_id, grade=evaluation_pb2.GRADE_DISSATISFIED,
                                 comment="邮寄等了很久，电话也没人接")
    assert rating.bad_review and rating.department_code == LEAD
    rect = rating.rectification
    assert rect.status == evaluation_pb2.RECTIFICATION_STATUS_OPEN and rect.department_code == LEAD
    rated_day = rating.rated_at.ToDatetime(tzinfo=dt.UTC).astimezone(SHANGHAI).date()
    deadline = dt.date(rect.deadline.year, rect.deadline.month, rect.deadline.day).isoformat()
    assert deadline == add_workdays(rated_day, 5)[0].isoformat()
    assert deadline > rated_day.isoformat()
    assert no in [r.case_no for r in client.bad_reviews(LEAD, REGION, open_only=True)]

    # close needs the call-back first; then call back, close, and it no longer shows as open
    assert "RecordCallback" in _expect(grpc.StatusCode.FAILED_PRECONDITION, client.close_rectification, no,
                                       "已改进", "chief-1")
    called = client.record_callback(no, "已电话回访申请人，说明邮寄延误原因并致歉", "staff-wsjk-1")
    assert [c.by for c in called.callbacks] == ["staff-wsjk-1"]
    closed = client.close_rectification(no, "与邮政约定次日揽收，已整改", "chief-wsjk")
    assert closed.status == evaluation_pb2.RECTIFICATION_STATUS_CLOSED and closed.on_time
    _expect(grpc.StatusCode.FAILED_PRECONDITION, client.close_rectification, no, "again", "chief-wsjk")
    assert no not in [r.case_no for r in client.bad_reviews(LEAD, REGION, open_only=True)]
    listed = [(r.case_no, r.channel) for r in client.bad_reviews(LEAD, REGION)]
    assert no in [case_no for case_no, _ in listed]
    assert [(r.case_no, r.channel) for r in client.bad_reviews(LEAD, REGION, page_size=1)] == listed  # page by page

    # statistics by region, department and package each count the rating, the 差评 and its closure
    after = _stats(client)
    for name in GROUPS:
        b, a = before[name], after[name]
        assert (a.ratings - b.ratings, a.satisfied - b.satisfied, a.bad_reviews - b.bad_reviews,
                a.rectifications_closed - b.rectifications_closed, a.closed_on_time - b.closed_on_time) == (
            1, 0, 1, 1, 1), name
        assert a.satisfaction_rate == pytest.approx(a.satisfied / a.ratings, abs=1e-4)
    _expect(grpc.StatusCode.INVALID_ARGUMENT, client.statistics, evaluation_pb2.STATISTICS_GROUP_UNSPECIFIED)

    # the events, in order, the pickup/tracking flow never carrying a code
    wait_event(probe, no, "bad_review_closed", timeout=10)
    keys = [k for k, _ in probe.for_case(no)]
    results = [k for k in keys if k.startswith(("delivery_", "evaluation_", "bad_review_"))]
    assert results == ["delivery_dispatched", "delivery_completed", "evaluation_received", "bad_review_opened",
                       "bad_review_closed"], keys
    dispatched = dict(probe.for_case(no))["delivery_dispatched"]
    carrier = dispatched["carrier"].removeprefix("CARRIER_")  # the event's Carrier, as JSON: CARRIER_EMS
    assert dispatched["tracking_number"] == "EA473124829CN" and carrier == "EMS"


def test_window_pickup_with_the_code(client, probe):
    case = _submit(client, "44010619910909123", "周敏", common_pb2.DELIVERY_CHANNEL_WINDOW)
    no = case.case_no
    delivery = _wait_delivery(client, no, delivery_pb2.DELIVERY_STATUS_READY_FOR_PICKUP)
    code = delivery.pickup_code
    assert len(code) == 6 and code.isdigit()
    wrong = f"{(int(code) + 1) % 1000000:06d}"
    _expect(grpc.StatusCode.PERMISSION_DENIED, client.confirm_pickup, no, wrong)
    assert client.delivery_of(no).status == delivery_pb2.DELIVERY_STATUS_READY_FOR_PICKUP
    _expect(grpc.StatusCode.FAILED_PRECONDITION, client.record_dispatch, no, "EMS", "1234567890123")
    done = client.confirm_pickup(no, code, "clerk-3")
    assert done.status == delivery_pb2.DELIVERY_STATUS_COMPLETED and done.history[-1].by == "clerk-3"
    _expect(grpc.StatusCode.FAILED_PRECONDITION, client.confirm_pickup, no, code)
    assert client.wait_status(no, {intake_pb2.CASE_STATUS_DELIVERED}).status == intake_pb2.CASE_STATUS_DELIVERED
    wait_event(probe, no, "delivery_completed")
    events = [(k, b) for k, b in probe.for_case(no) if k.startswith("delivery_")]
    assert [k for k, _ in events] == ["delivery_ready_for_pickup", "delivery_completed"]
    assert all(code not in str(b) for _, b in events)
