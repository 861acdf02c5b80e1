"""Which regions a site serves: by the GB/T 2260 hierarchy, never by string prefix."""
import pytest

from services.common.config import Settings, region_within


@pytest.mark.parametrize("code, ancestor, inside", [
    ("440100", "440100", True), ("440106", "440100", True), ("440300", "440100", False),
    ("440106", "440000", True), ("440300", "440000", True), ("450100", "440000", False),
    ("440100", "440106", False), ("110000", "440100", False), ("4401", "440100", False),
    ("44010x", "440100", False), ("", "440100", False), (None, "440100", False),
    ("440199", "440100", True), ("441900", "440100", False),
])
def test_region_within_follows_the_hierarchy(code, ancestor, inside):
    assert region_within(code, ancestor) is inside


def test_a_site_serves_its_region_and_below_or_the_list_it_is_given(monkeypatch):
    monkeypatch.setenv("ONETHING_REGION", "440100")
    monkeypatch.delenv("ONETHING_SERVED_REGIONS", raising=False)
    s = Settings()
    assert s.serves("440106") and s.serves("440100") and not s.serves("440300") and not s.serves("999999")
    assert s.served_regions == ["440100"]
    monkeypatch.setenv("ONETHING_SERVED_REGIONS", "440100, 440300")
    s = Settings()
    assert s.serves("440305") and s.serves("440106") and not s.serves("440000")
    monkeypatch.setenv("ONETHING_SERVED_REGIONS", "440000")
    assert Settings().serves("440300") and not Settings().serves("450100")
