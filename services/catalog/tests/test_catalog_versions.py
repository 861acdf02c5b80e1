"""Versions and reloading: draft -> published -> retired, a published version never changes, a case
stays on its version, one site alone (440100, the default) publishes no events (a province's
package_published: test_catalog_sites.py), and data folders that do not validate are refused as a
whole."""
import pathlib

import pytest
import yaml

from services.catalog.definitions import VersionStatus
from services.catalog.fakes import MemoryCatalogStore
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.common.testing import FlakyBus

DATA = pathlib.Path(__file__).resolve().parents[1] / "data"


def edit(path, change):
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(doc)
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")


def newborn_item(doc, code):
    return next(i for i in doc["items"] if i["code"] == code)


def shorten_social_card(days):
    return lambda doc: newborn_item(doc, "110000000005").update(promised_limit_days=days)


def test_first_load_publishes_version_one_of_every_package_and_emits_no_event(catalog, bus):
    codes = catalog.store.codes()
    assert len(codes) >= 12
    assert {catalog.versions(c)[0]["status"] for c in codes} == {VersionStatus.PUBLISHED}
    assert catalog.get_package("RCYJ", "440300")["version"] == 1
    assert bus.published == [] and catalog.store.pending() == []


def test_reloading_unchanged_files_changes_nothing(catalog, bus):
    before = len(bus.published)
    changes = catalog.reload()
    assert {o for _, _, o in changes} == {"unchanged"}
    assert len(bus.published) == before
    assert [v["version"] for v in catalog.versions("XSECS")] == [1]


def test_an_edit_becomes_a_draft_and_the_published_version_stays(catalog, data, bus):
    edit(data / "packages" / "newborn.yaml", shorten_social_card(4))
    changes = {c: (v, o) for c, v, o in catalog.reload()}
    assert changes["XSECS"] == (2, "drafted") and changes["KBQY"][1] == "unchanged"
    pkg = catalog.get_package("XSECS", "440300")
    assert pkg["version"] == 1
    assert next(i for i in pkg["items"] if i["code"] == "110000000005")["promised_limit_days"] == 5
    assert bus.published == []
    with pytest.raises(FailedPrecondition, match="draft"):
        catalog.get_package("XSECS", "440300", version=2)


def test_a_second_edit_replaces_the_draft(catalog, data):
    edit(data / "packages" / "newborn.yaml", shorten_social_card(4))
    catalog.reload()
    edit(data / "packages" / "newborn.yaml", shorten_social_card(6))
    assert ("XSECS", 2, "draft_updated") in catalog.reload()
    assert [(v["version"], v["status"]) for v in catalog.versions("XSECS")] == [
        (1, VersionStatus.PUBLISHED), (2, VersionStatus.DRAFT)]


def test_overlay_edit_also_makes_a_draft(catalog, data):
    edit(data / "overlays" / "440300" / "shenzhen.yaml",
         lambda doc: doc["packages"]["XSECS"]["promised_limit_days"].update({"110000000005": 4}))
    assert ("XSECS", 2, "drafted") in catalog.reload()


def test_publish_makes_the_draft_current_and_a_case_keeps_its_version(catalog, data, bus):
    edit(data / "packages" / "newborn.yaml", shorten_social_card(4))
    catalog.reload()
    published = catalog.publish("XSECS")
    assert (published["version"], published["status"]) == (2, VersionStatus.PUBLISHED)
    assert published["published_at"]
    assert bus.published == []  # nothing consumes a publication: cases carry their version's snapshot
    latest = catalog.get_package("XSECS", "440300")
    old = catalog.get_package("XSECS", "440300", version=1)
    card = lambda pkg: next(i for i in pkg["items"] if i["code"] == "110000000005")
    assert (latest["version"], card(latest)["promised_limit_days"]) == (2, 4)
    assert (old["version"], card(old)["promised_limit_days"], old["status"]) == (1, 5, VersionStatus.RETIRED)
    # reloading the same files now finds them equal to version 2
    assert ("XSECS", 2, "unchanged") in catalog.reload()


def test_publish_without_a_draft_is_refused(catalog):
    with pytest.raises(FailedPrecondition, match="no draft"):
        catalog.publish("XSECS")
    with pytest.raises(FailedPrecondition, match="published, not a draft"):
        catalog.publish("XSECS", 1)
    with pytest.raises(NotFound, match="NOPE"):
        catalog.publish("NOPE")


def test_retire_withdraws_the_package_and_reload_does_not_bring_it_back(catalog):
    retired = catalog.retire("XSECS")
    assert (retired["version"], retired["status"]) == (1, VersionStatus.RETIRED)
    with pytest.raises(NotFound, match="retired"):
        catalog.get_package("XSECS", "440100")
    assert "XSECS" not in [p["code"] for p in catalog.list_packages("440100")]
    assert catalog.get_package("XSECS", "440100", version=1)["version"] == 1  # cases on it still read it
    assert ("XSECS", 1, "unchanged") in catalog.reload()
    assert catalog.retire("XSECS", 1)["status"] == VersionStatus.RETIRED  # idempotent


