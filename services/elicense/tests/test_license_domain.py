"""Electronic licences: identifiers, the signed canonical form, Ed25519 signing and verification."""
import base64
import datetime
import json

import pytest

from services.common.ids import mod37_36_check_char, mod37_36_valid
from services.elicense import domain

TODAY = "2024-03-05"


@pytest.fixture(scope="module")
def keys():
    return domain.new_key()


@pytest.fixture(scope="module")
def other_keys():
    return domain.new_key()


def licence_fields(**changes):
    fields = {
        "license_id": domain.license_identifier("CSYXZM", "440100WSJK", "202400000001"),
        "type_code": "CSYXZM", "type_name": "出生医学证明", "license_no": "CSYXZM202400000001",
        "issuer_name": "440100 卫生健康委员会", "issuer_code": "440100WSJK", "valid_from": "2024-03-01",
        "valid_to": "", "holder_name": "张三", "holder_code": "11010519491231002X", "holder_code_type": "111",
        "item_code": "110000000001", "case_no": "440100XSECS202403050001", "key_id": "440100-1",
        "status": domain.VALID}
    fields.update(changes)
    return fields


def signed(private, **changes):
    fields = licence_fields(**changes)
    fields["signature"] = domain.sign(fields, private)
    return fields


# --- identifiers ------------------------------------------------------------------------------


def test_identifier_shape():
    lid = domain.license_identifier("CSYXZM", "440100WSJK", "202400000001")
    parts = lid.split(".")
    assert ".".join(parts[:5]) == "1.2.156.3005.2"
    assert parts[5:9] == ["CSYXZM", "440100WSJK", "202400000001", "001"]
    assert len(parts) == 10 and len(parts[9]) == 1
    assert parts[9] == mod37_36_check_char("CSYXZM440100WSJK202400000001001")
    assert mod37_36_valid("CSYXZM440100WSJK202400000001001" + parts[9])
    assert domain.identifier_valid(lid)


def test_version_is_three_digits():
    lid = domain.license_identifier("SBK", "440100RSJ", "202400000002", version=12)
    assert lid.split(".")[8] == "012"
    assert lid.endswith("." + mod37_36_check_char("SBK440100RSJ202400000002012"))
    assert domain.identifier_valid(lid)


def test_every_changed_character_breaks_the_identifier():
    lid = domain.license_identifier("CSYXZM", "440100WSJK", "202400000001")
    head, body = lid[:len("1.2.156.3005.2.")], lid[len("1.2.156.3005.2."):]
    for pos, ch in enumerate(body):
        if ch == ".":
            continue
        for new in "0Z":
            if new != ch:
                changed = head + body[:pos] + new + body[pos + 1:]
                assert not domain.identifier_valid(changed), changed


@pytest.mark.parametrize("lid", [
    "1.2.156.3005.3.CSYXZM.440100WSJK.202400000001.001.X",   # wrong root
    "1.2.156.3005.2.CSYXZM.440100WSJK.202400000001.001",     # no check character
    "CSYXZM.440100WSJK.202400000001.001.X",
    ""])
def test_malformed_identifiers(lid):
    assert domain.identifier_valid(lid) is False


def test_identifiers_differ_by_serial():
    ids = {domain.license_identifier("CSYXZM", "440100WSJK", f"2024{n:08d}") for n in range(1, 51)}
    assert len(ids) == 50 and all(domain.identifier_valid(i) for i in ids)


# --- canonical form ---------------------------------------------------------------------------


def test_canonical_is_sorted_compact_utf8_over_signed_fields_only():
    fields = licence_fields(signature="abc", document_key="licenses/x.json")
    raw = domain.canonical(fields)
    text = raw.decode("utf-8")
    assert "出生医学证明" in text and "\\u" not in text
    assert ": " not in text and ", " not in text
    parsed = json.loads(text)
    assert list(parsed) == sorted(domain.SIGNED_FIELDS)
    assert "signature" not in parsed and "status" not in parsed and "document_key" not in parsed


def test_canonical_fills_missing_fields_and_ignores_order():
    fields = licence_fields()
    reordered = dict(reversed(list(fields.items())))
    assert domain.canonical(reordered) == domain.canonical(fields)
    partial = json.loads(domain.canonical({"license_id": "x"}))
    assert partial["license_id"] == "x" and partial["holder_name"] == "" and len(partial) == len(domain.SIGNED_FIELDS)


