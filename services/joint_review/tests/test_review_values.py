"""joint_review's typed values (domain.TaskState, SessionStatus, Decision): one mapping to the proto
enums' numbers, one to the strings the store keeps, and the api encoding them back once."""
import pytest

from onething.common.v1 import common_pb2
from onething.joint_review.v1 import joint_review_pb2 as pb
from services.common import policy
from services.common.auth import Actor
from services.common.errors import InvalidArgument
from services.joint_review import api, domain
from services.joint_review.domain import Decision, SessionStatus, TaskState
from services.joint_review.tests.test_review_handlers import C02, CASE_NO, package, submitted  # noqa: F401

T0 = "2025-09-22T09:00:00+08:00"
PACKAGE = {"code": "JGYS", "name": "竣工联合验收", "lead_department": "zjj", "promised_limit_days": 10,
           "items": [{"code": "A1", "name": "规划核实", "department_code": "zrzy", "promised_limit_days": 5},
                     {"code": "A2", "name": "消防验收", "department_code": "zjj", "promised_limit_days": 5}]}


@pytest.mark.parametrize("enum_cls, proto, stored, proto_enum", [
    (TaskState, domain.TASK_STATE_PROTO, domain.TASK_STATE_STORED, pb.TaskState),
    (SessionStatus, domain.SESSION_STATUS_PROTO, domain.SESSION_STATUS_STORED, pb.SessionStatus),
    (Decision, domain.DECISION_PROTO, domain.DECISION_STORED, common_pb2.Decision),
])
def test_every_value_has_one_proto_number_and_one_stored_string(enum_cls, proto, stored, proto_enum):
    assert set(proto) == set(enum_cls) == set(stored)
    # every value the proto declares (but UNSPECIFIED) has its member, and no two share a number or a string
    assert sorted(proto.values()) == sorted(v.number for v in proto_enum.DESCRIPTOR.values if v.number)
    assert len(set(stored.values())) == len(stored)
    # the strings stored today happen to be today's proto names; they are kept as they are, whatever
    # the protos come to call the values
    assert {member: proto_enum.Name(number) for member, number in proto.items()} == stored


def test_proto_numbers_decode_to_typed_values_and_unspecified_to_none():
    assert domain.decision_from_proto(common_pb2.DECISION_RECTIFY) is Decision.RECTIFY
    assert domain.decision_from_proto(0) is None
    assert domain.task_state_from_proto(pb.TASK_STATE_RECTIFYING) is TaskState.RECTIFYING
    assert domain.task_state_from_proto(0) is None
    assert domain.session_status_from_proto(pb.SESSION_STATUS_WITHDRAWN) is SessionStatus.WITHDRAWN


def test_a_stored_string_the_mapping_does_not_know_is_refused_not_guessed():
    body = domain.stored_session(domain.new_session("C1", "440100", PACKAGE, T0))
    body["tasks"][0]["state"] = "TASK_STATE_PAUSED"
    with pytest.raises(ValueError, match="TASK_STATE_PAUSED"):
        domain.session_from_stored(body)
    body = domain.stored_session(domain.new_session("C1", "440100", PACKAGE, T0))
    body["status"] = "open"  # the enum's value is not its stored form
    with pytest.raises(ValueError, match="no session status"):
        domain.session_from_stored(body)


def test_a_decision_must_be_typed():
    session = domain.new_session("C1", "440100", PACKAGE, T0)
    domain.advance(session, T0)
    with pytest.raises(InvalidArgument, match="must be APPROVE, REJECT or RECTIFY"):
        domain.record_opinion(session, "A1", "zrzy", "DECISION_APPROVE", "", "o-1", T0)
    assert domain.record_opinion(session, "A1", "zrzy", Decision.APPROVE, "", "o-1", T0) is True


