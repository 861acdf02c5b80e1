"""joint_review's handlers against the real MongoDB-wire server and RabbitMQ: concurrent opinions
on one session are all kept, and the case concludes once."""
import threading
import time

import pytest
import yaml

from services.catalog import resolution as catalog_resolution
from services.common.config import settings
from services.joint_review import domain

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def review(test_env):
    """joint_review on a database of its own: these sessions' tasks go to desks that do not run
    here, so their task_assigned events stay pending; in this run's shared database the suite the
    e2e tests start would sweep them to its desks and act on made-up cases."""
    import mongoengine

    from services.common import mongo
    from services.common.audit import MongoAuditLog
    from services.common.bus import Bus
    from services.joint_review.store import SessionStore
    from services.joint_review.wiring import build_review
    name = f"{settings().db_name('joint_review')}_integration"
    mongo.disconnect("joint_review")
    mongo.connect("joint_review", db_name=name)
    yield build_review(store=SessionStore(Bus("joint_review")), audit=MongoAuditLog("joint_review"))
    mongoengine.get_connection("joint_review").drop_database(name)
    mongo.disconnect("joint_review")


def newborn():
    import os
    data = settings().catalog_data
    with open(os.path.join(data, "departments.yaml"), encoding="utf-8") as fh:
        departments = yaml.safe_load(fh)
    with open(os.path.join(data, "packages", "newborn.yaml"), encoding="utf-8") as fh:
        return catalog_resolution.resolve(yaml.safe_load(fh), "440100", departments)


def submitted(case_no):
    """case_submitted as intake sends it (its package snapshot), decoded as the worker decodes it."""
    from services.intake.domain import package_snapshot
    from services.joint_review.worker import case_submitted
    return case_submitted({
        "case_no": case_no, "region_code": "440100", "package_snapshot": package_snapshot(newborn()),
        "applicant": {"id_number": "11010519491231002X", "name": "李华"},
        "materials": [{"material_code": c, "object_key": f"cases/{case_no}/{c}"} for c in ("M01", "M02", "M03", "M04")],
        "delivery": {"channel": "DELIVERY_CHANNEL_ELECTRONIC"}})


def test_concurrent_opinions_are_all_kept_and_the_case_concludes_once(review, probe):
    from onething.elicense.v1 import events_pb2
    case_no = f"T{int(time.time() * 1000)}"
    review.open_session(submitted(case_no))
    review.open_session(submitted(case_no))  # a redelivered case_submitted changes nothing
    first = ["110000000001", "110000000002", "110000000006", "110000000007"]
    errors = []

    def approve(item):
        task = next(t for t in review.get_session(case_no)["tasks"] if t["item_code"] == item)
        try:
            review.record_opinion(case_no, item, task["department_code"], domain.APPROVE, "ok", "test")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=approve, args=(i,)) for i in first]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    session = review.get_session(case_no)
    states = {t["item_code"]: t["state"] for t in session["tasks"]}
    assert states["110000000001"] == domain.APPROVED  # waits for its licence
    assert all(states[i] == domain.DONE for i in first[1:])
    review.license_issued(events_pb2.LicenseIssued(case_no=case_no, item_code="110000000001", license_id="LIC-1"))
    for item in ("110000000003", "110000000004", "110000000005"):
        approve(item)
    review.license_issued(events_pb2.LicenseIssued(case_no=case_no, item_code="110000000005", license_id="LIC-2"))
    session = review.get_session(case_no)
    assert session["status"] == domain.S_APPROVED
    time.sleep(0.5)
    keys = [k for k, _ in probe.for_case(case_no)]
    assert keys.count("case_concluded") == 1 and keys.count("opinion_recorded") == 7
    assert keys.count("task_assigned.gaj.440100") == 1
    concluded = next(b for k, b in probe.for_case(case_no) if k == "case_concluded")
    assert sorted(concluded["license_ids"]) == ["LIC-1", "LIC-2"]


def test_department_lists_only_its_own_tasks(review, all_tasks):
    case_no = f"T{int(time.time() * 1000)}L"
    review.open_session(submitted(case_no))
    mine = [t for t in all_tasks(review, "gaj", "440100") if t["case_no"] == case_no]
    assert [t["item_code"] for t in mine] == ["110000000003"]
    assert not [t for t in all_tasks(review, "gaj", "440300") if t["case_no"] == case_no]


def test_overdue_tasks_are_escalated_once_and_flagged_in_the_department_list(review, probe, all_tasks):
    import datetime
    case_no = f"T{int(time.time() * 1000)}O"
    review.open_session(submitted(case_no))
    later = datetime.date.today() + datetime.timedelta(days=30)
    escalated = [e for e in review.check_clocks(today=later) if e[0] == case_no]
    assert sorted(item for _, item in escalated) == ["110000000001", "110000000002", "110000000006",
                                                      "110000000007"]
    assert not [e for e in review.check_clocks(today=later) if e[0] == case_no]
    time.sleep(0.5)
    overdue = [b for k, b in probe.for_case(case_no) if k == "task_overdue"]
    assert len(overdue) == 4 and all(b["elapsed_days"] > b["limit_days"] for b in overdue)
    mine = [t for t in all_tasks(review, "wsjk", "440100") if t["case_no"] == case_no]
    assert mine and all(t["overdue"] for t in mine)