# --- keys, signing, verification --------------------------------------------------------------


def test_keys_are_raw_ed25519_in_base64(keys):
    private, public = keys
    assert len(base64.b64decode(private)) == 32 and len(base64.b64decode(public)) == 32
    assert domain.public_of(private) == public
    assert domain.new_key()[0] != private


def test_sign_verify_round_trip(keys):
    private, public = keys
    fields = signed(private)
    assert len(base64.b64decode(fields["signature"])) == 64
    assert domain.verify(fields, public, today=TODAY) == (True, "signature, validity and status check out")


def test_verify_with_today_default(keys):
    private, public = keys
    valid, _ = domain.verify(signed(private, valid_from="2000-01-01"), public)
    assert valid


@pytest.mark.parametrize("field", [f for f in domain.SIGNED_FIELDS if f != "license_id"])
def test_one_byte_changed_in_a_signed_field_fails(keys, field):
    private, public = keys
    fields = signed(private)
    value = fields[field]
    # flip the lowest bit of the first character's code point (an empty field gets one byte)
    fields[field] = chr(ord(value[0]) ^ 1) + value[1:] if value else "x"
    assert fields[field] != licence_fields()[field] and len(fields[field]) == max(len(value), 1)
    valid, reason = domain.verify(fields, public, today=TODAY)
    assert valid is False
    assert "signature" in reason


def test_changed_licence_id_fails_even_with_a_valid_check_character(keys):
    private, public = keys
    fields = signed(private)
    fields["license_id"] = domain.license_identifier("CSYXZM", "440100WSJK", "202400000002")
    assert domain.identifier_valid(fields["license_id"])
    assert domain.verify(fields, public, today=TODAY) == (False, "the signature does not match the licence's content")


def test_changed_licence_id_with_broken_check_character_fails(keys):
    private, public = keys
    fields = signed(private)
    fields["license_id"] = fields["license_id"][:-1] + ("A" if fields["license_id"][-1] != "A" else "B")
    valid, reason = domain.verify(fields, public, today=TODAY)
    assert valid is False and "check character" in reason


def test_fields_outside_the_signature_may_change(keys):
    private, public = keys
    fields = signed(private)
    fields["document_key"] = "licenses/elsewhere.json"
    assert domain.verify(fields, public, today=TODAY)[0] is True


def test_revoked_licence_fails(keys):
    private, public = keys
    fields = signed(private)
    fields["status"] = domain.REVOKED
    assert domain.verify(fields, public, today=TODAY) == (False, "the licence has been revoked")


def test_expired_licence_fails(keys):
    private, public = keys
    yesterday = (datetime.date.today() - datetime.timedelta(days=1)).isoformat()
    fields = signed(private, valid_from="2020-01-01", valid_to=yesterday)
    valid, reason = domain.verify(fields, public)
    assert valid is False and yesterday in reason and "expired" in reason


def test_licence_is_valid_on_its_last_day(keys):
    private, public = keys
    fields = signed(private, valid_to="2024-03-05")
    assert domain.verify(fields, public, today="2024-03-05")[0] is True
    assert domain.verify(fields, public, today="2024-03-06")[0] is False


def test_licence_not_yet_valid_fails(keys):
    private, public = keys
    fields = signed(private, valid_from="2024-04-01")
    valid, reason = domain.verify(fields, public, today=TODAY)
    assert valid is False and "2024-04-01" in reason


def test_wrong_key_fails(keys, other_keys):
    private, _ = keys
    _, other_public = other_keys
    assert domain.verify(signed(private), other_public, today=TODAY) == (
        False, "the signature does not match the licence's content")


@pytest.mark.parametrize("signature", ["", "not base64!!", base64.b64encode(b"\x00" * 64).decode(),
                                       base64.b64encode(b"short").decode()])
def test_missing_or_garbage_signature_fails_without_raising(keys, signature):
    _, public = keys
    fields = licence_fields(signature=signature)
    assert domain.verify(fields, public, today=TODAY)[0] is False


def test_public_key_of_the_wrong_size_fails_without_raising(keys):
    private, _ = keys
    assert domain.verify(signed(private), base64.b64encode(b"\x01" * 31).decode(), today=TODAY)[0] is False
