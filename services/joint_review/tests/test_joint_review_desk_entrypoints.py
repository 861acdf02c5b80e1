"""A department's desk (services/joint_review/desk.py) under nameko's own test tools: make_desk binds
the desk to its own department's and region's tasks; its one handler, on_task_assigned, takes a real
TaskAssigned payload, asks elicense (the bus look-up) about the licences the task names, and records
its rule's decision through the use case, as the desk, or leaves the task to a person; a task a person
decided meanwhile is not an error. The desk process reads department, region and rule from settings()."""
import json
import logging
import os
import pathlib
import subprocess
import sys
from unittest import mock

import pytest
from nameko.events import EventHandler
from nameko.testing.services import entrypoint_hook

from onething.joint_review.v1 import events_pb2
from services.common.audit import SERVICE, AuditActor
from services.common.errors import FailedPrecondition
from services.common.events import to_payload
from services.joint_review import domain
from services.joint_review.desk import make_desk
from services.joint_review.handlers import JointReview
from services.joint_review.tests.test_review_handlers import C01, C03, CASE_NO, DEPT, LIC01, REGION, package, submitted  # noqa: F401 - the package fixture

ROOT = pathlib.Path(__file__).resolve().parents[3]


class Elicense:
    """elicense's bus look-up (get_license), answering licences as elicense keeps them."""

    def __init__(self, **by_id):
        self.by_id, self.asked = by_id, []

    def get_license(self, license_id):
        self.asked.append(license_id)
        return self.by_id.get(license_id)


def valid(type_code="CSYXZM"):
    return {"type_code": type_code, "status": "LICENSE_STATUS_VALID"}


def material(code):
    return {"material_code": code, "name": code, "object_key": f"cases/{CASE_NO}/{code}/u1", "sha256": "00" * 32}


def task_assigned(item_code=C01, department="wsjk", material_codes=("M01",), materials=("M01",), license_inputs=(),
                  license_ids=(), inspection=False):
    return events_pb2.TaskAssigned(
        case_no=CASE_NO, item_code=item_code, item_name="出生医学证明签发", department_code=department,
        region_code=REGION, material_codes=list(material_codes), materials=[material(c) for c in materials],
        license_inputs=list(license_inputs), license_ids=list(license_ids), inspection=inspection)


def desk_actor(department):
    return AuditActor(f"desk:{department}:{REGION}", "service", department, REGION, auth=SERVICE)


@pytest.fixture
def desk(service_container):
    def build(handlers, department="wsjk", rule="materials_present", elicense=None):
        return service_container(make_desk(department, REGION, rule), handlers, elicense=elicense or Elicense())
    return build


@pytest.fixture
def spy():
    return mock.create_autospec(JointReview, instance=True)


# --- which tasks a desk receives ---------------------------------------------------------------------


def test_a_desk_is_bound_to_its_own_departments_tasks_in_its_region():
    cls = make_desk("gaj", "440300", "manual")
    [handler] = [e for e in cls.on_task_assigned.nameko_entrypoints if isinstance(e, EventHandler)]
    assert (handler.source_service, handler.event_type) == ("joint_review", "task_assigned.gaj.440300")
    assert cls.name == "desk_gaj_440300"


def test_a_desk_with_an_unknown_rule_does_not_start():
    with pytest.raises(SystemExit, match="materials_present, manual"):
        make_desk("gaj", REGION, "approve_everything")


def test_the_desk_process_takes_department_region_and_rule_from_the_settings():
    env = dict(os.environ, ONETHING_DESK_DEPARTMENT="gaj", ONETHING_DESK_REGION="440300", ONETHING_DESK_RULE="manual",
               ONETHING_PROFILE="")
    code = ("import json; from services.joint_review import desk; "
            "[h] = desk.Desk.on_task_assigned.nameko_entrypoints; "
            "print(json.dumps([desk.Desk.name, h.event_type, desk.RULE]))")
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == ["desk_gaj_440300", "task_assigned.gaj.440300", "manual"]


# --- what the handler decodes and calls -------------------------------------------------------------


def test_a_task_with_its_materials_is_approved_by_the_desk(desk, spy):
    container = desk(spy)
    with entrypoint_hook(container, "on_task_assigned") as hook:
        hook(to_payload(task_assigned()))
    spy.record_opinion.assert_called_once_with(CASE_NO, C01, "wsjk", domain.Decision.APPROVE, "materials present",
                                               f"desk:wsjk:{REGION}", actor=desk_actor("wsjk"))


