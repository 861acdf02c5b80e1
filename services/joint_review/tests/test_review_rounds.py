"""Rectification rounds, claims, the joint site inspection, withdrawal and escalation in the joint
review state machine (pure domain; no servers)."""
import datetime

import pytest

from services.common.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from services.joint_review import domain as d

T0 = "2025-09-22T09:00:00+08:00"   # a Monday
ACCEPTANCE = {"code": "JGYS", "name": "工程建设项目竣工联合验收", "lead_department": "zjj",
              "promised_limit_days": 10, "statutory_limit_days": 20,
              "items": [
                  {"code": "A1", "name": "规划核实", "department_code": "zrzy", "inspection": True,
                   "promised_limit_days": 5, "material_codes": ["G1"]},
                  {"code": "A2", "name": "消防验收", "department_code": "zjj", "inspection": True,
                   "promised_limit_days": 5, "material_codes": ["F1"]},
                  {"code": "A3", "name": "人防验收", "department_code": "rfb", "inspection": True,
                   "promised_limit_days": 5},
                  {"code": "A4", "name": "档案验收", "department_code": "cjda", "promised_limit_days": 3}]}


def at(day, hour=10):
    return f"2025-{day}T{hour:02d}:00:00+08:00"


def opened():
    s = d.new_session("C1", "440100", ACCEPTANCE, T0)
    effects = d.advance(s, T0)
    assert sorted(e[1]["item_code"] for e in effects) == ["A1", "A2", "A3", "A4"]
    return s


def inspect_all(s, passed=True):
    d.schedule_inspection(s, "zjj", "2025-09-24T09:30:00+08:00", "天河区某地块", "o-zjj", at("09-23"))
    for dept in ("zrzy", "zjj", "rfb"):
        d.record_findings(s, dept, passed, f"{dept} 现场核查", f"o-{dept}", at("09-24"))


def test_inspection_items_are_decided_only_after_the_joint_inspection():
    s = opened()
    with pytest.raises(FailedPrecondition, match="inspection"):
        d.record_opinion(s, "A1", "zrzy", d.APPROVE, "", "o-zrzy", at("09-23"))
    with pytest.raises(PermissionDenied, match="lead department"):
        d.schedule_inspection(s, "zrzy", "2025-09-24T09:30:00+08:00", "工地", "o", at("09-23"))
    with pytest.raises(InvalidArgument):
        d.schedule_inspection(s, "zjj", "", "工地", "o", at("09-23"))
    parts = d.schedule_inspection(s, "zjj", "2025-09-24T09:30:00+08:00", "工地", "o-zjj", at("09-23"))
    assert parts == ["rfb", "zjj", "zrzy"]
    assert all(d.task_of(s, i)["clock"]["paused_since"] for i in ("A1", "A2", "A3"))  # expert time not counted
    assert not d.task_of(s, "A4")["clock"]["paused_since"]
    with pytest.raises(PermissionDenied):
        d.record_findings(s, "cjda", True, "看过", "o", at("09-24"))
    with pytest.raises(InvalidArgument):
        d.record_findings(s, "zrzy", True, " ", "o", at("09-24"))
    assert d.record_findings(s, "zrzy", True, "规划条件相符", "o", at("09-24")) is False
    assert d.record_findings(s, "zjj", True, "消防设施到位", "o", at("09-24")) is False
    assert d.record_findings(s, "rfb", True, "人防工程合格", "o", at("09-25")) is True
    assert s["inspection"]["status"] == "DONE"
    assert not any(d.task_of(s, i)["clock"]["paused_since"] for i in ("A1", "A2", "A3"))
    assert d.record_opinion(s, "A1", "zrzy", d.APPROVE, "", "o-zrzy", at("09-25"))


