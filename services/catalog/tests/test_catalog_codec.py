"""The catalog's typed contract (services.catalog.codec): the explicit tables between the strings of
the data files and the proto enums, moments as google.protobuf.Timestamp, over real gRPC; and the
readers of those fields elsewhere: intake's catalog client (which maps the enums back to the strings
services.common.forms and intake's party checks use), tools/catalog_cli and tools/client."""
import datetime
import io
import pathlib
import re
import types

import grpc
import pytest
import yaml
from google.protobuf import json_format, timestamp_pb2

from onething.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from onething.common.v1 import common_pb2
from services.catalog import codec, definitions
from services.catalog.api import CatalogApi, to_proto
from services.catalog.fakes import MemoryCatalogStore
from services.catalog.wiring import build_catalog
from services.common import forms
from services.common.audit import MemoryAuditLog
from services.common.bus import RecordingBus
from services.common.errors import InvalidArgument
from services.common.grpc_server import ApiServer
from services.intake import catalog_client as intake_catalog
from services.intake import domain as intake
from tools import catalog_cli
from tools import client as demo

DATA = pathlib.Path(__file__).resolve().parents[1] / "data"
T0 = datetime.datetime(2026, 3, 1, 8, 30, 15, 123456, tzinfo=datetime.UTC)


class Ticking:
    """A clock for the store: T0, then a minute later at each reading."""

    def __init__(self):
        self.now = T0 - datetime.timedelta(minutes=1)

    def __call__(self):
        self.now += datetime.timedelta(minutes=1)
        return self.now


def serve(catalog):
    name = catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name
    return ApiServer(0, [(catalog_pb2_grpc.add_CatalogServiceServicer_to_server, CatalogApi(catalog))], [name]).start()


@pytest.fixture(scope="module")
def seed_catalog():
    catalog = build_catalog(store=MemoryCatalogStore(RecordingBus("catalog")), audit=MemoryAuditLog("catalog"),
                            data_dir=str(DATA), serves=lambda region: True)
    catalog.load()
    return catalog


@pytest.fixture(scope="module")
def server(local_idp, seed_catalog):
    srv = serve(seed_catalog)
    yield f"127.0.0.1:{srv.port}"
    srv.stop(0)


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server) as ch:
        yield catalog_pb2_grpc.CatalogServiceStub(ch)


def every_resolution(catalog):
    """Every package of the seed in 广州 and 深圳, with its default answers and with every other
    answer to each situation (so skipped items of both reasons show up)."""
    for region in ("440100", "440300", "440106"):
        for pkg in catalog.list_packages(region):
            yield pkg["code"], region, {}
            for s in pkg["situations"]:
                for answer in s["answers"]:
                    if answer["value"] != s["answer"]:
                        yield pkg["code"], region, {s["key"]: answer["value"]}


# --- the tables ---------------------------------------------------------------------------------

@pytest.mark.parametrize("table, enum, domain_values", [
    (codec.SKIP_REASONS, catalog_pb2.SkipReason, {"situation", "switched_off"}),
    (codec.MATERIAL_FORMS, catalog_pb2.MaterialForm, set(definitions.MATERIAL_FORMS)),
    (codec.ID_KINDS, catalog_pb2.IdKind, set(definitions.ID_KINDS)),
    (codec.FIELD_TYPES, catalog_pb2.FieldType, set(forms.FIELD_TYPES)),
    (codec.FIELD_VALIDATORS, catalog_pb2.FieldValidator, set(forms.VALIDATORS) | {""}),
    (codec.RELOAD_OUTCOMES, catalog_pb2.ReloadOutcome, {"published", "drafted", "draft_updated", "unchanged"}),
])
def test_each_table_maps_every_domain_string_to_its_own_proto_value(table, enum, domain_values):
    assert set(table) == domain_values
    assert len(set(table.values())) == len(table)  # one value each: the way back is unambiguous
    named = {enum.Name(number) for number in table.values()}
    assert named | {enum.Name(0)} == set(enum.keys())  # every declared value is reachable
    assert ("" in table) == (0 in table.values())  # only "no validator" is the zero value


