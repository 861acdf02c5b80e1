"""Sites (issue 11): the province publishes the national base with its own overlay, each city takes
the province's published versions and puts its own overlay on top, and a case stays on the version
it started with. On the in-memory store, with the seed data: the province's and each city's data
folders are copies (a real site has its own; the province's holds no city overlay)."""
import json
import pathlib
import shutil

import pytest
import yaml

from onething.catalog.v1 import events_pb2 as catalog_events
from services.catalog import codec, definitions
from services.catalog.definitions import UpstreamVersion, VersionStatus
from services.catalog.fakes import MemoryCatalogStore
from services.catalog.store import read_catalog
from services.common.bus import RecordingBus
from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.events import from_payload
from services.common.testing import FlakyBus

DATA = pathlib.Path(__file__).resolve().parents[1] / "data"
PROVINCE, GUANGZHOU, SHENZHEN = "440000", "440100", "440300"
DRAFT, PUBLISHED, RETIRED = VersionStatus.DRAFT, VersionStatus.PUBLISHED, VersionStatus.RETIRED
NATIONAL_CODES = {"CJRFW", "ESFGH", "GCJGYS", "JYRX", "KBCYD", "KBQY", "KBYSQY", "QYQY", "QYXXBG", "SBKFW", "SH",
                  "TX", "XSECS"}


def edit(path, change):
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(doc)
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")


def card(pkg, code="110000000005"):
    return next(i for i in pkg["items"] if i["code"] == code)


def site_folder(tmp_path, name, drop=()):
    """A copy of the seed data as one site's data folder, without the overlays of regions `drop`."""
    target = tmp_path / name
    shutil.copytree(DATA, target)
    for region in drop:
        shutil.rmtree(target / "overlays" / region)
    return target


def announced(bus):
    """The package_published events a bus took, decoded: [(message, headers)]."""
    return [(from_payload(catalog_events.PackagePublished, payload), headers)
            for event_type, payload, headers in bus.published if event_type == "package_published"]


def as_received(message, site=PROVINCE):
    return codec.upstream_version(site, message)


@pytest.fixture
def province_bus():
    return RecordingBus("catalog")


@pytest.fixture
def province_data(tmp_path):
    return site_folder(tmp_path, "province", drop=(GUANGZHOU, SHENZHEN))


@pytest.fixture
def province(make_catalog, province_data, province_bus):
    c = make_catalog(province_data, bus=province_bus, site=PROVINCE)
    c.load()
    return c


@pytest.fixture
def city_data(tmp_path):
    return site_folder(tmp_path, "guangzhou")


@pytest.fixture
def city_store():
    return MemoryCatalogStore(RecordingBus("catalog"))


@pytest.fixture
def city(make_catalog, city_data, city_store):
    c = make_catalog(city_data, store=city_store, site=GUANGZHOU, upstream=PROVINCE)
    c.load()
    return c


def hand_down(city, bus, codes=None):
    """Every package_published the province's bus took, received by the city; the outcomes."""
    return [city.receive(PROVINCE, as_received(m)) for m, _ in announced(bus) if codes is None or m.code in codes]


# --- what the province publishes -------------------------------------------------------------------


def test_the_provinces_first_load_publishes_each_package_it_owns_once(province, province_bus):
    events = announced(province_bus)
    assert sorted(m.code for m, _ in events) == sorted(NATIONAL_CODES)  # not 深圳's local RCYJ
    assert {(m.version, h["site"], h["producer"]) for m, h in events} == {(1, "440100", "catalog")}
    xsecs = next(m for m, _ in events if m.code == "XSECS")
    part = json.loads(xsecs.definition_json)
    assert xsecs.name == "新生儿出生一件事" and xsecs.digest == definitions.digest(part)
    assert province.store.pending() == []  # published and removed from the outbox


