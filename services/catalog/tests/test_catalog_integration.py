"""The catalog's MongoDB store on the real local servers (one site alone, 440100, publishes no
events; a province's and a city's: test_catalog_sites_integration.py)."""
import os
import pathlib
import shutil
import time

import pytest
import yaml

from services.catalog.definitions import VersionStatus

pytestmark = pytest.mark.integration

DATA = pathlib.Path(__file__).resolve().parents[1] / "data"


@pytest.fixture
def catalog(test_env, tmp_path):
    from services.catalog.store import PackageVersionDoc
    from services.catalog.wiring import build_catalog
    from services.common import mongo
    mongo.connect("catalog")
    PackageVersionDoc.drop_collection()
    data = tmp_path / "data"
    shutil.copytree(DATA, data)
    c = build_catalog(data_dir=str(data), serves=lambda region: True)  # the real store, bus and audit log
    c.data = data
    yield c
    PackageVersionDoc.drop_collection()
    mongo.disconnect("catalog")


def test_load_publish_and_version_pinning_on_mongo(catalog, probe):
    first = catalog.load()
    assert ("XSECS", 1, "published") in first
    assert {o for _, _, o in catalog.reload()} == {"unchanged"}

    path = catalog.data / "packages" / "newborn.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    next(i for i in doc["items"] if i["code"] == "110000000005")["promised_limit_days"] = 4
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    assert ("XSECS", 2, "drafted") in catalog.reload()
    assert catalog.get_package("XSECS", "440300")["version"] == 1

    assert catalog.publish("XSECS")["version"] == 2
    card = lambda pkg: next(i for i in pkg["items"] if i["code"] == "110000000005")
    assert card(catalog.get_package("XSECS", "440300"))["promised_limit_days"] == 4
    old = catalog.get_package("XSECS", "440300", version=1)
    assert card(old)["promised_limit_days"] == 5 and old["status"] is VersionStatus.RETIRED
    assert [v["status"] for v in catalog.versions("XSECS")] == [VersionStatus.RETIRED, VersionStatus.PUBLISHED]

    from services.catalog.store import PackageVersionDoc
    assert PackageVersionDoc.objects(outbox__0__exists=True).count() == 0


def test_loading_leaves_no_event_behind(catalog, probe):
    from services.catalog.store import PackageVersionDoc
    catalog.load()
    assert PackageVersionDoc.objects(code="XSECS").first() is not None
    assert PackageVersionDoc.objects(outbox__0__exists=True).count() == 0
    time.sleep(0.3)
    assert [k for k, _, _ in list(probe.events) if k == "package_published"] == []
    assert os.environ["ONETHING_DB_PREFIX"].startswith("t")


def test_stored_moments_travel_as_timestamps_and_stay_datetimes_in_mongo(catalog):
    """What MongoDB gives back (datetimes without an offset, in UTC) encodes as the same moment; the
    documents keep their datetimes and strings as before."""
    import datetime

    from services.catalog.api import _version
    from services.catalog.store import PackageVersionDoc
    catalog.load()
    catalog.retire("XSECS")
    doc = PackageVersionDoc.objects(code="XSECS", version=1).first()
    assert isinstance(doc.created_at, datetime.datetime) and doc.status == "retired"
    (view,) = catalog.versions("XSECS")
    msg = _version(view)
    for key in ("created_at", "published_at", "retired_at"):
        stored = getattr(doc, key)
        utc = stored if stored.tzinfo else stored.replace(tzinfo=datetime.UTC)
        assert msg.HasField(key) and getattr(msg, key).ToDatetime(tzinfo=datetime.UTC) == utc
    raw = PackageVersionDoc._get_collection().find_one({"code": "XSECS", "version": 1})
    assert isinstance(raw["retired_at"], datetime.datetime) and raw["status"] == "retired"
