"""Catalog domain: package validation, prerequisite order, the resolved view for a region."""
import copy
import pathlib

import pytest
import yaml

from services.catalog import definitions, notice, resolution
from services.common.errors import InvalidArgument, NotFound

DATA = pathlib.Path(__file__).resolve().parents[1] / "data"
BIRTH_CERT, VACCINATION, HUKOU, MEDICAL, SOCIAL_CARD, MATERNITY, PARENTING = (
    f"11000000000{i}" for i in range(1, 8))


@pytest.fixture(scope="module")
def departments():
    return yaml.safe_load((DATA / "departments.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def fields():
    return yaml.safe_load((DATA / "fields.yaml").read_text(encoding="utf-8"))


def as_definition(pkg, departments, fields):
    raw = {"departments": departments, "fields": fields, "regions": {}, "packages": [("newborn.yaml", pkg)],
           "overlays": []}
    return definitions.build_definitions(raw)[pkg["code"]]


@pytest.fixture
def newborn():
    return yaml.safe_load((DATA / "packages" / "newborn.yaml").read_text(encoding="utf-8"))


def item(pkg, code):
    return next(i for i in pkg["items"] if i["code"] == code)


# --- validation -------------------------------------------------------------------------------


def test_newborn_package_validates(newborn, departments):
    assert definitions.validate_package(newborn, departments) is None


def test_cycle_is_rejected_naming_the_items(newborn, departments):
    item(newborn, BIRTH_CERT)["prerequisites"] = [SOCIAL_CARD]  # 01 -> 05 -> 04 -> 03 -> 01
    with pytest.raises(InvalidArgument) as err:
        definitions.validate_package(newborn, departments)
    message = err.value.message
    assert "cycle" in message
    for code in (BIRTH_CERT, HUKOU, MEDICAL, SOCIAL_CARD):
        assert code in message


def test_item_that_requires_itself_is_a_cycle(newborn, departments):
    item(newborn, PARENTING)["prerequisites"] = [PARENTING]
    with pytest.raises(InvalidArgument, match="cycle"):
        definitions.validate_package(newborn, departments)


def test_unknown_item_department_is_rejected(newborn, departments):
    item(newborn, HUKOU)["department_code"] = "xyz"
    with pytest.raises(InvalidArgument) as err:
        definitions.validate_package(newborn, departments)
    assert HUKOU in err.value.message and "xyz" in err.value.message and "unknown" in err.value.message


def test_unknown_lead_department_is_rejected(newborn, departments):
    newborn["lead_department"] = "nobody"
    with pytest.raises(InvalidArgument, match="lead department nobody is unknown"):
        definitions.validate_package(newborn, departments)


def test_prerequisite_outside_the_package_is_rejected(newborn, departments):
    item(newborn, MEDICAL)["prerequisites"] = ["119999999999"]
    with pytest.raises(InvalidArgument) as err:
        definitions.validate_package(newborn, departments)
    assert "119999999999" in err.value.message and MEDICAL in err.value.message
    assert "not in the package" in err.value.message


def test_undeclared_material_is_rejected(newborn, departments):
    item(newborn, MATERNITY)["material_codes"] = ["M01", "M99"]
    with pytest.raises(InvalidArgument) as err:
        definitions.validate_package(newborn, departments)
    assert "M99" in err.value.message and MATERNITY in err.value.message
    assert "not declared" in err.value.message


@pytest.mark.parametrize("key", ["code", "name", "items", "lead_department"])
def test_missing_top_level_key_is_named(newborn, departments, key):
    del newborn[key]
    with pytest.raises(InvalidArgument, match=f"has no {key}"):
        definitions.validate_package(newborn, departments)


def test_empty_item_list_is_rejected(newborn, departments):
    newborn["items"] = []
    with pytest.raises(InvalidArgument, match="has no items"):
        definitions.validate_package(newborn, departments)


# --- topological order ------------------------------------------------------------------------


def test_topological_order_of_newborn(newborn):
    order = definitions.topological_order(newborn["items"])
    assert sorted(order) == sorted(i["code"] for i in newborn["items"])
    assert len(order) == len(set(order))
    assert order.index(BIRTH_CERT) < order.index(HUKOU) < order.index(MEDICAL) < order.index(SOCIAL_CARD)


def test_topological_order_puts_prerequisites_first_whatever_the_listing(newborn):
    items = list(reversed(newborn["items"]))
    order = definitions.topological_order(items)
    position = {code: n for n, code in enumerate(order)}
    for i in items:
        for pre in i.get("prerequisites", []):
            assert position[pre] < position[i["code"]]


def test_topological_order_of_diamond():
    items = [{"code": "D", "prerequisites": ["B", "C"]}, {"code": "C", "prerequisites": ["A"]},
             {"code": "B", "prerequisites": ["A"]}, {"code": "A"}]
    order = definitions.topological_order(items)
    assert order[0] == "A" and order[-1] == "D" and set(order[1:3]) == {"B", "C"}


# --- resolve ----------------------------------------------------------------------------------


def test_resolve_lists_departments_lead_first_without_repeats(newborn, departments, fields):
    out = resolution.resolve(as_definition(newborn, departments, fields), "440100")
    assert out["region_code"] == "440100"
    assert out["departments"] == [
        {"code": "wsjk", "name": "卫生健康委员会"}, {"code": "jkzx", "name": "疾病预防控制中心"},
        {"code": "gaj", "name": "公安局"}, {"code": "ybj", "name": "医疗保障局"},
        {"code": "rsj", "name": "人力资源和社会保障局"}]


def test_resolve_limits_are_the_longest_prerequisite_chain(newborn, departments, fields):
    out = resolution.resolve(as_definition(newborn, departments, fields), "440100")
    # 01 -> 03 -> 04 -> 05: promised 1 + 3 + 1 + 5, statutory 5 + 10 + 5 + 15;
    # the parallel 06 (5 / 20 days) and the sum of all items (17 / 65) are not the answer.
    assert out["promised_limit_days"] == 10
    assert out["statutory_limit_days"] == 35


def test_resolve_limit_follows_a_longer_parallel_item(newborn, departments, fields):
    item(newborn, MATERNITY)["promised_limit_days"] = 12
    assert resolution.resolve(as_definition(newborn, departments, fields), "440100")["promised_limit_days"] == 12


def test_longest_path_takes_the_longer_branch_of_a_diamond():
    items = [{"code": "A", "days": 2}, {"code": "B", "days": 3, "prerequisites": ["A"]},
             {"code": "C", "days": 5, "prerequisites": ["A"]}, {"code": "D", "days": 1, "prerequisites": ["B", "C"]}]
    assert resolution._longest_path(items, "days") == 8


def test_resolve_does_not_change_the_definition(newborn, departments, fields):
    defn = as_definition(newborn, departments, fields)
    before = copy.deepcopy(defn)
    out = resolution.resolve(defn, "440100", {"maternity": "no"}, ["111"])
    assert defn == before
    assert [i["code"] for i in out["items"]] == [i["code"] for i in newborn["items"] if i["code"] != MATERNITY]
    assert out["code"] == "XSECS"


@pytest.mark.parametrize("region", ["", None, "4401", "4401000", "44010A", " 440100", "440100 "])
def test_bad_region_code_is_rejected(newborn, departments, fields, region):
    with pytest.raises(InvalidArgument, match="6-digit"):
        resolution.resolve(as_definition(newborn, departments, fields), region)


@pytest.mark.parametrize("region", ["440100\n", "\uff14\uff14\uff10\uff11\uff10\uff10"])
def test_region_code_must_be_exactly_six_ascii_digits(newborn, departments, region):
    with pytest.raises(InvalidArgument, match="6-digit"):
        definitions.check_region(region)


def test_required_materials_in_first_use_order(newborn):
    assert resolution.required_materials(newborn) == ["M01", "M02", "M03", "M04"]


def test_required_materials_leaves_out_unused_ones(newborn):
    item(newborn, MATERNITY)["material_codes"] = ["M01"]
    assert resolution.required_materials(newborn) == ["M01", "M02", "M03"]


def test_not_found_names_package_and_region():
    err = resolution.not_found("XSECS", "440100")
    assert isinstance(err, NotFound) and err.code == "NOT_FOUND"
    assert "'XSECS'" in err.message and "440100" in err.message


def test_bare_package_resolves_the_older_way(newborn, departments):
    out = resolution.resolve(newborn, "440100", departments)  # how other services' tests call it
    assert out["levels"] == ["national"] and out["version"] == 1
    assert [i["code"] for i in out["items"]] == [i["code"] for i in newborn["items"]]  # maternity=yes by default
    assert out["implementing_code"] == "440100XSECS"
    assert next(f for f in out["form_fields"] if f["key"] == "child_name")["label"] == "child_name"


# --- parties: whose record each result is, what it supersedes ------------------------------------


def test_the_newborns_certificates_are_the_newborns(newborn, departments):
    pkg = resolution.resolve(newborn, "440100", departments)
    assert {"role": "newborn", "name": "新生儿", "id_kind": "citizen_id", "required": True} in pkg["parties"]
    assert any(p["role"] == "agent" and not p["required"] for p in pkg["parties"])  # always allowed
    assert item(pkg, BIRTH_CERT)["result"]["holder_party"] == "newborn"
    assert item(pkg, MATERNITY)["result"]["holder_party"] == "applicant"  # the default: the applicant's
    assert all(m["party"] == "applicant" for m in pkg["materials"])


@pytest.mark.parametrize("change, words", [
    (lambda p: p.update(parties=[{"role": "Newborn", "name": "x"}]), "lower-case"),
    (lambda p: p.update(parties=[{"role": "applicant", "name": "x"}]), "not a party to declare"),
    (lambda p: p.update(parties=[{"role": "newborn", "name": "x"}, {"role": "newborn", "name": "y"}]),
     "declared twice"),
    (lambda p: p.update(parties=[{"role": "newborn"}]), "needs a name"),
    (lambda p: p.update(parties=[{"role": "newborn", "name": "x", "id_kind": "passport"}]), "id_kind"),
    (lambda p: p.update(parties=["newborn"]), "mapping with a role"),
    (lambda p: item(p, BIRTH_CERT)["result"].update(holder_party="mother"), "holder_party 'mother'"),
    (lambda p: p["parties"][0].update(required=False), "holder_party 'newborn' is not the applicant or a required"),
    (lambda p: item(p, BIRTH_CERT)["result"].update(supersedes={"party": "seller"}), "party 'seller'"),
    (lambda p: item(p, BIRTH_CERT)["result"].update(supersedes={"party": ""}), "supersedes names the party"),
    (lambda p: item(p, BIRTH_CERT)["result"].update(supersedes={"party": "newborn", "type": "X"}),
     "not type"),
    (lambda p: item(p, HUKOU)["result"].update(supersedes={"party": "newborn"}), "only a licence result"),
    (lambda p: p["materials"][0].update(party="father"), "material M01 is about party 'father'"),
])
def test_parties_that_do_not_fit_are_refused_naming_them(newborn, departments, change, words):
    change(newborn)
    with pytest.raises(InvalidArgument, match=words):
        definitions.validate_package(newborn, departments)


def test_a_transfer_is_the_buyers_and_supersedes_the_sellers_certificate(departments):
    pkg = yaml.safe_load((DATA / "packages" / "second_hand_house.yaml").read_text(encoding="utf-8"))
    pkg = resolution.resolve(pkg, "440100", departments)
    assert [(p["role"], p["required"]) for p in pkg["parties"]] == [("buyer", True), ("seller", True),
                                                                     ("agent", False)]
    result = item(pkg, "160000000002")["result"]
    assert result["holder_party"] == "buyer"
    assert result["supersedes"] == {"party": "seller", "license_type_code": "BDCQZ"}
    assert next(m for m in pkg["materials"] if m["code"] == "H02")["party"] == "seller"


def test_every_seeded_licence_has_a_holder_every_case_names():
    """In the data as shipped: 身后's certificates are the deceased's, enterprise packages' licences
    the enterprise's, and every holder party is required."""
    from services.catalog.store import read_catalog
    defs = definitions.build_definitions(read_catalog(str(DATA)))
    holders = {}
    for code, d in defs.items():
        pkg = resolution.resolve(d, "440100" if d["home"] == "national" else d["home"], {})
        required = {p["role"] for p in pkg["parties"] if p["required"]} | {"applicant"}
        for i in pkg["items"]:
            if i["result"]["type"] == "RESULT_TYPE_LICENSE":
                assert i["result"]["holder_party"] in required, (code, i["code"])
                holders.setdefault(code, set()).add(i["result"]["holder_party"])
        if pkg["audience"] == "AUDIENCE_ENTERPRISE":
            assert "enterprise" in required, code
    assert holders["SH"] == {"deceased"} and holders["XSECS"] == {"newborn"} and holders["ESFGH"] == {"buyer"}
    assert holders["KBCYD"] == {"enterprise"} and holders["GCJGYS"] == {"enterprise"}


def test_the_notice_names_the_parties_a_case_must_name(departments):
    pkg = yaml.safe_load((DATA / "packages" / "after_death.yaml").read_text(encoding="utf-8"))
    pkg = resolution.resolve(pkg, "440100", departments)
    text = notice.notice_text(pkg, notice.steps(pkg), notice.savings(pkg))
    assert "  申请时须填写当事人：逝者（deceased）" in text