def test_the_api_encodes_the_typed_values_as_the_protos_numbers():
    session = domain.new_session("C1", "440100", PACKAGE, T0)
    domain.advance(session, T0)
    domain.record_opinion(session, "A1", "zrzy", Decision.APPROVE, "", "o-1", T0)
    domain.record_opinion(session, "A2", "zjj", Decision.APPROVE, "", "o-2", T0)
    domain.advance(session, T0)
    domain.withdraw(session, T0)  # after the conclusion: it wins and makes the conclusion void
    msg = api.session_to_proto(session)
    assert msg.status == pb.SESSION_STATUS_WITHDRAWN and msg.withdrawn_after == pb.SESSION_STATUS_APPROVED
    assert [(t.state, t.decision) for t in msg.tasks] == [(pb.TASK_STATE_DONE, common_pb2.DECISION_APPROVE)] * 2
    fresh = domain.new_session("C2", "440100", PACKAGE, T0)
    task = api.task_to_proto(dict(fresh["tasks"][0], case_no="C2"))
    assert task.state == pb.TASK_STATE_PENDING and task.decision == common_pb2.DECISION_UNSPECIFIED
    assert api.session_to_proto(fresh).withdrawn_after == pb.SESSION_STATUS_UNSPECIFIED


@pytest.fixture
def officer():
    token = policy.bind(policy.Caller(Actor("officer-9", "officer", "jkzx", "440100"), "", "t", "/m"))
    yield
    policy.unbind(token)


def test_the_api_decodes_the_requests_enums_once(review_of_fakes, recording_bus, officer, package):
    review_of_fakes.open_session(submitted(package))
    servicer = api.JointReviewApi(review_of_fakes)
    listed = servicer.ListTasks(pb.ListTasksRequest(department_code="jkzx", state=pb.TASK_STATE_ASSIGNED), None)
    assert [(t.item_code, t.state) for t in listed.tasks] == [(C02, pb.TASK_STATE_ASSIGNED)]
    assert servicer.ListTasks(pb.ListTasksRequest(state=pb.TASK_STATE_DONE), None).tasks == []
    assert len(servicer.ListTasks(pb.ListTasksRequest(), None).tasks) == 1  # unspecified: every state
    with pytest.raises(InvalidArgument, match="must be APPROVE, REJECT or RECTIFY"):
        servicer.RecordOpinion(pb.RecordOpinionRequest(case_no=CASE_NO, item_code=C02, department_code="jkzx"), None)
    task = servicer.RecordOpinion(pb.RecordOpinionRequest(case_no=CASE_NO, item_code=C02, department_code="jkzx",
                                                          decision=common_pb2.DECISION_APPROVE), None)
    assert (task.state, task.decision, task.decided_by) == (pb.TASK_STATE_DONE, common_pb2.DECISION_APPROVE,
                                                            "officer-9")
    assert [p["decision"] for t, p, _ in recording_bus.published if t == "opinion_recorded"] == ["DECISION_APPROVE"]
    assert [r["details"]["decision"] for r in review_of_fakes.audit.find("opinion.record")] == [
        "DECISION_UNSPECIFIED", "DECISION_APPROVE"]


# where an item is decided (sites) ------------------------------------------------------------------
def test_an_item_goes_to_the_region_the_catalog_resolved_for_it():
    item = {"implementing_region": "440000", "implementing_region_field": "move_from_region"}
    assert domain.task_region(item, "440100", {"move_from_region": "440305"}) == "440000"


def test_an_item_named_by_a_form_field_goes_to_the_city_of_that_region():
    item = {"implementing_region_field": "move_from_region"}
    assert domain.task_region(item, "440100", {"move_from_region": "440305"}) == "440300"
    assert domain.task_region(item, "440100", {"move_from_region": "440300"}) == "440300"
    assert domain.task_region(item, "440100", {"move_from_region": "440000"}) == "440000"


def test_without_either_or_with_no_usable_value_an_item_stays_in_the_cases_region():
    assert domain.task_region({}, "440100", {"move_from_region": "440305"}) == "440100"
    field = {"implementing_region_field": "move_from_region"}
    assert domain.task_region(field, "440100", {}) == "440100"
    assert domain.task_region(field, "440100", {"move_from_region": "深圳"}) == "440100"


def test_a_new_session_routes_each_task_to_its_region():
    package = {**PACKAGE, "items": [
        {**PACKAGE["items"][0], "implementing_region_field": "move_from_region"},
        *[{**i, "implementing_region": "440000"} for i in PACKAGE["items"][1:2]],
        *PACKAGE["items"][2:]]}
    session = domain.new_session("C9", "440100", package, T0, form={"move_from_region": "440304"})
    regions = [t["region_code"] for t in session["tasks"]]
    assert regions[:2] == ["440300", "440000"]
    assert all(r == "440100" for r in regions[2:])
    assert session["region_code"] == "440100"
