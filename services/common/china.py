"""Facts about mainland China that several services need, written once.

- China Standard Time: UTC+8 all year (no daylight saving since 1991), so a fixed offset is exact
  and no time-zone database is needed. Dates a citizen sees (licence validity, case-number days,
  the rating day of 好差评) are days in this zone, whatever the server's own zone is.
- The mainland mobile number (11 digits, 13x-19x).
- The province-level divisions of GB/T 2260, whose two digits begin every region code.

Pure Python: no framework imports."""
import datetime
import re

SHANGHAI = datetime.timezone(datetime.timedelta(hours=8), "Asia/Shanghai")
CST = SHANGHAI  # China Standard Time, the same zone under its usual short name


def now() -> datetime.datetime:
    """The current moment as an aware datetime in China Standard Time."""
    return datetime.datetime.now(SHANGHAI)


def today() -> datetime.date:
    """Today's date in China."""
    return now().date()


def day_of(moment: datetime.datetime | str) -> datetime.date:
    """The calendar day in China of an aware datetime (or an RFC 3339 / ISO 8601 string with its
    offset). A moment without a time zone is refused: it is ambiguous."""
    if isinstance(moment, str):
        moment = datetime.datetime.fromisoformat(moment)
    if moment.tzinfo is None:
        raise ValueError("a moment without a time zone is ambiguous")
    return moment.astimezone(SHANGHAI).date()


# a mainland mobile number: 11 digits, 1 then 3-9 (the pattern alone, to embed in larger ones)
MOBILE_PATTERN = r"1[3-9][0-9]{9}"
MOBILE_RE = re.compile(MOBILE_PATTERN)


def is_mobile(value: str) -> bool:
    """True for exactly one mainland mobile number (ASCII digits, nothing around it)."""
    return isinstance(value, str) and MOBILE_RE.fullmatch(value) is not None


# GB/T 2260 province-level divisions (省级行政区划): the first two digits of every region code
PROVINCES = {
    "11": "北京市", "12": "天津市", "13": "河北省", "14": "山西省", "15": "内蒙古自治区",
    "21": "辽宁省", "22": "吉林省", "23": "黑龙江省",
    "31": "上海市", "32": "江苏省", "33": "浙江省", "34": "安徽省", "35": "福建省", "36": "江西省", "37": "山东省",
    "41": "河南省", "42": "湖北省", "43": "湖南省", "44": "广东省", "45": "广西壮族自治区", "46": "海南省",
    "50": "重庆市", "51": "四川省", "52": "贵州省", "53": "云南省", "54": "西藏自治区",
    "61": "陕西省", "62": "甘肃省", "63": "青海省", "64": "宁夏回族自治区", "65": "新疆维吾尔自治区",
    "71": "台湾省", "81": "香港特别行政区", "82": "澳门特别行政区",
}
_REGION_SHAPE = re.compile(r"[0-9]{6}")


def region_code_problem(value: str) -> str | None:
    """Why `value` cannot be a GB/T 2260 region code, or None: six ASCII digits (2 province, 2 city,
    2 county), the province one of the 34 province-level divisions, and no county part under a
    province-level code (xx00yy does not exist). Whether the code is in force today is not checked:
    the list changes every year and the catalog's regions.yaml carries only the served ones."""
    if not isinstance(value, str) or not _REGION_SHAPE.fullmatch(value):
        return "a region code is a 6-digit GB/T 2260 code (e.g. 440106)"
    if value[:2] not in PROVINCES:
        return f"a region code begins with the code of a province-level division; {value[:2]} is none"
    if value[2:4] == "00" and value[4:] != "00":
        return "a region code has no county part without its city part (xx00yy is no region)"
    return None
