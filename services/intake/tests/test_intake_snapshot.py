"""The package snapshot case_submitted carries (domain.package_snapshot, onething.intake.v1.
PackageSnapshot): taken from the catalog's package as intake gets it (GetPackage's message, as a
dict), with everything the review of the case reads (the items as the departments' tasks: their
department, prerequisites, materials, licence inputs, limits, inspection and optional flags,
results, the parties those go to and what they supersede, the implementing body; the departments;
the materials a licence may stand in for, with their party) and none of the catalog's own fields."""
import pathlib

import pytest
import yaml
from google.protobuf import json_format

from onething.catalog.v1 import catalog_pb2
from onething.intake.v1 import events_pb2
from services.catalog.resolution import resolve
from services.common.events import from_payload, to_payload
from services.intake import domain

DATA = pathlib.Path(__file__).resolve().parents[2] / "catalog" / "data"
REGION = "440100"
BODY = {"name": "广州市卫生健康委员会", "credit_code": "11440100MB2C91234X", "source_level": REGION}


def from_catalog(name):
    """A package of the catalog's data as intake's catalog client returns it."""
    departments = yaml.safe_load((DATA / "departments.yaml").read_text(encoding="utf-8"))
    package = resolve(yaml.safe_load((DATA / "packages" / f"{name}.yaml").read_text(encoding="utf-8")), REGION,
                      departments)
    return to_payload(from_payload(catalog_pb2.Package, package))


@pytest.fixture(scope="module")
def newborn():
    package = from_catalog("newborn")
    package["items"][0]["implementing_body"] = dict(BODY)  # as a region's overlay names one
    return package


def test_the_snapshot_carries_the_items_as_the_review_makes_its_tasks_of_them(newborn):
    snapshot = domain.package_snapshot(newborn)
    assert (snapshot["code"], snapshot["name"], snapshot["version"]) == ("XSECS", newborn["name"], newborn["version"])
    assert snapshot["lead_department"] == "wsjk"
    assert (snapshot["promised_limit_days"], snapshot["statutory_limit_days"]) == (
        newborn["promised_limit_days"], newborn["statutory_limit_days"])
    assert snapshot["departments"] == [{"code": d["code"], "name": d["name"]} for d in newborn["departments"]]
    assert [i["code"] for i in snapshot["items"]] == [i["code"] for i in newborn["items"]]
    for item, theirs in zip(snapshot["items"], newborn["items"], strict=True):
        for key in ("name", "department_code", "prerequisites", "material_codes", "license_inputs", "optional",
                    "inspection", "promised_limit_days", "statutory_limit_days"):
            assert item.get(key) == theirs.get(key), (item["code"], key)
        assert item["result"]["type"] == theirs["result"]["type"]
        assert item["result"].get("license_type_code") == theirs["result"].get("license_type_code")
        assert item["result"].get("holder_party") == theirs["result"].get("holder_party")
    first, social_card = snapshot["items"][0], snapshot["items"][-1]
    assert first["implementing_body"] == {"name": BODY["name"]}  # the issuer's name; not its code or level
    assert first["result"] == {"type": "RESULT_TYPE_LICENSE", "license_type_code": "CSYXZM",
                               "license_type_name": "出生医学证明", "holder_party": "newborn"}
    assert social_card["optional"] is True
    assert [i["prerequisites"] for i in snapshot["items"] if i["code"] == "110000000003"] == [["110000000001"]]
    assert [i["license_inputs"] for i in snapshot["items"] if i["code"] == "110000000003"] == [["CSYXZM"]]


def test_the_snapshot_carries_inspection_items_and_what_a_transfer_supersedes():
    acceptance = domain.package_snapshot(from_catalog("completion_acceptance"))
    assert [i["code"] for i in acceptance["items"] if i.get("inspection")] == [
        "170000000001", "170000000002", "170000000004", "170000000005"]
    assert {i["result"]["holder_party"] for i in acceptance["items"]} == {"enterprise"}
    assert {"code": "G01", "party": "enterprise", "license_type_code": "YYZZ"} in acceptance["materials"]

    house = domain.package_snapshot(from_catalog("second_hand_house"))
    [transfer] = [i for i in house["items"] if i["result"].get("supersedes")]
    assert transfer["result"] == {"type": "RESULT_TYPE_LICENSE", "license_type_code": "BDCQZ",
                                  "license_type_name": "不动产权证书", "holder_party": "buyer",
                                  "supersedes": {"party": "seller", "license_type_code": "BDCQZ"}}
    assert {"code": "H02", "party": "seller", "license_type_code": "BDCQZ"} in house["materials"]


def test_the_snapshot_carries_the_materials_a_licence_stands_in_for():
    package = from_catalog("newborn")
    package["waived_materials"] = [dict(package["materials"][0])]  # a licence the applicant holds stands in
    snapshot = domain.package_snapshot(package)
    assert [m["code"] for m in snapshot["materials"]] == [m["code"] for m in package["materials"]]
    assert snapshot["waived_materials"] == [
        {k: package["materials"][0][k] for k in ("code", "party", "license_type_code") if package["materials"][0].get(k)}]


def test_the_snapshot_leaves_the_catalogs_own_fields_out(newborn):
    snapshot = domain.package_snapshot(newborn)
    assert set(newborn) - set(snapshot) >= {"form_fields", "situations", "parties", "conditions", "policy",
                                            "delivery_channels", "implementing_code", "audience", "levels"}
    assert not {"fee", "form_field_keys", "when", "implementing_code", "source_level"} & {
        k for i in snapshot["items"] for k in i}
    assert not {"name", "forms", "item_codes", "source_level"} & {k for m in snapshot["materials"] for k in m}


@pytest.mark.parametrize("name", ["newborn", "second_hand_house", "completion_acceptance", "open_restaurant"])
def test_the_snapshot_is_a_package_snapshot_message_field_for_field(name):
    """Every key is a field of PackageSnapshot (nothing dropped when the event is encoded), and a
    default is left out as the event's JSON leaves it out: the payload is the snapshot as built."""
    snapshot = domain.package_snapshot(from_catalog(name))
    strict = json_format.ParseDict(snapshot, events_pb2.PackageSnapshot())  # a key it does not have raises
    payload = to_payload(events_pb2.CaseSubmitted(case_no="C1", package_snapshot=strict))
    assert payload["package_snapshot"] == snapshot and "package" not in payload


def test_the_snapshot_says_where_a_cross_city_item_is_decided():
    snapshot = domain.package_snapshot(from_catalog("enterprise_migration"))
    by_code = {i["code"]: i for i in snapshot["items"]}
    assert by_code["180000000005"]["implementing_region_field"] == "move_from_region"
    assert by_code["180000000001"]["implementing_region_field"] == "move_to_region"
    assert "implementing_region" not in by_code["180000000005"]  # left out when not set, as protobuf's JSON
    message = from_payload(events_pb2.PackageSnapshot, snapshot)
    assert message.items[0].implementing_region_field == "move_from_region"


def test_the_snapshot_keeps_a_region_the_catalog_resolved():
    package = from_catalog("newborn")
    package["items"][0]["implementing_region"] = "440000"
    snapshot = domain.package_snapshot(package)
    assert snapshot["items"][0]["implementing_region"] == "440000"
