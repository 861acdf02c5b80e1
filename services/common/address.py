"""Postal addresses for mail delivery: what must be there and in what shape."""
import re

from services.common.china import MOBILE_RE as _MOBILE
from services.common.errors import InvalidArgument

_POSTCODE = re.compile(r"[0-9]{6}")
_REGION = re.compile(r"[0-9]{6}")


def check_address(address):
    """Raise InvalidArgument naming the first thing wrong with a mailing address (a dict shaped like
    onething.common.v1.Address)."""
    address = address or {}
    if not (address.get("recipient") or "").strip():
        raise InvalidArgument("mail delivery needs the recipient's name")
    if not _MOBILE.fullmatch(address.get("phone") or ""):
        # the number is not repeated back (it would end up in logs and spans)
        raise InvalidArgument("the recipient's phone is not an 11-digit mobile number")
    if not _REGION.fullmatch(address.get("region_code") or ""):
        raise InvalidArgument("the address needs its 6-digit region code (GB/T 2260), e.g. 440106")
    if len((address.get("line") or "").strip()) < 5:
        raise InvalidArgument("the street address is missing or too short")
    if not _POSTCODE.fullmatch(address.get("postcode") or ""):
        raise InvalidArgument(f"the postcode {address.get('postcode', '')!r} is not 6 digits")
