"""The catalog api over real gRPC (an in-process server on a free port, in-memory store) and the
command-line tool against it."""
import io
import pathlib
import socket

import grpc
import pytest

from onething.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from services.catalog import codec
from services.catalog.api import CatalogApi
from services.common.grpc_server import ApiServer
from tools import catalog_cli

DATA = pathlib.Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def server(local_idp, make_catalog):
    catalog = make_catalog(DATA)
    catalog.load()
    name = catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name
    srv = ApiServer(0, [(catalog_pb2_grpc.add_CatalogServiceServicer_to_server, CatalogApi(catalog))], [name]).start()
    yield f"127.0.0.1:{srv.port}"
    srv.stop(0)


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server) as ch:
        yield catalog_pb2_grpc.CatalogServiceStub(ch)


def test_get_package_over_grpc(stub):
    pkg = stub.GetPackage(catalog_pb2.GetPackageRequest(code="XSECS", region_code="440100"), timeout=5)
    assert [i.code for i in pkg.items][:2] == ["110000000001", "110000000002"]
    assert pkg.audience == catalog_pb2.AUDIENCE_PERSON and pkg.status == catalog_pb2.VERSION_STATUS_PUBLISHED
    assert pkg.implementing_code == "440100XSECS" and list(pkg.levels) == ["national", "440000", "440100"]
    card = next(i for i in pkg.items if i.code == "110000000005")
    assert (card.promised_limit_days, card.promised_limit_source) == (3, "440100")
    assert card.implementing_body.name == "广州市人力资源和社会保障局"
    assert {f.key for f in pkg.form_fields} >= {"child_name", "birth_date", "mother_id"}
    assert next(m for m in pkg.materials if m.code == "M04").item_codes == ["110000000006"]


def test_get_package_for_another_city_keeps_the_national_limit(stub):
    pkg = stub.GetPackage(catalog_pb2.GetPackageRequest(code="XSECS", region_code="440300"), timeout=5)
    card = next(i for i in pkg.items if i.code == "110000000005")
    assert (card.promised_limit_days, card.promised_limit_source) == (5, "national")


def test_situations_and_held_licences_over_grpc(stub):
    pkg = stub.GetPackage(catalog_pb2.GetPackageRequest(code="KBCYD", region_code="440300", situations={
        "tobacco": "yes"}, held_license_types=["111"]), timeout=5)
    assert "130000000004" in [i.code for i in pkg.items]
    assert [m.code for m in pkg.waived_materials] == ["R01"]


@pytest.mark.parametrize("request_, code, words", [
    (dict(code="XSECS", region_code="440100", situations={"twins": "yes"}), grpc.StatusCode.INVALID_ARGUMENT, "twins"),
    (dict(code="XSECS", region_code="440100", situations={"maternity": "x"}), grpc.StatusCode.INVALID_ARGUMENT,
     "maternity"),
    (dict(code="XSECS", region_code="4401"), grpc.StatusCode.INVALID_ARGUMENT, "6-digit"),
    (dict(code="NOPE", region_code="440100"), grpc.StatusCode.NOT_FOUND, "NOPE"),
    (dict(code="RCYJ", region_code="440100"), grpc.StatusCode.NOT_FOUND, "RCYJ"),
    (dict(code="XSECS", region_code="440100", version=5), grpc.StatusCode.NOT_FOUND, "version 5"),
])
def test_get_package_errors(stub, request_, code, words):
    with pytest.raises(grpc.RpcError) as err:
        stub.GetPackage(catalog_pb2.GetPackageRequest(**request_), timeout=5)
    assert err.value.code() == code and words in err.value.details()


def test_notice_savings_and_form_over_grpc(stub):
    req = catalog_pb2.GetPackageRequest(code="XSECS", region_code="440100")
    notice = stub.GetNotice(req, timeout=5)
    assert notice.package == stub.GetPackage(req, timeout=5)
    assert notice.savings.trips_together == 1 and notice.steps[-1].name.startswith("统一出件")
    assert any("一套材料" in line for line in notice.text)
    s = stub.GetSavings(req, timeout=5)
    assert (s.working_days_separately, s.working_days_together, s.materials_separately, s.materials_together) == (
        14, 7, 10, 4)
    checked = stub.CheckForm(catalog_pb2.CheckFormRequest(package=req, values={"child_name": "李小明",
                                                                                "birth_date": "2026-13-01"}), timeout=5)
    assert not checked.ok and [p.key for p in checked.problems] == ["birth_date"]


