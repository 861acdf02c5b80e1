"""What evaluation writes to its audit log (the in-memory fake of the port): the call-back and the
closing of a 差评's rectification with who did it, staff reads; not the notes."""
import json

import pytest
from test_evaluation_handlers import delivered, rate

from services.common.auth import Actor
from services.common.errors import FailedPrecondition

OFFICER = Actor("officer-5", "officer", "wsjk", "440100")


def test_callback_and_close_are_recorded(evaluation):
    delivered(evaluation)
    rate(evaluation)
    with pytest.raises(FailedPrecondition):
        evaluation.close("C1", "已改进", "officer-5", actor=OFFICER)  # no call-back yet
    evaluation.record_callback("C1", "已电话回访 13800000000", "officer-5", actor=OFFICER)
    evaluation.close("C1", "已改进一次告知清单", "officer-5", actor=OFFICER)
    assert [(r["action"], r["target"], r["outcome"]) for r in evaluation.audit.records] == [
        ("bad_review.close", "C1", "FAILED_PRECONDITION"), ("bad_review.callback", "C1", "ok"),
        ("bad_review.close", "C1", "ok")]
    assert evaluation.audit.records[-1]["details"] == {"channel": "", "on_time": True}
    assert "13800000000" not in json.dumps(evaluation.audit.records) and "回访" not in json.dumps(
        evaluation.audit.records, ensure_ascii=False)


def test_staff_reads_are_recorded(evaluation):
    delivered(evaluation)
    rate(evaluation)
    evaluation.bad_reviews("wsjk", "440100", actor=OFFICER)
    assert evaluation.get("C1", actor=OFFICER)["applicant_id"] == "1101**********002X"  # staff: masked
    assert evaluation.get("C1")["applicant_id"] == "11010519491231002X"
    assert [(r["action"], r["details"].get("case_nos")) for r in evaluation.audit.records] == [
        ("bad_reviews.list", ["C1"]), ("evaluation.read", None)]
