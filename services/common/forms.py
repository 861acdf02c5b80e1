"""The one form (一表申请): checking the values an applicant gives against a package's merged form.
One copy of every rule, used by the catalog's CheckForm (which lists every problem) and by intake's
SubmitCase (which refuses with the first). Pure Python: no framework imports.

A field is a mapping shaped like onething.catalog.v1.FormField: key, label, type (string, date,
number, bool, choice), required, validator (citizen_id, credit_code, phone, region, bank_account),
choices. Values are strings, as they arrive in the protobuf map<string, string>.

`check(fields, values)` returns a list of `Problem`s, each naming its key, a reason (REQUIRED,
WRONG_TYPE, INVALID_VALUE, UNKNOWN_FIELD), an English text without the field's label and a Chinese
sentence for the applicant; the callers turn them into their own errors. No text repeats a value:
form values are personal data and messages end up in logs (a citizen ID number is named masked; a
credit code, the public identifier of an organisation, is named as it is).

Decisions, where the two copies that existed before disagreed (the catalog's CheckForm and intake's
SubmitCase), taken the way a government form should work:
- Booleans are `true` or `false` only. 是 and 否 are what the applicant reads on the form; the value
  sent is the machine value, so a case never holds the same answer spelt two ways that every
  reader of the form (desks, rules, reports) would have to know. (CheckForm accepted 是/否.)
- Numbers are plain decimals, zero or more: digits with an optional decimal point. Every number
  field of the catalog counts or measures something (capital, staff, area, price, vehicles), which
  is never negative; a sign, an exponent (1e3), `nan`, `inf` or a thousands separator is not how a
  person writes such an amount. (SubmitCase accepted negatives; CheckForm accepted 1e3, nan, inf.)
- Region codes are GB/T 2260: six digits whose first two name one of the 34 province-level
  divisions, with no county part under a province-level code (services.common.china). (CheckForm
  accepted any six digits, 000000 included; SubmitCase any six digits starting 1-8.)
- Keys the form does not have do not refuse a submission: a client may send one form for several
  packages (tools/client.demo_form does), and refusing would turn a harmless extra into a failed
  application. They are not checked either. CheckForm still names each of them, as a notice that
  leaves `ok` true, so an applicant sees a misspelt optional field. (CheckForm refused them;
  SubmitCase ignored them silently.)
- Surrounding white space is not part of a value: "  " is missing and " 13800000000" is a mobile
  number. (SubmitCase trimmed; CheckForm did not.)
- Dates are YYYY-MM-DD and real days; required means present and not blank; a choice is one of the
  field's choices exactly; citizen ID numbers (GB 11643) and credit codes (GB 32100) must have the
  right check character; a phone is a mainland mobile number; a bank account is 12-30 digits. (The
  copies agreed on these.)"""
import dataclasses
import datetime
import re
from collections.abc import Iterable, Mapping
from typing import Any

from services.common import china, ids

FIELD_TYPES = ("string", "date", "number", "bool", "choice")
VALIDATORS = ("citizen_id", "credit_code", "phone", "region", "bank_account")

REQUIRED = "REQUIRED"
WRONG_TYPE = "WRONG_TYPE"
INVALID_VALUE = "INVALID_VALUE"
UNKNOWN_FIELD = "UNKNOWN_FIELD"

BOOL_VALUES = ("true", "false")
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_NUMBER_RE = re.compile(r"[0-9]+(\.[0-9]+)?")
_BANK_RE = re.compile(r"[0-9]{12,30}")

_ZH_VALIDATOR = {"citizen_id": "请填写有效的居民身份证号码", "credit_code": "请填写有效的统一社会信用代码",
                 "phone": "请填写 11 位手机号码", "region": "请填写 6 位行政区划代码",
                 "bank_account": "请填写 12 至 30 位银行账号"}