def test_what_is_handed_down_is_the_base_and_the_provinces_level_without_any_citys(make_catalog, tmp_path):
    """Even a province whose folder holds its cities' overlays sends none of them."""
    bus = RecordingBus("catalog")
    folder = site_folder(tmp_path, "province")
    with open(folder / "regions.yaml", "a", encoding="utf-8") as fh:
        fh.write('"110000": 北京市\n')
    make_catalog(folder, bus=bus, site=PROVINCE).load()
    xsecs = json.loads(next(m for m, _ in announced(bus) if m.code == "XSECS").definition_json)
    assert sorted(xsecs["overlays"]) == [PROVINCE] and sorted(xsecs["bodies"]) == [PROVINCE]
    assert set(xsecs) == {"code", "home", "base", "overlays", "bodies", "departments", "fields", "regions"}
    assert "440000000011" in [i["code"] for i in xsecs["overlays"][PROVINCE]["add_items"]]
    # only the department names and form fields the province's part uses, only the province's regions
    assert "mzj" not in xsecs["departments"] and "ybj" in xsecs["departments"]
    assert {PROVINCE, GUANGZHOU, "440106", SHENZHEN} <= set(xsecs["regions"]) and "110000" not in xsecs["regions"]
    raw = read_catalog(str(DATA))
    full = definitions.build_definitions(raw)["XSECS"]
    assert len(json.dumps(xsecs, ensure_ascii=False)) < len(json.dumps(full, ensure_ascii=False))


def test_publishing_a_draft_at_the_province_publishes_it_and_reloads_and_retirements_do_not(
        province, province_data, province_bus):
    edit(province_data / "packages" / "newborn.yaml", lambda d: card(d).update(promised_limit_days=4))
    province_bus.published.clear()
    assert ("XSECS", 2, "drafted") in province.reload()
    assert announced(province_bus) == []  # a draft is not published
    province.publish("XSECS")
    [(message, _)] = announced(province_bus)
    assert (message.code, message.version) == ("XSECS", 2)
    assert card(json.loads(message.definition_json)["base"])["promised_limit_days"] == 4
    province.retire("XSECS")
    province.reload()
    assert len(announced(province_bus)) == 1


def test_when_its_api_starts_the_province_announces_what_is_published_again(make_catalog, province_data):
    bus = RecordingBus("catalog")
    store = MemoryCatalogStore(bus)
    first = make_catalog(province_data, store=store, site=PROVINCE)
    first.start()
    assert len(announced(bus)) == len(NATIONAL_CODES)  # the seed, not the seed and an announcement
    first.retire("TX")
    bus.published.clear()
    make_catalog(province_data, store=store, site=PROVINCE).start()  # the api started again
    assert sorted(m.code for m, _ in announced(bus)) == sorted(NATIONAL_CODES - {"TX"})
    assert store.pending() == []


def test_one_site_alone_and_a_city_publish_nothing(make_catalog, province, province_bus, city):
    bus = RecordingBus("catalog")
    alone = make_catalog(DATA, bus=bus)  # `make run`: 440100 with the whole data folder
    alone.start()
    assert alone.store.codes() and bus.published == []
    hand_down(city, province_bus)
    city.start()
    assert city.store.codes() and city.store.bus.published == [] and city.store.pending() == []
    assert not alone.hands_down and not city.hands_down and city.announce() == []


def test_the_province_announces_even_when_the_broker_is_away(make_catalog, province_data):
    store = MemoryCatalogStore(FlakyBus("catalog", away=True))
    make_catalog(province_data, store=store, site=PROVINCE).load()
    assert sorted(e["event_type"] for e in store.pending()) == ["package_published"] * len(NATIONAL_CODES)
    assert store.latest("XSECS", PUBLISHED).version == 1  # the seed stands; the sweep sends it later


# --- what a city does with it -----------------------------------------------------------------------


def test_a_city_without_its_provinces_versions_offers_only_its_own_packages(make_catalog, tmp_path):
    shenzhen = make_catalog(site_folder(tmp_path, "shenzhen"), site=SHENZHEN, upstream=PROVINCE)
    assert shenzhen.load() == [("RCYJ", 1, "published")]  # the base and the province's overlay are not read
    assert [p["code"] for p in shenzhen.list_packages(SHENZHEN)] == ["RCYJ"]


