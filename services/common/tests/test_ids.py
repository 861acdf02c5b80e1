"""Check characters of GB 11643 citizen IDs, GB 32100 credit codes and ISO 7064 MOD 37,36.

The reference functions below are written from the standards' formulas (weights as powers,
verification by the residue), independently of the tables in services.common.ids."""
import random
import string

import pytest

from services.common import ids

# --- independent references -------------------------------------------------------------------


def ref_citizen_check(first17):
    """GB 11643 / ISO 7064 MOD 11-2: weight of position i (from the left) is 2^(17-i) mod 11."""
    total = sum(int(c) * pow(2, 17 - i, 11) for i, c in enumerate(first17))
    value = (12 - total % 11) % 11
    return "X" if value == 10 else str(value)


USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # 31 characters: no I, O, S, V, Z


def ref_uscc_check(first17):
    """GB 32100: weight of position i is 3^i mod 31, check = 31 - sum mod 31 (31 -> 0)."""
    total = sum(USCC_ALPHABET.index(c) * pow(3, i, 31) for i, c in enumerate(first17))
    return USCC_ALPHABET[(31 - total % 31) % 31]


ALNUM = string.digits + string.ascii_uppercase


def ref_mod37_36_verifies(full):
    """ISO 7064 hybrid MOD 37,36 verification: run the recursion over data and check character;
    the string is valid when the last step leaves a residue of 1."""
    p = 36
    s = None
    for ch in full:
        s = (p % 37 + ALNUM.index(ch)) % 36
        p = (s or 36) * 2
    return s == 1


def random_birth_id(rnd):
    region = rnd.choice(["110105", "440106", "310115", "510104", "350102"])
    year = rnd.randint(1920, 2023)
    month = rnd.randint(1, 12)
    day = rnd.randint(1, 28)
    seq = f"{rnd.randint(0, 999):03d}"
    return f"{region}{year:04d}{month:02d}{day:02d}{seq}"


# --- citizen IDs ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [
    "11010519491231002X",   # the example printed in GB 11643
    "11010519491231002x",   # a lower-case x is read as X
    "440524188001010014",   # the other example of GB 11643
])
def test_published_citizen_ids_are_valid(value):
    assert ids.citizen_id_problem(value) is None


def test_check_digit_of_published_example_is_x():
    assert ids.citizen_id_check_digit("11010519491231002") == "X"
    assert ids.citizen_id_check_digit("44052418800101001") == "4"


def test_check_digit_matches_reference_on_random_numbers():
    rnd = random.Random(11643)
    for _ in range(500):
        body = random_birth_id(rnd)
        expected = ref_citizen_check(body)
        assert ids.citizen_id_check_digit(body) == expected
        assert ids.citizen_id_problem(body + expected) is None


def test_every_check_digit_value_occurs_and_is_accepted():
    rnd = random.Random(7)
    seen = set()
    while len(seen) < 11:
        body = random_birth_id(rnd)
        check = ref_citizen_check(body)
        seen.add(check)
        assert ids.citizen_id_problem(body + check) is None
    assert seen == set("0123456789X")


def test_wrong_check_digit_is_reported_with_the_expected_digit():
    problem = ids.citizen_id_problem("110105194912310021")
    assert problem is not None
    assert "check digit" in problem
    assert "expected X" in problem
    # the number is masked: the message ends up in logs and spans
    assert "110105194912310021" not in problem and "1101**********0021" in problem


def test_every_wrong_check_digit_is_rejected():
    body = "44010619900307251"
    right = ref_citizen_check(body)
    for wrong in "0123456789X":
        if wrong == right:
            continue
        problem = ids.citizen_id_problem(body + wrong)
        assert problem is not None and f"expected {right}" in problem


def test_single_digit_change_in_body_is_detected():
    rnd = random.Random(3)
    for _ in range(200):
        body = random_birth_id(rnd)
        full = body + ref_citizen_check(body)
        # change one digit of the sequence code (keeps the birth date real)
        pos = rnd.choice([14, 15, 16])
        new = rnd.choice([d for d in string.digits if d != full[pos]])
        changed = full[:pos] + new + full[pos + 1:]
        assert ids.citizen_id_problem(changed) is not None


@pytest.mark.parametrize("date", ["19490231", "19490229", "19491301", "19490000", "00000101", "19491232"])
def test_birth_date_that_does_not_exist_is_rejected(date):
    body = f"110105{date}002"
    problem = ids.citizen_id_problem(body + ref_citizen_check(body))
    assert problem is not None
    assert date in problem and "not a real date" in problem


def test_leap_day_is_a_real_date():
    body = "11010520000229002"
    assert ids.citizen_id_problem(body + ref_citizen_check(body)) is None


@pytest.mark.parametrize("value", ["", "11010519491231002", "11010519491231002X0", None, 110105194912310021])
def test_wrong_length_or_type_names_the_length(value):
    assert ids.citizen_id_problem(value) == "a citizen ID number has 18 characters"


@pytest.mark.parametrize("value", ["1101051949123100XX", "A1010519491231002X", "11010519491231002Y", "1101051949 231002X"])
def test_non_digit_characters_are_rejected(value):
    problem = ids.citizen_id_problem(value)
    assert problem is not None and "17 digits followed by a digit or X" in problem