def test_the_proto_names_say_the_same_as_the_strings():
    assert catalog_pb2.MaterialForm.Name(codec.MATERIAL_FORMS["e-licence"]) == "MATERIAL_FORM_E_LICENCE"
    assert catalog_pb2.SkipReason.Name(codec.SKIP_REASONS["switched_off"]) == "SKIP_REASON_SWITCHED_OFF"
    assert catalog_pb2.ReloadOutcome.Name(codec.RELOAD_OUTCOMES["draft_updated"]) == "RELOAD_OUTCOME_DRAFT_UPDATED"
    for text, number in codec.FIELD_VALIDATORS.items():
        if text:
            assert catalog_pb2.FieldValidator.Name(number) == "FIELD_VALIDATOR_" + text.upper()


def test_intake_maps_every_enum_name_back_to_the_catalogs_string():
    for table, enum, back in ((codec.FIELD_TYPES, catalog_pb2.FieldType, intake_catalog.FIELD_TYPES),
                              (codec.FIELD_VALIDATORS, catalog_pb2.FieldValidator, intake_catalog.FIELD_VALIDATORS),
                              (codec.ID_KINDS, catalog_pb2.IdKind, intake_catalog.ID_KINDS),
                              (codec.MATERIAL_FORMS, catalog_pb2.MaterialForm, intake_catalog.MATERIAL_FORMS),
                              (codec.SKIP_REASONS, catalog_pb2.SkipReason, intake_catalog.SKIP_REASONS)):
        assert {enum.Name(number): text for text, number in table.items() if number} == back


def test_a_string_without_a_proto_value_is_refused_by_name():
    pkg = {"code": "X", "form_fields": [{"key": "k", "type": "money"}]}
    with pytest.raises(ValueError, match=re.escape("form field k: type 'money' has no onething.catalog.v1 value")):
        codec.package(pkg)
    with pytest.raises(ValueError, match="'fax'"):
        codec.package({"materials": [{"code": "M1", "forms": ["paper", "fax"]}]})
    with pytest.raises(ValueError, match="reload outcome 'lost'"):
        codec.reload_change("X", 1, "lost")


def test_a_field_without_type_or_validator_is_a_string_without_validator():
    field = codec.package({"form_fields": [{"key": "k"}]})["form_fields"][0]
    assert (field["type"], field["validator"]) == (catalog_pb2.FIELD_TYPE_STRING, catalog_pb2.FIELD_VALIDATOR_UNSPECIFIED)
    party = codec.package({"parties": [{"role": "buyer", "name": "买方"}]})["parties"][0]
    assert party["id_kind"] == catalog_pb2.ID_KIND_ANY


def test_every_value_round_trips_through_the_wire_and_intakes_client():
    pkg = {"code": "X", "name": "n", "version": 1, "status": definitions.VersionStatus.PUBLISHED,
           "form_fields": [{"key": f"{t}_{v or 'none'}", "label": "l", "type": t, "required": True, "validator": v,
                            "choices": [], "item_codes": []}
                           for t in forms.FIELD_TYPES for v in ("", *forms.VALIDATORS)],
           "materials": [{"code": "M1", "name": "m", "forms": list(definitions.MATERIAL_FORMS), "item_codes": ["I"]}],
           "waived_materials": [{"code": "M2", "name": "m", "forms": ["e-licence"], "item_codes": ["I"]}],
           "parties": [{"role": f"r_{k}", "name": "p", "id_kind": k, "required": False} for k in definitions.ID_KINDS],
           "skipped_items": [{"code": "I2", "name": "i", "reason": r, "source_level": "national", "detail": "d"}
                             for r in codec.SKIP_REASONS]}
    wire = catalog_pb2.Package.FromString(to_proto(pkg).SerializeToString())
    back = intake_catalog.package_dict(wire)
    assert [(f["key"], f["type"], f.get("validator", "")) for f in back["form_fields"]] == [
        (f["key"], f["type"], f["validator"]) for f in pkg["form_fields"]]
    assert [m["forms"] for m in back["materials"] + back["waived_materials"]] == [
        list(definitions.MATERIAL_FORMS), ["e-licence"]]
    assert [p["id_kind"] for p in back["parties"]] == list(definitions.ID_KINDS)
    assert [s["reason"] for s in back["skipped_items"]] == list(codec.SKIP_REASONS)
    assert back["status"] == "VERSION_STATUS_PUBLISHED"


def test_intakes_client_leaves_a_value_it_does_not_know_as_it_came():
    msg = catalog_pb2.Package(form_fields=[catalog_pb2.FormField(key="k", type=99, validator=98)])
    field = intake_catalog.package_dict(msg)["form_fields"][0]
    assert (field["type"], field["validator"]) == (99, 98)


# --- moments --------------------------------------------------------------------------------------