def test_a_city_version_is_the_provinces_with_the_citys_overlay_as_one_site_resolves_it(
        make_catalog, province, province_bus, city):
    outcomes = hand_down(city, province_bus)
    assert sorted(outcomes) == sorted((code, 1, "published") for code in NATIONAL_CODES)
    alone = make_catalog(DATA)
    alone.load()
    for code in NATIONAL_CODES:
        for region in (GUANGZHOU, "440106"):
            assert city.get_package(code, region) == alone.get_package(code, region), (code, region)
    xsecs = city.get_package("XSECS", GUANGZHOU)
    assert xsecs["levels"] == ["national", PROVINCE, GUANGZHOU] and card(xsecs)["promised_limit_source"] == GUANGZHOU
    assert card(xsecs, "110000000003")["promised_limit_source"] == PROVINCE
    [view] = city.versions("XSECS")
    assert (view["version"], view["status"], view["upstream_site"], view["upstream_version"]) == (
        1, PUBLISHED, PROVINCE, 1)


def test_shenzhen_takes_the_same_versions_with_its_own_overlay_and_keeps_its_local_package(
        make_catalog, tmp_path, province, province_bus):
    shenzhen = make_catalog(site_folder(tmp_path, "shenzhen"), site=SHENZHEN, upstream=PROVINCE)
    shenzhen.load()
    hand_down(shenzhen, province_bus)
    alone = make_catalog(DATA)
    alone.load()
    for code in NATIONAL_CODES | {"RCYJ"}:
        assert shenzhen.get_package(code, SHENZHEN) == alone.get_package(code, SHENZHEN), code
    assert card(shenzhen.get_package("XSECS", SHENZHEN))["promised_limit_days"] == 5  # not 广州's 3
    assert shenzhen.versions("RCYJ")[0]["upstream_site"] == ""


def test_the_same_publication_twice_changes_nothing(province, province_bus, city, city_store):
    [xsecs] = [m for m, _ in announced(province_bus) if m.code == "XSECS"]
    assert city.receive(PROVINCE, as_received(xsecs)) == ("XSECS", 1, "published")
    before = (city.versions("XSECS"), dict(city_store.upstreams))
    assert city.receive(PROVINCE, as_received(xsecs)) == ("XSECS", 1, "unchanged")
    assert (city.versions("XSECS"), dict(city_store.upstreams)) == before


@pytest.mark.parametrize("site", [GUANGZHOU, SHENZHEN, "450000", ""])
def test_a_city_ignores_its_own_events_and_other_sites(province, province_bus, city, city_store, site):
    [xsecs] = [m for m, _ in announced(province_bus) if m.code == "XSECS"]
    assert not city.takes_from(site)
    assert city.receive(site, as_received(xsecs, site=site)) is None
    assert city_store.upstreams == {} and city_store.codes() == []


def test_a_site_without_an_upstream_ignores_every_publication(province, province_bus):
    [xsecs] = [m for m, _ in announced(province_bus) if m.code == "XSECS"]
    assert not province.takes_from(PROVINCE) and province.receive(PROVINCE, as_received(xsecs)) is None
    assert province.store.upstreams == {}


def test_a_newer_province_version_makes_a_new_city_version_and_a_case_keeps_its_own(
        province, province_data, province_bus, city, city_store):
    hand_down(city, province_bus, {"XSECS"})
    case_version = city.get_package("XSECS", GUANGZHOU)
    edit(province_data / "packages" / "newborn.yaml", lambda d: card(d, "110000000004").update(promised_limit_days=3))
    province.reload()
    province_bus.published.clear()
    province.publish("XSECS")
    [(v2, _)] = announced(province_bus)
    assert city.receive(PROVINCE, as_received(v2)) == ("XSECS", 2, "published")
    latest = city.get_package("XSECS", GUANGZHOU)
    assert (latest["version"], card(latest, "110000000004")["promised_limit_days"]) == (2, 3)
    assert card(latest)["promised_limit_days"] == 3  # the city's overlay is still on top
    old = city.get_package("XSECS", GUANGZHOU, version=1)  # what a case on version 1 reads
    assert old == dict(case_version, status=RETIRED)
    assert [(v["version"], v["status"], v["upstream_version"]) for v in city.versions("XSECS")] == [
        (1, RETIRED, 1), (2, PUBLISHED, 2)]
    # the older province version arriving late (again) changes nothing
    assert city.receive(PROVINCE, city_store.upstream(PROVINCE, "XSECS", 1)) == ("XSECS", 2, "unchanged")
    assert len(city.versions("XSECS")) == 2