def test_list_by_audience_and_versions_over_grpc(stub, local_idp):
    resp = stub.ListPackages(catalog_pb2.ListPackagesRequest(region_code="440300",
                                                             audience=catalog_pb2.AUDIENCE_PERSON), timeout=5)
    assert "RCYJ" in [p.code for p in resp.packages] and "KBQY" not in [p.code for p in resp.packages]
    operator = local_idp.metadata("op-1", "operator", region="440100")
    versions = stub.ListVersions(catalog_pb2.ListVersionsRequest(code="XSECS"), timeout=5, metadata=operator).versions
    assert [(v.version, v.status) for v in versions] == [(1, catalog_pb2.VERSION_STATUS_PUBLISHED)]
    changes = stub.ReloadCatalog(catalog_pb2.ReloadCatalogRequest(), timeout=10, metadata=operator).changes
    assert {codec.RELOAD_OUTCOME_OF[c.outcome] for c in changes} == {"unchanged"}
    with pytest.raises(grpc.RpcError) as err:
        stub.PublishPackage(catalog_pb2.PublishPackageRequest(code="XSECS"), timeout=5, metadata=operator)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as err:
        stub.RetirePackage(catalog_pb2.RetirePackageRequest(code="NOPE"), timeout=5, metadata=operator)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("who, code", [
    (None, grpc.StatusCode.UNAUTHENTICATED),
    (("44010619900101123X", "applicant", "", ""), grpc.StatusCode.PERMISSION_DENIED),
    (("officer-1", "officer", "gaj", "440100"), grpc.StatusCode.PERMISSION_DENIED),
    (("op-sz", "operator", "", "440300"), grpc.StatusCode.PERMISSION_DENIED),   # another city
    (("op-gz-district", "operator", "", "440106"), grpc.StatusCode.PERMISSION_DENIED),  # below the site
])
def test_catalog_changes_are_for_operators_of_the_sites_region(stub, local_idp, who, code):
    metadata = local_idp.metadata(*who) if who else ()
    for call, request in ((stub.ReloadCatalog, catalog_pb2.ReloadCatalogRequest()),
                          (stub.RetirePackage, catalog_pb2.RetirePackageRequest(code="XSECS")),
                          (stub.PublishPackage, catalog_pb2.PublishPackageRequest(code="XSECS"))):
        with pytest.raises(grpc.RpcError) as err:
            call(request, timeout=5, metadata=metadata)
        assert err.value.code() == code, err.value.details()
    versions = stub.ListVersions(catalog_pb2.ListVersionsRequest(code="XSECS"), timeout=5,
                                 metadata=local_idp.metadata("sre-1", "sre")).versions
    assert [v.status for v in versions] == [catalog_pb2.VERSION_STATUS_PUBLISHED]  # nothing retired


def test_an_operator_of_the_province_may_change_a_city_sites_catalog(stub, local_idp):
    province = local_idp.metadata("op-gd", "operator", region="440000")
    changes = stub.ReloadCatalog(catalog_pb2.ReloadCatalogRequest(), timeout=10, metadata=province).changes
    assert {codec.RELOAD_OUTCOME_OF[c.outcome] for c in changes} == {"unchanged"}


# --- the command line --------------------------------------------------------------------------

def cli(server, *argv):
    out, err = io.StringIO(), io.StringIO()
    rc = catalog_cli.main(list(argv), address=server, out=out, err=err)
    return rc, out.getvalue(), err.getvalue()


def test_cli_notice(server):
    rc, out, err = cli(server, "notice", "XSECS", "--region", "440100", "--situation", "maternity=no")
    assert rc == 0 and err == ""
    assert "【新生儿出生一件事】XSECS 第1版 · 广州市（440100）" in out
    assert "社会保障卡申领 — 广州市人力资源和社会保障局" in out and "承诺3个工作日（440100）" in out
    assert "情形不适用" not in out.split("四、")[0].split("三、")[0]  # situations listed with answers
    assert "生育医疗费用报销：情形不适用（需 maternity=yes）" in out
    assert "减跑动" in out


def test_cli_savings(server):
    rc, out, _ = cli(server, "savings", "XSECS", "--region", "440100")
    assert rc == 0
    assert "减时间" in out and "14 → 7" in out and "10 → 4" in out and "12 → 1" in out


def test_cli_list(server):
    rc, out, _ = cli(server, "list", "--region", "440300", "--audience", "person")
    assert rc == 0 and "RCYJ" in out and "XSECS" in out and "KBQY" not in out


def test_cli_staff_commands_carry_an_operators_token(server):
    rc, out, err = cli(server, "versions", "XSECS")  # minted locally for an operator of the site's region
    assert rc == 0 and "XSECS v1 published" in out, err
    rc, out, _ = cli(server, "reload")
    assert rc == 0 and "unchanged" in out
    rc, _, err = cli(server, "--operator-region", "440300", "reload")
    assert rc == 1 and "PERMISSION_DENIED" in err
    rc, _, err = cli(server, "--token", "not-a-token", "versions", "XSECS")
    assert rc == 1 and "UNAUTHENTICATED" in err


def test_cli_unknown_package_is_one_line_and_exit_1(server):
    rc, out, err = cli(server, "notice", "NOPE", "--region", "440100")
    assert rc == 1 and out == "" and err.count("\n") == 1 and "NOT_FOUND" in err and "NOPE" in err


def test_cli_bad_situation_is_exit_1(server):
    rc, _, err = cli(server, "savings", "XSECS", "--region", "440100", "--situation", "twins=yes")
    assert rc == 1 and "INVALID_ARGUMENT" in err and "twins" in err


def test_cli_situation_without_equals_is_refused(server):
    with pytest.raises(SystemExit, match="key=value"):
        cli(server, "notice", "XSECS", "--situation", "maternity")


def test_cli_api_down_is_one_line_and_exit_2():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rc, out, err = cli(f"127.0.0.1:{port}", "list", "--region", "440100")
    assert rc == 2 and out == "" and err.count("\n") == 1 and "cannot be reached" in err


def test_parties_holders_and_supersedes_travel_over_grpc(stub):
    pkg = stub.GetPackage(catalog_pb2.GetPackageRequest(code="ESFGH", region_code="440100"), timeout=5)
    assert [(p.role, p.name, codec.ID_KIND_OF[p.id_kind], p.required) for p in pkg.parties][:2] == [
        ("buyer", "买方", "any", True), ("seller", "卖方", "any", True)]
    transfer = next(i for i in pkg.items if i.code == "160000000002")
    assert transfer.result.holder_party == "buyer"
    assert (transfer.result.supersedes.party, transfer.result.supersedes.license_type_code) == ("seller", "BDCQZ")
    assert transfer.implementing_body.name == "广州市规划和自然资源局"
    assert next(m for m in pkg.materials if m.code == "H02").party == "seller"