def test_retire_refuses_a_draft_and_unknown_versions(catalog, data):
    edit(data / "packages" / "newborn.yaml", shorten_social_card(4))
    catalog.reload()
    with pytest.raises(FailedPrecondition, match="draft"):
        catalog.retire("XSECS", 2)
    with pytest.raises(NotFound, match="version 9"):
        catalog.retire("XSECS", 9)
    with pytest.raises(NotFound, match="NOPE"):
        catalog.retire("NOPE")


def test_unknown_version_is_not_found(catalog):
    with pytest.raises(NotFound, match="no version 7"):
        catalog.get_package("XSECS", "440100", version=7)
    with pytest.raises(NotFound):
        catalog.versions("NOPE")


def test_loading_and_publishing_need_no_broker(data, make_catalog):
    store = MemoryCatalogStore(FlakyBus("catalog", away=True))
    catalog = make_catalog(data, store=store)
    catalog.load()
    edit(data / "packages" / "newborn.yaml", shorten_social_card(4))
    catalog.reload()
    assert catalog.publish("XSECS")["version"] == 2
    assert store.pending() == []


# --- refused data: nothing changes -------------------------------------------------------------

@pytest.mark.parametrize("path, change, words", [
    ("overlays/440100/guangzhou.yaml",
     lambda d: d["packages"]["XSECS"]["promised_limit_days"].update({"110000000005": 9}), "only shorten"),
    ("overlays/440300/shenzhen.yaml", lambda d: d["packages"]["XSECS"]["disable_items"].append("110000000003"),
     "only optional items"),
    ("overlays/440300/shenzhen.yaml", lambda d: d["implementing_bodies"]["gaj"].update(credit_code="11440300987825707A"),
     "check character"),
    ("overlays/440300/shenzhen.yaml", lambda d: d["packages"].update({"NOPE": {}}), "no data file defines"),
    ("overlays/440300/shenzhen.yaml", lambda d: d["packages"]["XSECS"].update(lengthen={}), "unknown keys"),
    ("overlays/440300/shenzhen.yaml", lambda d: d["packages"]["XSECS"].update(implementing_code="bad-code"),
     "0-9A-Z"),
    ("overlays/440300/shenzhen.yaml", lambda d: d.update(region="440100"), "folder"),
    ("packages/newborn.yaml", lambda d: newborn_item(d, "110000000003").update(code="1100003"), "12-character"),
    ("packages/newborn.yaml", lambda d: newborn_item(d, "110000000003").update(promised_limit_days=11),
     "longer than the statutory"),
    ("packages/newborn.yaml", lambda d: newborn_item(d, "110000000006").update(when={"twins": "yes"}),
     "situation twins"),
    ("packages/newborn.yaml", lambda d: newborn_item(d, "110000000006").update(when={"maternity": "maybe"}),
     "not an answer"),
    ("packages/newborn.yaml", lambda d: d["situations"][0].update(default="maybe"), "default"),
    ("packages/newborn.yaml", lambda d: d["materials"][0].update(forms=["fax"]), "forms"),
    ("packages/newborn.yaml", lambda d: d["materials"][3].update(forms=["e-licence"]), "license_type_code"),
    ("packages/newborn.yaml", lambda d: newborn_item(d, "110000000003").update(form_fields=["shoe_size"]),
     "shoe_size"),
    ("packages/newborn.yaml", lambda d: newborn_item(d, "110000000003").update(result={"type": "RESULT_TYPE_GIFT"}),
     "result type"),
    ("packages/newborn.yaml", lambda d: d.update(audience="AUDIENCE_ROBOT"), "audience"),
    ("packages/newborn.yaml", lambda d: d.update(delivery_channels=["DELIVERY_CHANNEL_PIGEON"]), "delivery channel"),
    ("packages/open_restaurant.yaml", lambda d: newborn_item(d, "120000000001").update(name="别的事项"),
     "one basic code is one item"),
    ("packages/open_enterprise.yaml", lambda d: d.update(code="XSECS"), "defined twice"),
    ("packages/newborn.yaml", lambda d: newborn_item(d, "110000000003").update(department_code="nobody"),
     "nobody"),
])
def test_a_bad_data_folder_is_refused_and_changes_nothing(catalog, data, bus, path, change, words):
    edit(data / path, change)
    edit(data / "packages" / "open_enterprise.yaml", lambda d: d.update(name="开办企业一件事（新）"))
    before = len(bus.published)
    with pytest.raises(InvalidArgument) as err:
        catalog.reload()
    assert words in err.value.message
    assert [v["version"] for v in catalog.versions("KBQY")] == [1]  # the good edit was not stored either
    assert len(bus.published) == before


def test_unreadable_yaml_and_unknown_kind_are_named(catalog, data):
    (data / "overlays" / "440300" / "broken.yaml").write_text("kind: [overlay\n", encoding="utf-8")
    with pytest.raises(InvalidArgument, match=r"broken\.yaml: not valid YAML"):
        catalog.reload()
    (data / "overlays" / "440300" / "broken.yaml").write_text("kind: patch\n", encoding="utf-8")
    with pytest.raises(InvalidArgument, match="kind must be"):
        catalog.reload()
