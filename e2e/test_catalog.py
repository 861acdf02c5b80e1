"""End to end: the catalog api of the running suite, over gRPC: levels, notice, savings, and the
command-line tool against it."""
import io

import grpc
import pytest

from e2e.waits import find_item, item_of
from onething.catalog.v1 import catalog_pb2

pytestmark = pytest.mark.e2e


def card(pkg):
    """社会保障卡申领: the item of 人社 (rsj) in the resolved package."""
    return find_item(pkg, department="rsj")


def test_city_overlay_shows_in_that_city_and_another_city_is_not_this_sites(client):
    gz = client.catalog.GetPackage(catalog_pb2.GetPackageRequest(code="XSECS", region_code="440100"), timeout=10)
    county = client.catalog.GetPackage(catalog_pb2.GetPackageRequest(code="XSECS", region_code="440106"), timeout=10)
    assert (card(gz).promised_limit_days, card(gz).promised_limit_source) == (3, "440100")
    assert (card(county).promised_limit_days, card(county).promised_limit_source) == (3, "440100")
    assert gz.implementing_code == "440100XSECS" and gz.version >= 1
    # 深圳 (440300) is another site's region: the 广州 site's catalog says so instead of answering
    for region in ("440300", "110000"):
        with pytest.raises(grpc.RpcError) as err:
            client.catalog.GetPackage(catalog_pb2.GetPackageRequest(code="XSECS", region_code=region), timeout=10)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert f"does not serve region {region}" in err.value.details()


def test_notice_and_savings_from_the_running_suite(client):
    req = catalog_pb2.GetPackageRequest(code="KBCYD", region_code="440100", situations={"tobacco": "yes"})
    # 烟草专卖零售许可 (烟草专卖局), as GetPackage resolves the package for these situations
    tobacco = item_of(client, "KBCYD", situations={"tobacco": "yes"}, department="yc")
    notice = client.catalog.GetNotice(req, timeout=10)
    assert tobacco in [i.code for i in notice.package.items]
    assert any("烟草专卖零售许可" in line for line in notice.text)
    s = client.catalog.GetSavings(req, timeout=10)
    assert s.trips_together < s.trips_separately and s.materials_together < s.materials_separately
    with pytest.raises(grpc.RpcError) as err:
        client.catalog.GetPackage(catalog_pb2.GetPackageRequest(code="XSECS", region_code="440100",
                                                                situations={"twins": "yes"}), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_cli_against_the_running_suite(client):
    from tools import catalog_cli
    out, err = io.StringIO(), io.StringIO()
    assert catalog_cli.main(["savings", "XSECS", "--region", "440100"], out=out, err=err) == 0
    assert "减时间" in out.getvalue()
    out = io.StringIO()
    assert catalog_cli.main(["notice", "NOPE", "--region", "440100"], out=out, err=err) == 1
    assert "NOT_FOUND" in err.getvalue()
