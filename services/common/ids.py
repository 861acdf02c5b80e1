"""Check characters of the national identifiers: GB 11643 (citizen ID), GB 32100 (unified social
credit code) and ISO 7064 MOD 37,36 (electronic licence identifiers, GB/T 36904)."""
import datetime
import string

_ID_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
_ID_CHECK = "10X98765432"


def citizen_id_check_digit(first17):
    """ISO 7064 MOD 11-2 check digit over the first 17 digits of a citizen ID."""
    total = sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS, strict=False))
    return _ID_CHECK[total % 11]


def citizen_id_problem(value):
    """Why `value` is not a valid GB 11643 citizen ID number, or None when it is."""
    if not isinstance(value, str) or len(value) != 18:
        return "a citizen ID number has 18 characters"
    body, check = value[:17], value[17].upper()
    if not body.isdigit() or not (check.isdigit() or check == "X"):
        return "a citizen ID number is 17 digits followed by a digit or X"
    try:
        datetime.date(int(body[6:10]), int(body[10:12]), int(body[12:14]))
    except ValueError:
        return f"the birth date {body[6:14]} in the citizen ID number is not a real date"
    expected = citizen_id_check_digit(body)
    if check != expected:
        # the number itself is not repeated (it ends up in logs and spans): its masked form is
        return f"the check digit of citizen ID number {_masked(value)} is wrong (expected {expected})"
    return None


def _masked(value):
    from services.common.privacy import mask_id
    return mask_id(value)


_USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]


def credit_code_check_char(first17):
    total = sum(_USCC_CHARS.index(c) * w for c, w in zip(first17, _USCC_WEIGHTS, strict=False))
    return _USCC_CHARS[(31 - total % 31) % 31]


def credit_code_problem(value):
    """Why `value` is not a valid GB 32100 unified social credit code, or None when it is."""
    if not isinstance(value, str) or len(value) != 18:
        return "a unified social credit code has 18 characters"
    value = value.upper()
    if any(c not in _USCC_CHARS for c in value):
        return "a unified social credit code uses digits and capital letters except I, O, S, V, Z"
    expected = credit_code_check_char(value[:17])
    if value[17] != expected:
        return f"the check character of credit code {value} is wrong (expected {expected})"
    return None


# GB/T 36903 holder code types (证照持有人代码类型) of a licence, written here once: a citizen is
# identified by the GB 11643 ID number, an enterprise or other organisation by the GB 32100 unified
# social credit code.
CODE_TYPE_CITIZEN_ID = "111"
CODE_TYPE_CREDIT_CODE = "001"
CODE_TYPES = {CODE_TYPE_CITIZEN_ID: "居民身份证", CODE_TYPE_CREDIT_CODE: "统一社会信用代码"}


def code_type_of(value):
    """The holder code type of an identifier from its shape and check character, or None when it
    is neither a valid citizen ID number nor a valid unified social credit code."""
    if citizen_id_problem(value) is None:
        return CODE_TYPE_CITIZEN_ID
    if credit_code_problem(value) is None:
        return CODE_TYPE_CREDIT_CODE
    return None


_MOD37_36 = string.digits + string.ascii_uppercase


def mod37_36_check_char(value):
    """ISO 7064 MOD 37,36 (hybrid system) check character over digits and capital letters."""
    m = 36
    p = m
    for ch in value.upper():
        if ch not in _MOD37_36:
            raise ValueError(f"character {ch!r} is not allowed in a MOD 37,36 string")
        s = (p % (m + 1)) + _MOD37_36.index(ch)
        s = s % m or m
        p = s * 2
    return _MOD37_36[(m + 1 - p % (m + 1)) % m]


def mod37_36_valid(value_with_check):
    return mod37_36_check_char(value_with_check[:-1]) == value_with_check[-1].upper()
