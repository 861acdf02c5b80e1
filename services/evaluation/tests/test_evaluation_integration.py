"""evaluation's handlers against the real MongoDB-wire server and broker: a 差评 through its
rectification, ListBadReviews, and the statistics $group on SecantusDB."""
import time

import pytest

from services.common.errors import AlreadyExists, FailedPrecondition
from services.evaluation.domain import Grade, Rateable, RectificationStatus, StatisticsGroup

pytestmark = pytest.mark.integration
APPLICANT = "11010519491231002X"


@pytest.fixture(scope="module")
def evaluation(test_env):
    from services.evaluation.wiring import build_evaluation
    return build_evaluation()


def delivered(evaluation, case_no, region, package, lead):
    evaluation.case_delivered(Rateable(case_no, APPLICANT, region, package, lead))


def test_bad_review_rectification_and_statistics(evaluation, probe):
    stamp = int(time.time() * 1000)
    region, package = f"9{stamp % 100000:05d}", f"P{stamp}"
    good, bad = f"V{stamp}G", f"V{stamp}B"
    delivered(evaluation, good, region, package, "wsjk")
    delivered(evaluation, bad, region, package, "wsjk")
    evaluation.submit(good, APPLICANT, "online", Grade.SATISFIED, {"整体满意度": 4}, "", "")
    body = evaluation.submit(bad, APPLICANT, "window", Grade.DISSATISFIED, {"态度": 1}, "窗口态度差", "gaj")
    assert body["rectification"]["department_code"] == "gaj"
    with pytest.raises(AlreadyExists):
        evaluation.submit(bad, APPLICANT, "window", Grade.DISSATISFIED, {}, "again", "")
    assert [r["case_no"] for r in evaluation.bad_reviews("gaj", region, open_only=True)[0]] == [bad]
    with pytest.raises(FailedPrecondition):
        evaluation.close(bad, "done", "chief-1")
    evaluation.record_callback(bad, "已回访", "staff-1")
    rect = evaluation.close(bad, "已培训窗口人员", "chief-1")
    assert rect["on_time"] is True and len(rect["callbacks"]) == 1
    assert evaluation.bad_reviews("gaj", region, open_only=True) == ([], "")
    assert [r["status"] for r in evaluation.bad_reviews("gaj", region)[0]] == [RectificationStatus.CLOSED]

    [row] = evaluation.statistics(StatisticsGroup.REGION, region_code=region)
    assert row == {"key": region, "ratings": 2, "satisfied": 1, "satisfaction_rate": 0.5, "bad_reviews": 1,
                   "rectifications_closed": 1, "closed_on_time": 1, "rectifications_open": 0}
    by_dept = {r["key"]: r for r in evaluation.statistics(StatisticsGroup.DEPARTMENT, package_code=package)}
    assert by_dept["wsjk"]["ratings"] == 1 and by_dept["gaj"]["bad_reviews"] == 1
    [pkg] = evaluation.statistics(StatisticsGroup.PACKAGE, package_code=package)
    assert (pkg["key"], pkg["ratings"]) == (package, 2)

    deadline = time.time() + 10
    while time.time() < deadline and "bad_review_closed" not in [k for k, _ in probe.for_case(bad)]:
        time.sleep(0.05)
    assert [k for k, _ in probe.for_case(bad)] == ["evaluation_received", "bad_review_opened", "bad_review_closed"]


def test_a_case_withdrawn_after_its_conclusion_is_not_rateable_whichever_report_comes_first(evaluation):
    stamp = int(time.time() * 1000)
    for case_no, delivery_first in ((f"V{stamp}W1", True), (f"V{stamp}W2", False)):
        if delivery_first:
            delivered(evaluation, case_no, "440100", "XSECS", "wsjk")
        assert evaluation.case_withdrawn(case_no, True) and evaluation.case_withdrawn(case_no, True)
        if not delivery_first:
            delivered(evaluation, case_no, "440100", "XSECS", "wsjk")
        with pytest.raises(FailedPrecondition, match="withdrawn"):
            evaluation.submit(case_no, APPLICANT, "online", Grade.SATISFIED, {"整体满意度": 4}, "", "")


def test_stored_strings_are_kept_and_a_rating_from_before_versions_is_still_saved(evaluation):
    """The store keeps the strings existing ratings hold, and a rating written before ratings counted
    their saves (no `version`) is read and saved as version 0."""
    from services.evaluation.store import EvaluationDoc
    stamp = int(time.time() * 1000)
    case_no = f"V{stamp}L"
    delivered(evaluation, case_no, "440100", "XSECS", "wsjk")
    evaluation.submit(case_no, APPLICANT, "online", Grade.VERY_DISSATISFIED, {}, "没人回电话", "")
    coll = EvaluationDoc._get_collection()
    raw = coll.find_one({"case_no": case_no})
    assert raw["body"]["grade"] == "GRADE_VERY_DISSATISFIED" and raw["rect_status"] == "RECTIFICATION_STATUS_OPEN"
    assert raw["body"]["rectification"]["status"] == "RECTIFICATION_STATUS_OPEN" and raw["version"] == 1
    coll.update_one({"_id": raw["_id"]}, {"$unset": {"version": ""}})  # as an older rating is stored
    [(revision, body)] = evaluation.store.rectifications(case_no)
    assert revision.version == 0 and body["grade"] is Grade.VERY_DISSATISFIED
    rect = evaluation.record_callback(case_no, "已回访", "staff-1")
    assert rect["status"] is RectificationStatus.OPEN and len(rect["callbacks"]) == 1
    assert coll.find_one({"_id": raw["_id"]})["version"] == 1
    assert not evaluation.store.save_rectification(revision, RectificationStatus.OPEN, body, [])  # stale now