def test_a_province_version_with_the_content_the_city_has_changes_only_the_record(
        province, province_bus, city, city_store):
    [v1] = [m for m, _ in announced(province_bus) if m.code == "XSECS"]
    city.receive(PROVINCE, as_received(v1))
    v3 = UpstreamVersion(site=PROVINCE, code="XSECS", version=3, digest=v1.digest,
                         definition=json.loads(v1.definition_json))
    assert city.receive(PROVINCE, v3) == ("XSECS", 1, "unchanged")
    assert [v["version"] for v in city.versions("XSECS")] == [1] and city_store.upstream(PROVINCE, "XSECS", 3)


def test_other_content_under_a_kept_version_number_is_refused_and_the_first_kept(
        province, province_bus, city, city_store):
    [v1] = [m for m, _ in announced(province_bus) if m.code == "XSECS"]
    city.receive(PROVINCE, as_received(v1))
    changed = json.loads(v1.definition_json)
    changed["base"]["name"] = "别的"
    with pytest.raises(FailedPrecondition, match="again with other content"):
        city.receive(PROVINCE, UpstreamVersion(PROVINCE, "XSECS", 1, definitions.digest(changed), changed))
    assert city_store.upstream(PROVINCE, "XSECS", 1).digest == v1.digest
    assert city.get_package("XSECS", GUANGZHOU)["name"] == "新生儿出生一件事"


def sent(province_bus, code="XSECS"):
    [message] = [m for m, _ in announced(province_bus) if m.code == code]
    return json.loads(message.definition_json), message


@pytest.mark.parametrize("spoil, words", [
    (lambda d, m: (d, "XSECS", m.version, "0" * 64), "does not match its digest"),
    (lambda d, m: (dict(d, code="KBQY"), "XSECS", m.version, None), "defines package 'KBQY'"),
    (lambda d, m: (dict(d, home=SHENZHEN), "XSECS", m.version, None), "belongs to region '440300'"),
    (lambda d, m: (dict(d, home=GUANGZHOU), "XSECS", m.version, None), "not to a level above 440100"),
    (lambda d, m: ({k: v for k, v in d.items() if k != "base"}, "XSECS", m.version, None), "carries no definition"),
    (lambda d, m: (d, "xsecs!", m.version, None), "not a package code"),
    (lambda d, m: (d, "XSECS", 0, None), "version number"),
])
def test_a_publication_that_is_no_version_is_refused_and_not_kept(province, province_bus, city, city_store,
                                                                   spoil, words):
    definition, message = sent(province_bus)
    spoiled, code, version, digest = spoil(definition, message)
    with pytest.raises(InvalidArgument, match=words):
        city.receive(PROVINCE, UpstreamVersion(PROVINCE, code, version, digest or definitions.digest(spoiled), spoiled))
    assert city_store.upstreams == {} and city_store.codes() == []


def test_an_event_whose_definition_is_not_a_json_object_is_refused_at_the_edge():
    for text, words in (("{not json", "not JSON"), ("[1, 2]", "not a JSON object")):
        with pytest.raises(InvalidArgument, match=words):
            codec.upstream_version(PROVINCE, catalog_events.PackagePublished(code="XSECS", version=1,
                                                                             definition_json=text))


