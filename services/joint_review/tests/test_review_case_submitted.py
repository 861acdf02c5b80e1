"""case_submitted as joint_review takes it: the package snapshot intake's event carries
(onething.intake.v1.PackageSnapshot) opens the session, its tasks and the case."""
import datetime
import pathlib

import pytest
import yaml

from onething.catalog.v1 import catalog_pb2
from onething.intake.v1 import events_pb2 as intake_events
from services.catalog.resolution import resolve
from services.common.bus import RecordingBus
from services.common.events import from_payload, to_payload
from services.intake.domain import package_snapshot
from services.joint_review import domain, handlers
from services.joint_review.fakes import FakeSessionStore
from services.joint_review.worker import case_submitted

DATA = pathlib.Path(__file__).resolve().parents[2] / "catalog" / "data"
REGION = "440100"
CASE_NO = "440100CASE202403050001"
AT = datetime.datetime(2024, 3, 5, 2, 0, tzinfo=datetime.UTC)
APPLICANT = {"id_number": "11010519491231002X", "name": "张三", "phone": "13800000000"}
SELLER_LICENCE = "BDCQZ-440100-0001"


def resolved(name):
    departments = yaml.safe_load((DATA / "departments.yaml").read_text(encoding="utf-8"))
    return resolve(yaml.safe_load((DATA / "packages" / f"{name}.yaml").read_text(encoding="utf-8")), REGION,
                   departments)


def as_intake_has_it(package):
    """The catalog's package as intake gets it: GetPackage's message, as its catalog client's dict."""
    return to_payload(from_payload(catalog_pb2.Package, package))


def event(package):
    """case_submitted of a case under `package`, with the snapshot intake takes of it. A licence
    stood in for each material that a licence may stand in for (减材料), so that a transfer's
    licence knows what it supersedes."""
    materials = [{"material_code": m["code"], "name": m["name"], "license_id": SELLER_LICENCE}
                 if m.get("license_type_code") else
                 {"material_code": m["code"], "name": m["name"], "object_key": f"cases/{CASE_NO}/{m['code']}"}
                 for m in package["materials"]]
    parties = [{"role": p["role"], "name": p["name"], "id_number": "440106198002021230"}
               for p in package.get("parties") or [] if p.get("required")]
    return to_payload(from_payload(intake_events.CaseSubmitted, {
        "case_no": CASE_NO, "region_code": REGION, "applicant": APPLICANT,
        "package_snapshot": package_snapshot(package), "materials": materials,
        "parties": parties, "delivery": {"channel": "DELIVERY_CHANNEL_ELECTRONIC"}, "acted_by": "applicant"}))


def opened(payload):
    """The session, the case and the events a review opens from `payload` (decoded by the worker)."""
    bus = RecordingBus("joint_review")
    review = handlers.JointReview(FakeSessionStore(bus), clock=lambda: AT)
    review.open_session(case_submitted(payload))
    stored = review.store.load(CASE_NO)
    return stored.session, stored.case, [(kind, body) for kind, body, _ in bus.published]  # not the envelope


@pytest.mark.parametrize("name", ["newborn", "second_hand_house", "completion_acceptance", "after_death"])
def test_the_session_opens_from_the_snapshot(name):
    package = resolved(name)
    package["items"][0]["implementing_body"] = {"name": "广州市某某局", "credit_code": "11440100MB2C91234X",
                                                "source_level": REGION}  # a region's overlay names one
    package = as_intake_has_it(package)
    assert "package" not in event(package)
    session, case, published = opened(event(package))
    assert [t["item_code"] for t in session["tasks"]] == [i["code"] for i in package["items"]]
    assert session["tasks"][0]["issuer_name"] == "广州市某某局"
    assert case["package_code"] == package["code"] and case["lead_department"] == package["lead_department"]
    assert [kind for kind, _ in published][-1] == "session_opened"


def test_what_the_session_takes_from_the_snapshot():
    """A transfer (supersedes, the seller's material) and a joint acceptance (inspection items,
    prerequisites, optional and limits): every task's fields come from the snapshot alone."""
    house = as_intake_has_it(resolved("second_hand_house"))
    session, _, _ = opened(event(house))
    transfer = next(t for t in session["tasks"] if t["license_type_code"] == "BDCQZ")
    assert transfer["holder_party"] == "buyer" and transfer["result_type"] == domain.LICENSE
    assert transfer["supersedes"] == {"party": "seller", "license_type_code": "BDCQZ",
                                      "license_ids": [SELLER_LICENCE]}
    assert transfer["issuer_name"] == "自然资源局（不动产登记中心）"  # the department's name: no implementing body

    acceptance = as_intake_has_it(resolved("completion_acceptance"))
    session, _, _ = opened(event(acceptance))
    items = {i["code"]: i for i in acceptance["items"]}
    for task in session["tasks"]:
        item = items[task["item_code"]]
        assert task["inspection"] is bool(item.get("inspection"))
        assert task["optional"] is bool(item.get("optional"))
        assert task["prerequisites"] == item.get("prerequisites", [])
        assert task["material_codes"] == item.get("material_codes", [])
        assert (task["department_code"], task["item_name"]) == (item["department_code"], item["name"])
        assert (task["promised_limit_days"], task["statutory_limit_days"]) == (
            item.get("promised_limit_days", 0), item.get("statutory_limit_days", 0))
        assert task["holder_party"] == "enterprise"
    assert sum(t["inspection"] for t in session["tasks"]) == 4
    assert any(t["prerequisites"] for t in session["tasks"])

