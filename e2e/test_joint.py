"""End to end: departments working together on enterprise packages, over gRPC with officers' tokens:
开办餐饮店 with situations under the 广州 overlay; 工程建设项目竣工联合验收 with a joint site
inspection, a rectification round and the joint acceptance opinion; a rejection that ends a case."""
import datetime

import grpc
import pytest

from e2e.waits import item_of, wait_desk_idle, wait_event, wait_until
from onething.common.v1 import common_pb2
from onething.intake.v1 import intake_pb2 as S
from onething.joint_review.v1 import joint_review_pb2 as R
from services.common.blobs import Blobs
from services.common.ids import credit_code_check_char
from tools.client import officer

pytestmark = pytest.mark.e2e
ACCEPTANCE = "GCJGYS"
RESTAURANT = "KBCYD"
REGION = "440100"


@pytest.fixture(scope="module")
def inspected(client):
    """department -> its item decided after the joint site inspection (联合勘验), as the catalog
    resolves 工程建设项目竣工联合验收 for 广州 with the default situations: 规划核实 (zrzy),
    特殊建设工程消防验收 (zjj), 人防备案 (rf), 竣工档案验收 (cjda)."""
    return {dept: item_of(client, ACCEPTANCE, department=dept, inspection=True)
            for dept in ("zrzy", "zjj", "rf", "cjda")}


def enterprise(seq, name):
    body = f"91440101MA5{seq:06d}X"[:17]
    return common_pb2.Applicant(id_number=body + credit_code_check_char(body), name=name)


def submit(client, applicant, code, situations=None):
    codes = client.required_materials(code, situations=situations)
    return client.submit(applicant, client.upload_all(applicant.id_number, codes), package=code,
                         situations=situations)


def wait_task(client, case_no, item, state, timeout=30):
    def task():  # NOT_FOUND until joint_review has opened the session
        found = next((t for t in client.session(case_no).tasks if t.item_code == item), None)
        return found if found is not None and found.state == state else None
    return wait_until(task, timeout, f"task {item} of {case_no} {R.TaskState.Name(state)}")


def decide(client, dept, case_no, item, decision, reason="", materials=()):
    return client.review.RecordOpinion(R.RecordOpinionRequest(
        case_no=case_no, item_code=item, decision=decision, reason=reason, material_codes=materials),
        metadata=officer(dept), timeout=10)


def test_restaurant_with_tobacco_and_signboard_under_the_guangzhou_overlay(client):
    situations = {"tobacco": "yes", "signboard": "yes", "crowded_place": "yes"}
    # the items the situations choose, as the catalog resolves them: 户外招牌备案 (城管), 烟草专卖零售许可
    signboard = item_of(client, RESTAURANT, situations=situations, department="cg")
    tobacco = item_of(client, RESTAURANT, situations=situations, department="yc")
    food = item_of(client, RESTAURANT, situations=situations, name_contains="食品经营许可")
    case = submit(client, enterprise(1, "广州味道餐饮有限公司"), RESTAURANT, situations)
    assert case.case_no.startswith("440100KBCYD") and dict(case.situations) == situations
    case = client.wait_status(case.case_no, {S.CASE_STATUS_DELIVERED, S.CASE_STATUS_REJECTED}, timeout=90)
    assert case.status == S.CASE_STATUS_DELIVERED
    tasks = {t.item_code: t for t in client.session(case.case_no).tasks}
    assert {signboard, tobacco} <= set(tasks)                       # chosen by the situations
    assert tasks[food].promised_limit_days == 5                     # 食品经营许可: 广州 shortened 10 → 5
    types = {l.type_code for l in client.licenses(case.case_no)}
    assert {"YYZZ", "SPJYXKZ", "XFAQJCHGZ"} <= types
    plain = submit(client, enterprise(2, "深圳小馆"), RESTAURANT, {"tobacco": "no", "signboard": "no"})
    tasks = {t.item_code for t in client.session(client.wait_status(
        plain.case_no, {S.CASE_STATUS_DELIVERED}, timeout=90).case_no).tasks}
    assert signboard not in tasks and tobacco not in tasks