def test_a_pending_city_draft_gives_its_number_and_is_made_again_on_the_new_province_version(
        province, province_data, province_bus, city, city_data):
    hand_down(city, province_bus, {"XSECS"})
    edit(city_data / "overlays" / GUANGZHOU / "guangzhou.yaml",
         lambda d: d["packages"]["XSECS"]["promised_limit_days"].update({"110000000001": 1}))
    assert ("XSECS", 2, "drafted") in city.reload()
    edit(province_data / "packages" / "newborn.yaml", lambda d: card(d, "110000000004").update(promised_limit_days=3))
    province.reload()
    province_bus.published.clear()
    province.publish("XSECS")
    [(v2, _)] = announced(province_bus)
    assert city.receive(PROVINCE, as_received(v2)) == ("XSECS", 2, "published")
    assert [(v["version"], v["status"], v["upstream_version"]) for v in city.versions("XSECS")] == [
        (1, RETIRED, 1), (2, PUBLISHED, 2), (3, DRAFT, 2)]
    published = city.get_package("XSECS", GUANGZHOU)  # the province's change with the published overlay
    assert card(published, "110000000004")["promised_limit_days"] == 3
    assert card(published, "110000000001")["promised_limit_source"] == "national"  # the edit is not published
    draft = city.store.version("XSECS", 3).definition
    assert draft["overlays"][GUANGZHOU]["promised_limit_days"]["110000000001"] == 1
    assert draft["upstream"]["version"] == 2
    city.publish("XSECS")
    assert card(city.get_package("XSECS", GUANGZHOU), "110000000001")["promised_limit_source"] == GUANGZHOU


def test_a_province_version_the_citys_overlay_does_not_fit_is_kept_until_the_overlay_is_fixed(
        province, province_data, province_bus, city, city_data, city_store):
    hand_down(city, province_bus, {"XSECS"})
    # the province shortens 社会保障卡申领 to 2 days; 广州's overlay says 3, which would lengthen it
    edit(province_data / "overlays" / PROVINCE / "guangdong.yaml",
         lambda d: d["packages"]["XSECS"]["promised_limit_days"].update({"110000000005": 2}))
    province.reload()
    province_bus.published.clear()
    province.publish("XSECS")
    [(v2, _)] = announced(province_bus)
    with pytest.raises(FailedPrecondition, match=r"overlays of 440100 do not fit it.*only shorten"):
        city.receive(PROVINCE, as_received(v2))
    assert "only shorten" in city_store.upstream(PROVINCE, "XSECS", 2).problem
    assert [(v["version"], v["status"]) for v in city.versions("XSECS")] == [(1, PUBLISHED)]  # cases go on
    with pytest.raises(InvalidArgument, match="only shorten"):  # the reload names it too
        city.reload()
    city.start()  # but it does not keep the city's api from starting: XSECS stays as it is
    assert [(v["version"], v["status"]) for v in city.versions("XSECS")] == [(1, PUBLISHED)]
    edit(city_data / "overlays" / GUANGZHOU / "guangzhou.yaml",
         lambda d: d["packages"]["XSECS"]["promised_limit_days"].pop("110000000005"))
    assert ("XSECS", 2, "drafted") in city.reload()
    city.publish("XSECS")
    pkg = city.get_package("XSECS", GUANGZHOU)
    assert (card(pkg)["promised_limit_days"], card(pkg)["promised_limit_source"]) == (2, PROVINCE)
    assert city.versions("XSECS")[-1]["upstream_version"] == 2


def test_a_city_reload_takes_the_latest_province_version_and_its_own_edits(province, province_bus, city, city_data):
    hand_down(city, province_bus)
    assert {outcome for _, _, outcome in city.reload()} == {"unchanged"}
    edit(city_data / "overlays" / GUANGZHOU / "guangzhou.yaml",
         lambda d: d["packages"]["XSECS"]["promised_limit_days"].update({"110000000005": 2}))
    changes = {code: (version, outcome) for code, version, outcome in city.reload()}
    assert changes["XSECS"] == (2, "drafted") and changes["KBQY"] == (1, "unchanged")
    # the city's implementing bodies are its own data too: every package takes a changed one
    edit(city_data / "overlays" / GUANGZHOU / "guangzhou.yaml",
         lambda d: d["implementing_bodies"]["gaj"].update(name="广州市公安局（新）"))
    changes = {code: (version, outcome) for code, version, outcome in city.reload()}
    assert changes.pop("XSECS") == (2, "draft_updated")
    assert set(changes) == NATIONAL_CODES - {"XSECS"} and set(changes.values()) == {(2, "drafted")}
    assert city.store.version("TX", 2).definition["bodies"][GUANGZHOU]["gaj"]["name"] == "广州市公安局（新）"


