"""services/common/paging: the page size within a default and a most, and page tokens that round-trip
and are refused alike when they are not one of ours."""
import base64
import json

import pytest

from services.common import paging
from services.common.errors import InvalidArgument


def token_of(value):
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


def test_page_size_defaults_caps_and_refuses_negative():
    assert paging.page_size(0, 100, 1000) == 100
    assert paging.page_size(7, 100, 1000) == 7
    assert paging.page_size(5000, 100, 1000) == 1000
    with pytest.raises(InvalidArgument, match="page_size cannot be negative"):
        paging.page_size(-1, 100, 1000)


def test_a_place_goes_round_a_token_and_no_token_is_the_start():
    place = "2024-03-11 440100XSECS202403040001 online"
    assert paging.read_after(paging.after_token(place), 200) == place
    assert paging.read_after("", 200) == ""


@pytest.mark.parametrize("token", [
    "garbage!", "x", token_of([1]), token_of({"after": 1}), token_of({"after": ""}), token_of({"at": "A"}),
    token_of({"after": "A" * 65}), base64.urlsafe_b64encode(b"\xff\xfe").decode()])
def test_a_token_not_ours_is_refused_in_words(token):
    with pytest.raises(InvalidArgument, match="page_token is not one this service gave out"):
        paging.read_after(token, 64)