# --- unified social credit codes ------------------------------------------------------------


def test_published_credit_code_is_valid():
    assert ids.credit_code_problem("91350100M000100Y43") is None
    assert ids.credit_code_check_char("91350100M000100Y4") == "3"


def test_credit_code_in_lower_case_is_accepted():
    assert ids.credit_code_problem("91350100m000100y43") is None


def test_credit_check_char_matches_reference_on_random_codes():
    rnd = random.Random(32100)
    for _ in range(500):
        body = "".join(rnd.choice(USCC_ALPHABET) for _ in range(17))
        expected = ref_uscc_check(body)
        assert ids.credit_code_check_char(body) == expected
        assert ids.credit_code_problem(body + expected) is None


def test_wrong_credit_check_char_names_the_expected_one():
    problem = ids.credit_code_problem("91350100M000100Y4A")
    assert problem is not None
    assert "check character" in problem and "expected 3" in problem


def test_single_substitution_in_credit_code_is_detected():
    rnd = random.Random(5)
    for _ in range(300):
        body = "".join(rnd.choice(USCC_ALPHABET) for _ in range(17))
        full = body + ref_uscc_check(body)
        pos = rnd.randrange(18)
        new = rnd.choice([c for c in USCC_ALPHABET if c != full[pos]])
        assert ids.credit_code_problem(full[:pos] + new + full[pos + 1:]) is not None


@pytest.mark.parametrize("letter", list("IOSVZ"))
def test_forbidden_letters_are_rejected(letter):
    value = "91350100M000100Y43"
    for pos in (0, 8, 17):
        problem = ids.credit_code_problem(value[:pos] + letter + value[pos + 1:])
        assert problem is not None and "except I, O, S, V, Z" in problem


@pytest.mark.parametrize("value", ["", "91350100M000100Y4", "91350100M000100Y433", None])
def test_credit_code_of_wrong_length_is_rejected(value):
    assert ids.credit_code_problem(value) == "a unified social credit code has 18 characters"


def test_credit_code_with_punctuation_is_rejected():
    assert "except I, O, S, V, Z" in ids.credit_code_problem("91350100-000100Y43")


# --- ISO 7064 MOD 37,36 -------------------------------------------------------------------


def test_published_grid_example():
    # Global Release Identifier A1-2425G-ABC1234002-M uses ISO 7064 MOD 37,36.
    assert ids.mod37_36_check_char("A12425GABC1234002") == "M"
    assert ids.mod37_36_valid("A12425GABC1234002M")
    assert not ids.mod37_36_valid("A12425GABC1234002N")


def test_check_char_agrees_with_reference_verification():
    rnd = random.Random(3736)
    for _ in range(400):
        data = "".join(rnd.choice(ALNUM) for _ in range(rnd.randint(1, 30)))
        check = ids.mod37_36_check_char(data)
        assert check in ALNUM
        # exactly one of the 36 characters verifies, and it is the one computed
        verifying = [c for c in ALNUM if ref_mod37_36_verifies(data + c)]
        assert verifying == [check]


def test_valid_round_trip_and_lower_case():
    rnd = random.Random(1)
    for _ in range(200):
        data = "".join(rnd.choice(ALNUM) for _ in range(rnd.randint(1, 25)))
        full = data + ids.mod37_36_check_char(data)
        assert ids.mod37_36_valid(full)
        assert ids.mod37_36_valid(full.lower())
        assert ids.mod37_36_check_char(data.lower()) == full[-1]


def test_every_single_substitution_is_detected():
    rnd = random.Random(42)
    for _ in range(300):
        data = "".join(rnd.choice(ALNUM) for _ in range(rnd.randint(2, 25)))
        full = data + ids.mod37_36_check_char(data)
        for pos in range(len(full)):
            new = rnd.choice([c for c in ALNUM if c != full[pos]])
            assert not ids.mod37_36_valid(full[:pos] + new + full[pos + 1:]), (full, pos, new)


def test_adjacent_transpositions_are_almost_always_detected():
    # A hybrid MOD M+1,M system catches every substitution but, by construction, not quite every
    # adjacent transposition (ISO 7064 quotes a small residual rate); require better than 99 %.
    rnd = random.Random(99)
    tried = missed = 0
    for _ in range(2000):
        data = "".join(rnd.choice(ALNUM) for _ in range(rnd.randint(2, 25)))
        full = data + ids.mod37_36_check_char(data)
        pos = rnd.randrange(len(full) - 1)
        if full[pos] == full[pos + 1]:
            continue
        swapped = full[:pos] + full[pos + 1] + full[pos] + full[pos + 2:]
        tried += 1
        if ids.mod37_36_valid(swapped):
            missed += 1
            assert ref_mod37_36_verifies(swapped)  # a true collision, not an implementation slip
    assert tried > 1900
    assert missed / tried < 0.01


def test_characters_outside_the_alphabet_raise():
    with pytest.raises(ValueError, match="not allowed"):
        ids.mod37_36_check_char("ABC-123")
    with pytest.raises(ValueError):
        ids.mod37_36_check_char("证照")