def test_failed_finding_keeps_that_department_from_approving():
    s = opened()
    d.schedule_inspection(s, "zjj", "2025-09-24T09:30:00+08:00", "工地", "o", at("09-23"))
    for dept, ok in (("zrzy", True), ("zjj", False), ("rfb", True)):
        d.record_findings(s, dept, ok, "现场", "o", at("09-24"))
    with pytest.raises(FailedPrecondition):
        d.record_opinion(s, "A2", "zjj", d.APPROVE, "", "o-zjj", at("09-25"))
    assert d.record_opinion(s, "A2", "zjj", d.RECTIFY, "消防通道被占用", "o-zjj", at("09-25"), materials=["F1"])


def test_rectify_pauses_only_that_task_and_the_supplement_sends_it_back_alone():
    s = opened()
    inspect_all(s)
    with pytest.raises(InvalidArgument, match="names the materials"):
        d.record_opinion(s, "A2", "zjj", d.RECTIFY, "补充", "o-zjj", at("09-25"))
    assert d.record_opinion(s, "A2", "zjj", d.RECTIFY, "消防检测报告缺失", "o-zjj", at("09-25"), materials=["F1"])
    assert d.record_opinion(s, "A2", "zjj", d.RECTIFY, "again", "o-zjj", at("09-25"), materials=["F1"]) is False
    effects = d.advance(s, at("09-25"))
    assert [(k, e["item_code"]) for k, e in effects] == [("rectify", "A2")]
    assert d.advance(s, at("09-25")) == []  # announced once
    a2, a1 = d.task_of(s, "A2"), d.task_of(s, "A1")
    assert a2["state"] == d.RECTIFYING and a2["clock"]["paused_since"] and not a1["clock"]["paused_since"]
    assert d.supplemented(s, ["G1"], at("09-26")) == []   # not what was asked
    resumed = d.supplemented(s, ["F1"], at("09-29"))
    assert [t["item_code"] for t in resumed] == ["A2"] and a2["state"] == d.ASSIGNED and a2["rounds"] == 1
    # 9-24 on site (expert inspection) + 9-26, 9-28 (make-up Sunday), 9-29 waiting for the supplement
    assert a2["clock"]["paused_days"] == 4
    for item, dept in (("A1", "zrzy"), ("A2", "zjj"), ("A3", "rfb"), ("A4", "cjda")):
        d.record_opinion(s, item, dept, d.APPROVE, "", f"o-{dept}", at("09-30"))
    effects = d.advance(s, at("09-30"))
    assert effects == [("conclude", True, "all departments approved")]


def test_claims_keep_colleagues_from_deciding_twice():
    s = opened()
    assert d.claim(s, "A4", "cjda", "o-1") and not d.claim(s, "A4", "cjda", "o-1")
    with pytest.raises(FailedPrecondition, match="claimed by o-1"):
        d.claim(s, "A4", "cjda", "o-2")
    with pytest.raises(FailedPrecondition, match="claimed by o-1"):
        d.record_opinion(s, "A4", "cjda", d.APPROVE, "", "o-2", at("09-23"))
    with pytest.raises(PermissionDenied):
        d.claim(s, "A4", "zjj", "o-3")
    assert d.record_opinion(s, "A4", "cjda", d.APPROVE, "", "o-1", at("09-23"))


def test_withdrawal_closes_every_open_task_and_nothing_is_decided_after():
    s = opened()
    assert d.withdraw(s, at("09-23")) and not d.withdraw(s, at("09-23"))
    assert s["status"] == d.S_WITHDRAWN and {t["state"] for t in s["tasks"]} == {d.CLOSED}
    with pytest.raises(FailedPrecondition):
        d.record_opinion(s, "A4", "cjda", d.APPROVE, "", "o", at("09-23"))
    assert d.advance(s, at("09-23")) == []


def test_a_task_past_its_promised_limit_is_escalated_once():
    s = opened()
    assert d.check_clocks(s, datetime.date(2025, 9, 25)) == []          # 3 working days of 3 for A4
    late = d.check_clocks(s, datetime.date(2025, 9, 26))
    assert [t["item_code"] for t in late] == ["A4"] and d.task_of(s, "A4")["overdue"]
    # A1..A3 (5 days from 9-22): 9-23..9-26, 9-28 (make-up Sunday) = 5, then 9-29 is the sixth
    assert d.check_clocks(s, datetime.date(2025, 9, 28)) == []
    assert [t["item_code"] for t in d.check_clocks(s, datetime.date(2025, 9, 29))] == ["A1", "A2", "A3"]
    assert d.check_clocks(s, datetime.date(2025, 10, 9)) == []
    view = d.clock_view(d.task_of(s, "A4")["clock"], datetime.date(2025, 10, 9), 20)
    assert view["elapsed_days"] == 8 and view["remaining_days"] == -5 and not view["statutory_overdue"]