@dataclasses.dataclass(frozen=True)
class Problem:
    """What is wrong with one key of a form. `text` is English and starts with "is" or "must" for a
    missing or mistyped value ("is required", "is not a date (YYYY-MM-DD)") and is a sentence of
    its own for a value its validator refuses ("the check digit of ... is wrong")."""

    key: str
    label: str
    reason: str
    text: str
    zh: str

    @property
    def refuses(self) -> bool:
        """True when the form cannot be accepted with this problem (all but unknown keys)."""
        return self.reason != UNKNOWN_FIELD


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def type_problem(field: Mapping[str, Any], value: str) -> str | None:
    """Why a non-blank `value` is not of the field's type, or None."""
    kind = field.get("type") or "string"
    if kind == "date":
        try:
            if not _DATE_RE.fullmatch(value):
                raise ValueError(value)
            datetime.date.fromisoformat(value)
        except ValueError:
            return "is not a date (YYYY-MM-DD)"
    elif kind == "number" and not _NUMBER_RE.fullmatch(value):
        return "is not a number (digits with an optional decimal point, not negative)"
    elif kind == "bool" and value not in BOOL_VALUES:
        return "must be true or false (是 is sent as true, 否 as false)"
    elif kind == "choice" and value not in (field.get("choices") or []):
        return f"must be one of {'、'.join(field.get('choices') or [])}"
    return None


def validator_problem(validator: str, value: str) -> str | None:
    """Why a non-blank `value` fails the named validator, or None (no validator, or one not known)."""
    if validator == "citizen_id":
        return ids.citizen_id_problem(value)
    if validator == "credit_code":
        return ids.credit_code_problem(value)
    if validator == "phone" and not china.is_mobile(value):
        return "a mainland mobile number has 11 digits and starts with 13-19"
    if validator == "region":
        return china.region_code_problem(value)
    if validator == "bank_account" and not _BANK_RE.fullmatch(value):
        return "a bank account number has 12 to 30 digits"
    return None


def value_problem(field: Mapping[str, Any], value: Any) -> Problem | None:
    """The problem of one field's value (None or blank when not given), or None."""
    key = str(field["key"])
    label = str(field.get("label") or key)
    text = _text(value)
    if not text:
        if field.get("required"):
            return Problem(key, label, REQUIRED, "is required", f"表单“{label}”为必填项，请填写。")
        return None
    problem = type_problem(field, text)
    if problem:
        return Problem(key, label, WRONG_TYPE, problem, f"表单“{label}”的格式不正确，请核对后重新填写。")
    validator = str(field.get("validator") or "")
    problem = validator_problem(validator, text)
    if problem:
        hint = _ZH_VALIDATOR.get(validator, "请核对后重新填写")
        return Problem(key, label, INVALID_VALUE, problem, f"表单“{label}”填写有误：{hint}。")
    return None


def check(fields: Iterable[Mapping[str, Any]] | None, values: Mapping[str, Any] | None) -> list[Problem]:
    """Every problem of a form: first the keys the form does not have (notices, in the order
    given), then each field's problem in the form's order. With no fields, nothing is checked and
    every key is unknown."""
    fields = list(fields or ())
    values = values or {}
    known = {str(f["key"]) for f in fields}
    problems = [Problem(str(k), str(k), UNKNOWN_FIELD, "is not a field of this form (not checked)",
                        f"表单中没有“{k}”这一项，所填内容未经核对。") for k in values if str(k) not in known]
    for field in fields:
        problem = value_problem(field, values.get(field["key"]))
        if problem is not None:
            problems.append(problem)
    return problems


def refusals(problems: Iterable[Problem]) -> list[Problem]:
    """The problems that refuse the form."""
    return [p for p in problems if p.refuses]


def accepts(fields: Iterable[Mapping[str, Any]] | None, values: Mapping[str, Any] | None) -> bool:
    """True when the form can be accepted (unknown keys aside)."""
    return not refusals(check(fields, values))