def test_completion_acceptance_joint_inspection_rectification_and_joint_opinion(client, probe, inspected):
    builder = enterprise(3, "广州建工集团有限公司")
    case = submit(client, builder, ACCEPTANCE)
    no = case.case_no
    for item in inspected.values():
        wait_task(client, no, item, R.TASK_STATE_ASSIGNED)
    # the desks leave inspection items to people: each desk has taken its task and left it
    for dept, item in inspected.items():
        wait_desk_idle(probe, no, dept, REGION, predicate=lambda b, item=item: b.get("item_code") == item)
    assert all(t.state == R.TASK_STATE_ASSIGNED for t in client.session(no).tasks if t.inspection)

    # approving before the site visit is refused
    with pytest.raises(grpc.RpcError) as err:
        decide(client, "zrzy", no, inspected["zrzy"], common_pb2.DECISION_APPROVE)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    # the lead department (住建) schedules one joint site visit; only the lead may
    req = R.ScheduleInspectionRequest(case_no=no, at=datetime.datetime.fromisoformat("2026-12-01T09:30:00+08:00"),
                                      place="广州市天河区某项目现场")
    with pytest.raises(grpc.RpcError) as err:
        client.review.ScheduleInspection(req, metadata=officer("zrzy"), timeout=10)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    session = client.review.ScheduleInspection(req, metadata=officer("zjj"), timeout=10)
    assert sorted(session.inspection.participants) == ["cjda", "rf", "zjj", "zrzy"]
    assert all(t.clock.paused for t in session.tasks if t.inspection)
    for dept in ("zrzy", "zjj", "rf", "cjda"):
        session = client.review.RecordFindings(R.RecordFindingsRequest(
            case_no=no, passed=True, notes=f"{dept} 现场核查符合要求"), metadata=officer(dept), timeout=10)
    assert session.inspection.status == R.INSPECTION_STATUS_DONE and session.inspection.report_key
    blobs = Blobs()
    assert blobs.get("results", session.inspection.report_key).startswith(b"%PDF")

    # 消防 asks for the fire documents again; only that task waits, the case waits for the applicant
    fire = inspected["zjj"]
    decide(client, "zjj", no, fire, common_pb2.DECISION_RECTIFY, "消防设施检测报告已过期", ["G05"])
    client.wait_status(no, {S.CASE_STATUS_RECTIFYING})
    for dept in ("zrzy", "rf", "cjda"):
        decide(client, dept, no, inspected[dept], common_pb2.DECISION_APPROVE)
    assert wait_task(client, no, fire, R.TASK_STATE_RECTIFYING).rectification.material_codes == ["G05"]
    fresh = client.upload_all(builder.id_number, ["G05"])
    client.supplement(no, builder.id_number, fresh)
    task = wait_task(client, no, fire, R.TASK_STATE_ASSIGNED)
    assert task.rounds == 1 and task.clock.paused is False
    decide(client, "zjj", no, fire, common_pb2.DECISION_APPROVE)

    # the final item (住建 desk) issues the 联合验收意见书 as the package's result
    case = client.wait_status(no, {S.CASE_STATUS_DELIVERED, S.CASE_STATUS_REJECTED}, timeout=90)
    assert case.status == S.CASE_STATUS_DELIVERED
    licences = {l.type_code: l for l in client.licenses(no)}
    opinion = licences["LHYSYJS"]
    assert opinion.type_name == "联合验收意见书" and client.verify(opinion.license_id).valid
    assert blobs.get("results", opinion.document_key).startswith(b"%PDF")
    keys = [k for k, _ in probe.for_case(no)]
    assert keys.count("rectification_requested") == 1 and keys.count("case_supplemented") == 1
    assert keys.count("session_concluded") == 1
    assert [b["item_code"] for k, b in probe.for_case(no) if k == "task_assigned.zjj.440100"].count(
        fire) == 2  # sent back to 住建 alone after the supplement

    # the builder rates it; the timeline shows the whole case, each trace a section: the officers'
    # decisions and what followed the last one (the conclusion, the licence, the delivery), the
    # supplement and the rating, though each began in a trace of its own
    client.rate(no, builder.id_number)
    client.wait_status(no, {S.CASE_STATUS_RATED})
    _whole_case_in_the_timeline(no)