def test_a_hearing_suspends_only_that_tasks_clock():
    s = opened()
    with pytest.raises(InvalidArgument):
        d.suspend(s, "A4", "cjda", "RECTIFICATION", at("09-23"))
    with pytest.raises(PermissionDenied):
        d.suspend(s, "A4", "zjj", "HEARING", at("09-23"))
    d.suspend(s, "A4", "cjda", "HEARING", at("09-23"))
    with pytest.raises(FailedPrecondition, match="already stopped"):
        d.suspend(s, "A4", "cjda", "TESTING", at("09-24"))
    assert d.check_clocks(s, datetime.date(2025, 10, 9)) == [t for t in s["tasks"] if t["item_code"] != "A4"]
    d.resume(s, "A4", "cjda", at("10-09"))
    with pytest.raises(FailedPrecondition):
        d.resume(s, "A4", "cjda", at("10-09"))
    assert d.clock.elapsed(d.task_of(s, "A4")["clock"], datetime.date(2025, 10, 9)) == 1  # only 9-23 counted


def test_a_decided_task_clock_stops_and_never_shows_overdue():
    s = opened()
    d.record_opinion(s, "A4", "cjda", d.APPROVE, "", "o", at("09-23"))
    c = d.task_of(s, "A4")["clock"]
    assert c["stopped_on"] == "2025-09-23"
    view = d.clock_view(c, datetime.date(2025, 12, 1), 10)
    assert view["elapsed_days"] == 1 and not view["statutory_overdue"]


def test_the_inspection_does_not_end_a_hearing_that_stopped_the_clock_first():
    s = opened()
    d.suspend(s, "A1", "zrzy", "HEARING", at("09-23"))
    d.schedule_inspection(s, "zjj", "2025-09-24T09:30:00+08:00", "工地", "o", at("09-23"))
    assert s["inspection"]["paused_items"] == ["A2", "A3"]
    for dept in ("zrzy", "zjj", "rfb"):
        d.record_findings(s, dept, True, "现场", "o", at("09-24"))
    assert d.task_of(s, "A1")["clock"]["paused_for"] == "HEARING"   # still in the hearing
    assert not d.task_of(s, "A2")["clock"]["paused_since"]
    d.resume(s, "A1", "zrzy", at("09-25"))
    assert not d.task_of(s, "A1")["clock"]["paused_since"]


def test_a_desk_rule_never_overrides_a_task_a_person_claimed():
    s = opened()
    d.claim(s, "A4", "cjda", "officer-1")
    with pytest.raises(FailedPrecondition, match="claimed by officer-1"):
        d.record_opinion(s, "A4", "cjda", d.APPROVE, "materials present", "desk:cjda:440100", at("09-23"))


def test_an_old_supplement_arriving_again_does_not_answer_a_newer_round():
    s = opened()
    inspect_all(s)
    d.record_opinion(s, "A2", "zjj", d.RECTIFY, "报告过期", "o", at("09-25"), materials=["F1"])
    assert d.supplemented(s, ["F1"], at("09-26"), {"A2": 1})
    d.record_opinion(s, "A2", "zjj", d.RECTIFY, "仍不合格", "o", at("09-29"), materials=["F1"])
    assert d.supplemented(s, ["F1"], at("09-29"), {"A2": 1}) == []   # the first supplement redelivered
    assert d.task_of(s, "A2")["state"] == d.RECTIFYING
    assert [t["item_code"] for t in d.supplemented(s, ["F1"], at("09-30"), {"A2": 2})] == ["A2"]
