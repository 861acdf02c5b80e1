"""GB/T 36903 holder code types, written once in services/common/ids.py."""
from services.common import ids


def test_code_types_are_the_documented_values():
    assert ids.CODE_TYPE_CITIZEN_ID == "111" and ids.CODE_TYPE_CREDIT_CODE == "001"
    assert set(ids.CODE_TYPES) == {"111", "001"}


def test_the_code_type_of_a_number_follows_its_check_character():
    assert ids.code_type_of("11010519491231002X") == "111"
    assert ids.code_type_of("91350100M000100Y43") == "001"
    assert ids.code_type_of("91350100M000100Y4A") is None
    assert ids.code_type_of("") is None