def test_a_task_missing_a_material_is_rejected_naming_it(desk, spy):
    container = desk(spy)
    with entrypoint_hook(container, "on_task_assigned") as hook:
        hook(to_payload(task_assigned(material_codes=("M01", "M02", "M03"), materials=("M02",))))
    spy.record_opinion.assert_called_once_with(CASE_NO, C01, "wsjk", domain.Decision.REJECT,
                                               "materials missing: M01, M03", f"desk:wsjk:{REGION}",
                                               actor=desk_actor("wsjk"))


def test_the_licences_a_task_names_are_checked_with_elicense(desk, spy):
    elicense = Elicense(**{LIC01: valid()})
    container = desk(spy, department="gaj", elicense=elicense)
    with entrypoint_hook(container, "on_task_assigned") as hook:
        hook(to_payload(task_assigned(item_code=C03, department="gaj", license_inputs=("CSYXZM",),
                                      license_ids=(LIC01,))))
    assert elicense.asked == [LIC01]
    spy.record_opinion.assert_called_once_with(CASE_NO, C03, "gaj", domain.Decision.APPROVE,
                                               f"materials present; licences {LIC01} checked", f"desk:gaj:{REGION}",
                                               actor=desk_actor("gaj"))


@pytest.mark.parametrize("rule, task", [("manual", task_assigned()), ("materials_present",
                                                                       task_assigned(inspection=True))])
def test_a_task_left_to_a_person_is_not_decided(desk, spy, rule, task):
    container = desk(spy, rule=rule)
    with entrypoint_hook(container, "on_task_assigned") as hook:
        assert hook(to_payload(task)) is None
    spy.record_opinion.assert_not_called()


def test_a_task_a_person_decided_meanwhile_is_left_as_it_is(desk, spy, caplog):
    spy.record_opinion.side_effect = FailedPrecondition("the task for item 110000000001 is claimed by officer-1")
    container = desk(spy)
    with caplog.at_level(logging.INFO, logger="services.joint_review.desk"):
        with entrypoint_hook(container, "on_task_assigned") as hook:
            assert hook(to_payload(task_assigned())) is None
    assert "not decided by the rule: the task for item 110000000001 is claimed by officer-1" in caplog.text


# --- through the handlers wiring builds ---------------------------------------------------------------


def test_the_desk_decides_the_task_the_session_assigned_it(desk, review_of_fakes, recording_bus, package):
    review_of_fakes.open_session(submitted(package))
    [payload] = [p for t, p, _ in recording_bus.published if t == f"task_assigned.wsjk.{REGION}"
                 and p["item_code"] == C01]
    start = len(recording_bus.published)
    container = desk(review_of_fakes)
    with entrypoint_hook(container, "on_task_assigned") as hook:
        hook(payload)
    task = domain.task_of(review_of_fakes.get_session(CASE_NO), C01)
    assert (task["state"], task["decision"], task["decided_by"]) == (
        domain.TaskState.APPROVED, domain.Decision.APPROVE, f"desk:wsjk:{REGION}")
    [opinion] = [p for t, p, _ in recording_bus.published[start:] if t == "opinion_recorded"]
    assert opinion["decision"] == "DECISION_APPROVE" and opinion["item_code"] == C01
    [record] = review_of_fakes.audit.find("opinion.record", CASE_NO)
    assert record["actor"]["sub"] == f"desk:wsjk:{REGION}" and record["details"]["decision"] == "DECISION_APPROVE"


def test_without_a_valid_licence_the_desk_rejects_and_the_case_concludes_rejected(desk, review_of_fakes,
                                                                                   recording_bus, package):
    review_of_fakes.open_session(submitted(package))
    review_of_fakes.record_opinion(CASE_NO, C01, DEPT[C01], domain.APPROVE, "", f"desk:wsjk:{REGION}")
    from onething.elicense.v1 import events_pb2 as license_events
    review_of_fakes.license_issued(license_events.LicenseIssued(case_no=CASE_NO, item_code=C01, license_id=LIC01))
    [payload] = [p for t, p, _ in recording_bus.published if t == f"task_assigned.gaj.{REGION}"]
    container = desk(review_of_fakes, department="gaj",
                     elicense=Elicense(**{LIC01: dict(valid(), status="LICENSE_STATUS_REVOKED")}))
    with entrypoint_hook(container, "on_task_assigned") as hook:
        hook(payload)
    session = review_of_fakes.get_session(CASE_NO)
    assert domain.task_of(session, C03)["state"] is domain.TaskState.REJECTED
    assert session["status"] is domain.SessionStatus.REJECTED
    [concluded] = [p for t, p, _ in recording_bus.published if t == "case_concluded"]
    assert "no valid licence of type CSYXZM from elicense" in concluded["reason"]