def test_a_city_overlay_of_a_package_not_received_yet_waits_for_it(city, city_data, province, province_bus):
    assert city.load() == []  # 广州 has overlays for XSECS, KBCYD and SH, and nothing to put them on
    hand_down(city, province_bus, {"SH"})
    assert "440100000021" in [i["code"] for i in city.get_package("SH", GUANGZHOU)["items"]]


def test_a_local_package_may_not_take_a_code_the_province_publishes(make_catalog, tmp_path, province, province_bus):
    shenzhen = make_catalog(site_folder(tmp_path, "shenzhen"), site=SHENZHEN, upstream=PROVINCE)
    shenzhen.load()
    definition, _ = sent(province_bus, "TX")
    clash = dict(definition, code="RCYJ", base=dict(definition["base"], code="RCYJ"))
    with pytest.raises(FailedPrecondition, match="local package of 440300"):
        shenzhen.receive(PROVINCE, UpstreamVersion(PROVINCE, "RCYJ", 1, definitions.digest(clash), clash))
    assert shenzhen.get_package("RCYJ", SHENZHEN)["name"] == "人才引进落户一件事（深圳）"
    with pytest.raises(InvalidArgument, match="RCYJ is published by 440000"):
        shenzhen.reload()


def test_a_city_that_ran_alone_before_takes_over_with_its_own_overlay(make_catalog, city_data, province,
                                                                       province_bus):
    store = MemoryCatalogStore(RecordingBus("catalog"))
    make_catalog(city_data, store=store).load()  # the site ran alone: the whole folder, version 1
    city = make_catalog(city_data, store=store, site=GUANGZHOU, upstream=PROVINCE)
    assert city.receive(PROVINCE, as_received(sent(province_bus)[1])) == ("XSECS", 2, "published")
    assert [(v["version"], v["status"], v["upstream_version"]) for v in city.versions("XSECS")] == [
        (1, RETIRED, 0), (2, PUBLISHED, 1)]
    assert city.get_package("XSECS", GUANGZHOU, version=1) == dict(city.get_package("XSECS", GUANGZHOU), version=1,
                                                                   status=RETIRED)


# --- the definitions underneath ------------------------------------------------------------------------


def test_split_local_keeps_only_the_citys_own_packages_and_layer():
    raw = read_catalog(str(DATA))
    local, layer = definitions.split_local(raw, SHENZHEN)
    assert [p["code"] for _, p in local["packages"]] == ["RCYJ"]
    assert {r for _, r, _ in local["overlays"]} == {SHENZHEN}
    assert set(layer.overlays) == {"XSECS", "KBCYD"} and set(layer.overlays["XSECS"]) == {SHENZHEN}
    assert set(layer.bodies) == {SHENZHEN} and layer.region == SHENZHEN
    local, layer = definitions.split_local(raw, GUANGZHOU)
    assert local["packages"] == [] and set(layer.overlays) == {"XSECS", "KBCYD", "SH"}


def test_split_local_refuses_two_overlays_of_one_package_for_one_region(city_data):
    (city_data / "overlays" / GUANGZHOU / "again.yaml").write_text(
        "kind: overlay\nregion: '440100'\npackages:\n  XSECS: {disable_items: []}\n", encoding="utf-8")
    with pytest.raises(InvalidArgument, match="a second overlay of XSECS for region 440100"):
        definitions.split_local(read_catalog(str(city_data)), GUANGZHOU)


def test_the_layer_a_city_version_holds_is_the_one_it_was_derived_with(province, province_bus):
    definition, message = sent(province_bus)
    folder_layer = definitions.split_local(read_catalog(str(DATA)), GUANGZHOU)[1]
    derived = definitions.derive(as_received(message), folder_layer)
    held = definitions.layer_of(derived, GUANGZHOU)
    assert held.overlays == {"XSECS": folder_layer.overlays["XSECS"]} and held.bodies == folder_layer.bodies
    again = definitions.derive(as_received(message), held)
    assert definitions.digest(again) == definitions.digest(derived)
    assert definitions.built_on(derived) == {"site": PROVINCE, "version": 1, "digest": message.digest}
    assert definitions.built_on(definition) == {}


