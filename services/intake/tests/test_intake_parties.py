"""The parties of a case (当事人): who it is about besides the applicant, checked against what the
package asks (roles, ID kinds, GB 11643 / GB 32100 check characters, GB/T 36903 code types), and
减材料 from the licences of the party each material is about."""
import pytest

from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.ids import CODE_TYPE_CITIZEN_ID, CODE_TYPE_CREDIT_CODE
from services.intake import domain
from tools.client import citizen_id

BUYER = citizen_id("44010619900101123")
SELLER = citizen_id("44010619800202123")
AGENT = citizen_id("44010619700303123")
CREDIT = "91350100M000100Y43"
HOUSE = {
    "code": "ESFGH",
    "parties": [{"role": "buyer", "name": "买方", "id_kind": "any", "required": True},
                {"role": "seller", "name": "卖方", "id_kind": "any", "required": True},
                {"role": "agent", "name": "代理人", "id_kind": "citizen_id"}],
    "materials": [{"code": "H01", "name": "买卖双方身份证明", "license_type_code": "111", "party": "applicant"},
                  {"code": "H02", "name": "不动产权证书", "license_type_code": "BDCQZ", "party": "seller"},
                  {"code": "H03", "name": "存量房买卖合同", "party": "applicant"}],
    "items": [{"code": "160000000002", "material_codes": ["H01", "H02", "H03"]}],
}


def party(role, id_number, name="某人", code_type=""):
    return {"role": role, "name": name, "id_number": id_number, "code_type": code_type}


def test_parties_are_kept_with_their_code_type():
    kept = domain.check_parties(HOUSE, [party("buyer", BUYER.lower()), party("seller", CREDIT, "某公司"),
                                        party("agent", AGENT, code_type="111")])
    assert kept == [{"role": "buyer", "name": "某人", "id_number": BUYER.upper(), "code_type": CODE_TYPE_CITIZEN_ID},
                    {"role": "seller", "name": "某公司", "id_number": CREDIT, "code_type": CODE_TYPE_CREDIT_CODE},
                    {"role": "agent", "name": "某人", "id_number": AGENT, "code_type": CODE_TYPE_CITIZEN_ID}]


@pytest.mark.parametrize("parties, field, words", [
    ([party("buyer", BUYER)], "parties", "needs its cases to name the party 卖方 (seller)"),
    ([], "parties", "买方 (buyer)、卖方 (seller)"),
    ([party("buyer", BUYER), party("seller", SELLER), party("deceased", AGENT)], "parties[2].role",
     "names no party 'deceased'; it takes: buyer, seller, agent"),
    ([party("applicant", BUYER)], "parties[0].role", "named in `applicant`"),
    ([party("", BUYER)], "parties[0].role", "name the party's role"),
    ([party("buyer", BUYER), party("buyer", SELLER)], "parties[1].role", "named twice"),
    ([party("buyer", BUYER, name=" ")], "parties[0].name", "name of party 买方 (buyer) is missing"),
    ([party("buyer", "")], "parties[0].id_number", "ID number of party 买方 (buyer) is missing"),
    ([party("buyer", "440106199001011230")], "parties[0].id_number", "neither a citizen ID number"),
    ([party("buyer", BUYER), party("seller", SELLER), party("agent", CREDIT)], "parties[2].id_number",
     "a citizen ID number is 17 digits"),
    ([party("buyer", BUYER, code_type="999")], "parties[0].code_type", "not one of 111"),
    ([party("buyer", SELLER, code_type="001")], "parties[0].id_number", "check character of credit code"),
    ([party("buyer", BUYER), party("seller", SELLER), party("agent", AGENT, code_type="001")],
     "parties[2].code_type", "does not fit: 代理人 is identified by a 居民身份证 (111)"),
    ([party("buyer", BUYER), party("seller", BUYER.lower())], "parties[1].id_number", "same ID number"),
])
def test_bad_parties_are_invalid_arguments_naming_the_field(parties, field, words):
    with pytest.raises(InvalidArgument) as err:
        domain.check_parties(HOUSE, parties)
    assert words in err.value.message
    assert err.value.violations[0].field == field and err.value.zh


def test_a_credit_code_party_must_be_an_enterprise():
    pkg = {"code": "KBQY", "parties": [{"role": "enterprise", "name": "企业", "id_kind": "credit_code",
                                        "required": True}]}
    assert domain.check_parties(pkg, [party("enterprise", CREDIT)])[0]["code_type"] == "001"
    with pytest.raises(InvalidArgument, match="check character of credit code"):
        domain.check_parties(pkg, [party("enterprise", SELLER)])
    # a number that passes both checks is a citizen's where either is allowed, an enterprise's here
    assert domain.check_parties(pkg, [party("enterprise", BUYER)])[0]["code_type"] == "001"
    assert domain.check_parties(HOUSE, [party("buyer", BUYER), party("seller", SELLER)])[0]["code_type"] == "111"
    assert domain.check_parties(HOUSE, [party("buyer", BUYER, code_type="001"),
                                        party("seller", SELLER)])[0]["code_type"] == "001"


def test_a_package_without_parties_takes_none():
    assert domain.check_parties({"code": "X"}, []) == []
    with pytest.raises(InvalidArgument, match="it takes: none"):
        domain.check_parties({"code": "X"}, [party("agent", AGENT)])


# --- 减材料 by party ---------------------------------------------------------------------------

def licence(holder, type_code="BDCQZ", license_id="L1"):
    return {"license_id": license_id, "type_code": type_code, "holder_code": holder, "valid_from": "2026-01-01",
            "status": "LICENSE_STATUS_VALID"}


def test_the_sellers_certificate_stands_in_for_the_material_about_the_seller():
    """The buyer (or an agent) applies: the seller's 不动产权证书 is not asked for, because the seller
    holds it; the applicant's own certificate of that type would not do."""
    holders = domain.holders({"id_number": AGENT}, [party("buyer", BUYER), party("seller", SELLER)])
    assert domain.licence_holders(HOUSE, ["H01", "H03"], holders) == [SELLER]
    covered = domain.check_materials(HOUSE, ["H01", "H03"], [licence(SELLER)], holders)
    assert covered["H02"]["license_id"] == "L1"
    with pytest.raises(FailedPrecondition, match="H02"):
        domain.check_materials(HOUSE, ["H01", "H03"], [licence(AGENT), licence(BUYER, license_id="L2")], holders)


def test_only_missing_licence_materials_are_looked_up():
    holders = domain.holders({"id_number": AGENT}, [party("buyer", BUYER), party("seller", SELLER)])
    assert domain.licence_holders(HOUSE, ["H01", "H02", "H03"], holders) == []
    assert domain.licence_holders(HOUSE, ["H03"], holders) == [AGENT, SELLER]