@pytest.mark.parametrize("given, utc", [
    ("2026-03-01T08:30:15.123456+00:00", T0),
    ("2026-03-01T16:30:15.123456+08:00", T0),                       # another offset: the same moment
    ("2026-03-01T08:30:15.123456", T0),                             # no offset (MongoDB's naive UTC)
    (T0, T0),
    (T0.replace(tzinfo=None), T0),
    (datetime.datetime(2026, 3, 1, 8, 30, tzinfo=datetime.UTC), datetime.datetime(2026, 3, 1, 8, 30, tzinfo=datetime.UTC)),
])
def test_a_moment_round_trips_through_a_timestamp(given, utc):
    ts = codec.timestamp(given)
    assert ts.ToDatetime(tzinfo=datetime.UTC) == utc
    assert codec.iso(ts) == utc.isoformat()
    assert datetime.datetime.fromisoformat(codec.iso(ts)) == utc
    assert codec.timestamp(codec.iso(ts)) == ts
    parsed = json_format.Parse(f'"{ts.ToJsonString()}"', timestamp_pb2.Timestamp())
    assert parsed == ts


def test_an_unset_moment_is_no_timestamp():
    assert codec.timestamp("") is None and codec.timestamp(None) is None
    assert codec.iso(None) == "" and codec.iso(timestamp_pb2.Timestamp()) == ""
    view = {"code": "X", "version": 1, "status": definitions.VersionStatus.DRAFT, "digest": "d", "name": "n",
            "created_at": T0.isoformat(), "published_at": "", "retired_at": ""}
    encoded = codec.version(view)
    assert "published_at" not in encoded and "retired_at" not in encoded
    msg = json_format.ParseDict(encoded, catalog_pb2.PackageVersion())
    assert msg.HasField("created_at") and not msg.HasField("published_at") and not msg.HasField("retired_at")
    assert msg.created_at.ToDatetime(tzinfo=datetime.UTC) == T0 and msg.status == catalog_pb2.VERSION_STATUS_DRAFT


def test_a_moment_that_is_not_iso_8601_is_refused():
    with pytest.raises(ValueError):
        codec.timestamp("yesterday")


# --- over gRPC --------------------------------------------------------------------------------------

def test_every_package_travels_with_the_strings_of_its_data_files(stub, seed_catalog):
    seen = {"reason": set(), "forms": set(), "id_kind": set(), "type": set(), "validator": set()}
    for code, region, situations in every_resolution(seed_catalog):
        want = seed_catalog.get_package(code, region, situations)
        got = stub.GetPackage(catalog_pb2.GetPackageRequest(code=code, region_code=region, situations=situations),
                              timeout=5)
        assert [(s.code, codec.SKIP_REASON_OF[s.reason]) for s in got.skipped_items] == [
            (s["code"], s["reason"]) for s in want["skipped_items"]]
        for key in ("materials", "waived_materials"):
            assert [(m.code, [codec.MATERIAL_FORM_OF[f] for f in m.forms]) for m in getattr(got, key)] == [
                (m["code"], m["forms"]) for m in want[key]]
        assert [(p.role, codec.ID_KIND_OF[p.id_kind]) for p in got.parties] == [
            (p["role"], p["id_kind"]) for p in want["parties"]]
        assert [(f.key, codec.FIELD_TYPE_OF[f.type], codec.FIELD_VALIDATOR_OF[f.validator]) for f in got.form_fields] == [
            (f["key"], f["type"], f["validator"]) for f in want["form_fields"]]
        seen["reason"] |= {s["reason"] for s in want["skipped_items"]}
        seen["forms"] |= {f for m in want["materials"] + want["waived_materials"] for f in m["forms"]}
        seen["id_kind"] |= {p["id_kind"] for p in want["parties"]}
        seen["type"] |= {f["type"] for f in want["form_fields"]}
        seen["validator"] |= {f["validator"] for f in want["form_fields"]}
    # the seed uses every value but bool (no field of it is a yes/no question; the round trip below
    # has one), so the comparison above covered the other entries of every table
    assert seen == {"reason": set(codec.SKIP_REASONS), "forms": set(codec.MATERIAL_FORMS),
                    "id_kind": set(codec.ID_KINDS), "type": set(codec.FIELD_TYPES) - {"bool"},
                    "validator": set(codec.FIELD_VALIDATORS)}