def test_levels_and_site_kinds():
    assert definitions.is_province(PROVINCE) and not definitions.is_province(GUANGZHOU)
    assert not definitions.is_province("000000") and not definitions.is_province("44")
    assert definitions.within("440106", GUANGZHOU) and definitions.within(GUANGZHOU, PROVINCE)
    assert not definitions.within(SHENZHEN, GUANGZHOU) and definitions.within(GUANGZHOU, definitions.NATIONAL)


# --- the setting, the wiring and the api's view -------------------------------------------------------


def test_the_upstream_is_a_setting_off_by_default_and_a_bad_one_is_named(monkeypatch):
    from services.common.config import SettingsError, settings
    monkeypatch.delenv("ONETHING_CATALOG_UPSTREAM", raising=False)
    monkeypatch.setenv("ONETHING_REGION", GUANGZHOU)
    assert settings().catalog_upstream == ""
    monkeypatch.setenv("ONETHING_CATALOG_UPSTREAM", PROVINCE)
    assert settings().catalog_upstream == PROVINCE
    for value, words in (("44", "not a six-digit"), (GUANGZHOU, "not a level above"), (SHENZHEN, "not a level above"),
                         ("450000", "not a level above")):
        monkeypatch.setenv("ONETHING_CATALOG_UPSTREAM", value)
        with pytest.raises(SettingsError, match=f"ONETHING_CATALOG_UPSTREAM.*{words}"):
            settings()


def test_the_wiring_takes_the_site_and_its_upstream_from_the_settings(monkeypatch):
    from services.catalog.wiring import build_catalog
    from services.common.audit import MemoryAuditLog
    monkeypatch.setenv("ONETHING_REGION", SHENZHEN)
    monkeypatch.setenv("ONETHING_CATALOG_UPSTREAM", PROVINCE)
    built = build_catalog(store=MemoryCatalogStore(), audit=MemoryAuditLog("catalog"))
    assert (built.site, built.upstream, built.hands_down) == (SHENZHEN, PROVINCE, False)
    monkeypatch.setenv("ONETHING_REGION", PROVINCE)
    monkeypatch.delenv("ONETHING_CATALOG_UPSTREAM")
    built = build_catalog(store=MemoryCatalogStore(), audit=MemoryAuditLog("catalog"))
    assert (built.site, built.upstream, built.hands_down) == (PROVINCE, "", True)


def test_list_versions_says_which_province_version_a_city_version_is_built_on(province, province_bus, city):
    from services.catalog.api import _version
    hand_down(city, province_bus, {"XSECS"})
    message = _version(city.versions("XSECS")[0])
    assert (message.upstream_site, message.upstream_version, message.version) == (PROVINCE, 1, 1)
    own = _version(province.versions("XSECS")[0])
    assert (own.upstream_site, own.upstream_version) == ("", 0)


def test_a_package_the_city_retired_stays_retired_when_the_same_version_comes_again(
        province, province_data, province_bus, city):
    [v1] = [m for m, _ in announced(province_bus) if m.code == "XSECS"]
    city.receive(PROVINCE, as_received(v1))
    city.retire("XSECS")
    assert city.receive(PROVINCE, as_received(v1)) == ("XSECS", 1, "unchanged")  # the province's api restarted
    assert [v["status"] for v in city.versions("XSECS")] == [RETIRED]
    edit(province_data / "packages" / "newborn.yaml", lambda d: card(d, "110000000004").update(promised_limit_days=3))
    province.reload()
    province_bus.published.clear()
    province.publish("XSECS")
    [(v2, _)] = announced(province_bus)
    assert city.receive(PROVINCE, as_received(v2)) == ("XSECS", 2, "published")  # a new decision of the province
    assert city.get_package("XSECS", GUANGZHOU)["version"] == 2