def _whole_case_in_the_timeline(no):
    from tools import timeline

    def handlers(section):
        return {row.span.attributes.get("code.function.name") for row in section.rows}

    def whole():
        """The case once what the assertions below look at has arrived, in the sections they look
        in: every process exports its spans in batches of its own, and elicense handles (and traces)
        every opinion, so its span in an earlier decision's trace says nothing of the last one's."""
        case = timeline.load_case(no)
        titles = [section.title for section in case.sections]
        decisions = [section for section in case.sections if section.title.endswith("/RecordOpinion")]
        ratings = [section for section in case.sections if section.title.endswith("/SubmitEvaluation")]
        done = (len(decisions) >= 6 and any(t.endswith("/SupplementCase") for t in titles) and ratings
                and {"intake.on_case_concluded", "elicense.on_opinion_recorded",
                     "delivery.on_case_concluded"} <= handlers(decisions[-1])
                and any(row.span.name.startswith("s3 ") for row in decisions[-1].rows)
                and "intake.on_evaluation_received" in handlers(ratings[0]))
        return case if done else None
    try:
        case = wait_until(whole, timeout=20, what=f"the whole of {no} in the timeline")
    except TimeoutError:  # the assertions below say what is missing
        case = timeline.load_case(no)
    titles = [section.title for section in case.sections]
    assert titles[0].endswith("/SubmitCase"), titles
    # one refused before the site visit, the rectification, three approvals, the last approval
    assert sum(t.endswith("/RecordOpinion") for t in titles) == 6, titles
    # the last officer's decision: its trace goes on to the conclusion, the licence and the delivery
    last = next(s for s in reversed(case.sections) if s.title.endswith("/RecordOpinion"))
    after = handlers(last)
    assert {"intake.on_case_concluded", "elicense.on_opinion_recorded", "delivery.on_case_concluded"} <= after, after
    assert any(row.span.name.startswith("s3 ") for row in last.rows)  # the licence document stored
    rating = next(s for s in case.sections if s.title.endswith("/SubmitEvaluation"))
    assert "intake.on_evaluation_received" in handlers(rating)
    lines = []
    assert timeline.print_case(no, out=lines.append) == 0
    text = "\n".join(lines)
    for words in ("RecordOpinion", "SupplementCase", "SubmitEvaluation", "intake.on_case_concluded"):
        assert words in text, words


def test_one_department_rejects_and_the_case_ends_rejected_with_the_other_tasks_closed(client, probe):
    archive = item_of(client, ACCEPTANCE, department="cjda")  # 建设工程竣工档案验收
    case = submit(client, enterprise(4, "广州某置业有限公司"), ACCEPTANCE)
    no = case.case_no
    wait_task(client, no, archive, R.TASK_STATE_ASSIGNED)
    with pytest.raises(grpc.RpcError) as err:
        decide(client, "cjda", no, archive, common_pb2.DECISION_REJECT, "")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    decide(client, "cjda", no, archive, common_pb2.DECISION_REJECT, "竣工档案不完整，缺少隐蔽工程记录")
    case = client.wait_status(no, {S.CASE_STATUS_REJECTED})
    session = client.session(no)
    assert session.status == R.SESSION_STATUS_REJECTED
    states = {t.item_code: t.state for t in session.tasks}
    assert states.pop(archive) == R.TASK_STATE_REJECTED
    assert set(states.values()) == {R.TASK_STATE_CLOSED}
    assert "隐蔽工程" in case.history[-1].note
    wait_event(probe, no, "case_concluded")
    assert [k for k, _ in probe.for_case(no)].count("case_concluded") == 1
    assert not client.licenses(no)


def test_officers_list_their_own_tasks_and_suspend_a_clock_for_a_hearing(client):
    archive = item_of(client, ACCEPTANCE, department="cjda")  # 城建档案馆's one item
    case = submit(client, enterprise(5, "广州某开发有限公司"), ACCEPTANCE)
    no = case.case_no
    wait_task(client, no, archive, R.TASK_STATE_ASSIGNED)
    mine, token, pages = [], None, 0
    while token != "":  # pages of one case each (page_size 1), in case-number order
        page = client.review.ListTasks(R.ListTasksRequest(page_size=1, page_token=token or ""),
                                       metadata=officer("cjda"), timeout=10)
        mine, token, pages = mine + list(page.tasks), page.next_page_token, pages + 1
    assert [t.item_code for t in mine if t.case_no == no] == [archive]
    assert all(t.department_code == "cjda" for t in mine)
    assert pages == len({t.case_no for t in mine}) and [t.case_no for t in mine] == sorted(t.case_no for t in mine)
    with pytest.raises(grpc.RpcError) as err:
        client.review.ListTasks(R.ListTasksRequest(department_code="zjj"), metadata=officer("cjda"), timeout=10)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as err:
        client.review.ListTasks(R.ListTasksRequest(), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    claimed = client.review.ClaimTask(R.ClaimTaskRequest(case_no=no, item_code=archive),
                                      metadata=officer("cjda", sub="officer-a"), timeout=10)
    assert claimed.claimed_by == "officer-a"
    with pytest.raises(grpc.RpcError) as err:
        client.review.ClaimTask(R.ClaimTaskRequest(case_no=no, item_code=archive),
                                metadata=officer("cjda", sub="officer-b"), timeout=10)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "officer-a" in err.value.details()
    task = client.review.SuspendClock(R.SuspendClockRequest(case_no=no, item_code=archive,
                                                            reason=R.CLOCK_PAUSE_REASON_HEARING),
                                      metadata=officer("cjda"), timeout=10)
    assert task.clock.paused
    task = client.review.ResumeClock(R.ResumeClockRequest(case_no=no, item_code=archive),
                                     metadata=officer("cjda"), timeout=10)
    assert not task.clock.paused and task.clock.limit_days == 5