def test_the_notice_carries_the_same_typed_package(stub):
    req = catalog_pb2.GetPackageRequest(code="XSECS", region_code="440100", situations={"maternity": "no"})
    notice = stub.GetNotice(req, timeout=5)
    assert notice.package == stub.GetPackage(req, timeout=5)
    assert catalog_pb2.SKIP_REASON_SITUATION in [s.reason for s in notice.package.skipped_items]


def test_intakes_client_reads_the_package_as_the_catalog_resolves_it(server, seed_catalog):
    client = intake_catalog.CatalogClient(server)
    for code, region, situations in every_resolution(seed_catalog):
        want = seed_catalog.get_package(code, region, situations)
        got = client.get_package(code, region, situations)
        for f, w in zip(got.get("form_fields", []), want["form_fields"], strict=True):
            assert (f["key"], f["type"], f.get("validator", "")) == (w["key"], w["type"], w["validator"])
        assert [(p["role"], p["id_kind"]) for p in got.get("parties", [])] == [
            (p["role"], p["id_kind"]) for p in want["parties"]]
        for key in ("materials", "waived_materials"):
            assert [(m["code"], m["forms"]) for m in got.get(key, [])] == [(m["code"], m["forms"]) for m in want[key]]
        assert [(s["code"], s["reason"]) for s in got.get("skipped_items", [])] == [
            (s["code"], s["reason"]) for s in want["skipped_items"]]


def test_intakes_form_and_party_checks_still_refuse_through_the_client(server):
    pkg = intake_catalog.CatalogClient(server).get_package("XSECS", "440100")
    fields = {f["key"]: f for f in pkg["form_fields"]}
    assert fields["birth_date"]["type"] == "date" and fields["mother_id"]["validator"] == "citizen_id"
    with pytest.raises(InvalidArgument, match=r"birth_date|出生日期"):
        intake.check_form(pkg["form_fields"], {"child_name": "李小明", "birth_date": "2026-13-01"})
    with pytest.raises(InvalidArgument, match=r"mother_id|母亲"):
        intake.check_form(pkg["form_fields"], {"child_name": "李小明", "birth_date": "2026-11-20",
                                               "mother_id": "11010519491231002Y"})
    sale = intake_catalog.CatalogClient(server).get_package("KBQY", "440100")
    enterprise = next(p for p in sale["parties"] if p["id_kind"] == "credit_code")
    with pytest.raises(InvalidArgument, match=r"credit code|信用代码"):
        intake.check_parties(sale, [{"role": enterprise["role"], "name": "某某公司", "id_number": "11010519491231002X"}])


def test_the_demo_client_fills_every_packages_form_and_parties_so_that_intake_accepts_them(stub, seed_catalog):
    applicant = types.SimpleNamespace(id_number="11010519491231002X", name="张三")
    enterprise = types.SimpleNamespace(id_number="91350100M000100Y43", name="某某有限公司")
    for code, region, situations in every_resolution(seed_catalog):
        pkg = stub.GetPackage(catalog_pb2.GetPackageRequest(code=code, region_code=region, situations=situations),
                              timeout=5)
        who = enterprise if pkg.audience == catalog_pb2.AUDIENCE_ENTERPRISE else applicant
        parties = demo.demo_parties(pkg, who)
        form = demo.demo_form(pkg, who, parties)
        as_intake = intake_catalog.package_dict(pkg)
        assert forms.refusals(forms.check(as_intake.get("form_fields", []), form)) == [], (code, region, situations)
        intake.check_parties(as_intake, [json_format.MessageToDict(p, preserving_proto_field_name=True)
                                         for p in parties])
        assert all(isinstance(p, common_pb2.Party) for p in parties)


def test_an_enum_number_the_request_does_not_declare_is_invalid_argument(stub):
    with pytest.raises(grpc.RpcError) as err:
        stub.ListPackages(catalog_pb2.ListPackagesRequest(region_code="440100", audience=9), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "audience" in err.value.details() and "onething.catalog.v1.Audience" in err.value.details()


@pytest.fixture
def versioned(local_idp, data):
    """A catalog on the in-memory store with a clock a minute on at each reading, behind real gRPC,
    loaded from a copy of the seed (its `data` folder)."""
    clock = Ticking()
    catalog = build_catalog(store=MemoryCatalogStore(RecordingBus("catalog"), clock=clock),
                            audit=MemoryAuditLog("catalog"), data_dir=str(data), serves=lambda region: True)
    srv = serve(catalog)
    with grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
        yield catalog_pb2_grpc.CatalogServiceStub(ch), local_idp.metadata("op-1", "operator", region="440100"), \
            f"127.0.0.1:{srv.port}"
    srv.stop(0)


def edit(path, change):
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(doc)
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")


def social_card_days(days):
    return lambda doc: next(i for i in doc["items"] if i["code"] == "110000000005").update(promised_limit_days=days)


def _utc(ts):
    return ts.ToDatetime(tzinfo=datetime.UTC)


def test_versions_carry_timestamps_and_reload_outcomes_over_grpc(versioned, data):
    stub, operator, address = versioned
    first = stub.ReloadCatalog(catalog_pb2.ReloadCatalogRequest(), timeout=10, metadata=operator).changes
    assert {c.outcome for c in first} == {catalog_pb2.RELOAD_OUTCOME_PUBLISHED}
    path = data / "packages" / "newborn.yaml"
    edit(path, social_card_days(4))
    changes = {c.code: c for c in stub.ReloadCatalog(catalog_pb2.ReloadCatalogRequest(), timeout=10,
                                                     metadata=operator).changes}
    assert (changes["XSECS"].version, changes["XSECS"].outcome) == (2, catalog_pb2.RELOAD_OUTCOME_DRAFTED)
    assert changes["KBQY"].outcome == catalog_pb2.RELOAD_OUTCOME_UNCHANGED
    edit(path, social_card_days(5))  # back as version 1 has it: still a change of the draft
    again = {c.code: c for c in stub.ReloadCatalog(catalog_pb2.ReloadCatalogRequest(), timeout=10,
                                                   metadata=operator).changes}
    assert again["XSECS"].outcome == catalog_pb2.RELOAD_OUTCOME_DRAFT_UPDATED

    v1, v2 = stub.ListVersions(catalog_pb2.ListVersionsRequest(code="XSECS"), timeout=5, metadata=operator).versions
    assert v1.HasField("published_at") and not v1.HasField("retired_at")
    assert _utc(v1.created_at) == _utc(v1.published_at) and _utc(v1.created_at).microsecond == T0.microsecond
    assert v2.HasField("created_at") and not v2.HasField("published_at") and _utc(v2.created_at) > _utc(v1.created_at)

    published = stub.PublishPackage(catalog_pb2.PublishPackageRequest(code="XSECS"), timeout=5, metadata=operator)
    assert published.status == catalog_pb2.VERSION_STATUS_PUBLISHED and _utc(published.published_at) > _utc(v2.created_at)
    v1, v2 = stub.ListVersions(catalog_pb2.ListVersionsRequest(code="XSECS"), timeout=5, metadata=operator).versions
    assert v1.status == catalog_pb2.VERSION_STATUS_RETIRED and _utc(v1.retired_at) > _utc(v2.published_at) - \
        datetime.timedelta(minutes=1)
    retired = stub.RetirePackage(catalog_pb2.RetirePackageRequest(code="XSECS"), timeout=5, metadata=operator)
    assert retired.HasField("retired_at") and _utc(retired.retired_at) > _utc(v1.retired_at)
    assert _utc(retired.published_at) == _utc(published.published_at)

    out, err = io.StringIO(), io.StringIO()
    assert catalog_cli.main(["versions", "XSECS"], address=address, out=out, err=err) == 0, err.getvalue()
    lines = out.getvalue().splitlines()
    assert f"published {v1.published_at.ToJsonString()} retired {v1.retired_at.ToJsonString()}" in lines[0]
    assert lines[1].split()[2] == "retired" and lines[1].endswith(f"retired {retired.retired_at.ToJsonString()}")
    out = io.StringIO()
    assert catalog_cli.main(["reload"], address=address, out=out, err=err) == 0
    assert {line.split()[-1] for line in out.getvalue().splitlines()} == {"unchanged"}


def test_the_cli_shows_an_unset_moment_as_a_dash(versioned):
    stub, operator, address = versioned
    stub.ReloadCatalog(catalog_pb2.ReloadCatalogRequest(), timeout=10, metadata=operator)
    out, err = io.StringIO(), io.StringIO()
    assert catalog_cli.main(["versions", "XSECS"], address=address, out=out, err=err) == 0, err.getvalue()
    assert out.getvalue().rstrip().endswith("retired -") and "published 2026-03-01T08:" in out.getvalue()


def test_to_proto_is_the_package_the_api_answers(stub, seed_catalog):
    pkg = seed_catalog.get_package("ESFGH", "440100")
    assert to_proto(pkg) == stub.GetPackage(catalog_pb2.GetPackageRequest(code="ESFGH", region_code="440100"),
                                            timeout=5)
