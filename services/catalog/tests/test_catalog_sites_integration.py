"""Sites on the real local servers: a province-site catalog (in this process, ONETHING_REGION=440000,
its own database) publishes on the real broker; a city-site catalog worker (广州 440100, taking
440000's versions, its own database) runs as `nameko run` runs it and derives its versions. What the
down link delivers is exactly such an event with `site` 440000, so one broker stands for both sites;
the test also sends it again, and sends events the city must ignore (its own, another city's). The
city's worker handles one message at a time (ONETHING_WORKER_POOL=1), so a later event that is seen
handled means every earlier one was handled too."""
import contextlib
import os
import shutil
import uuid

import pytest
import yaml

from services.catalog.definitions import VersionStatus
from services.common.testing import running_worker, wait_for

pytestmark = pytest.mark.integration

CITY, PROVINCE = "440100", "440000"
QUEUE = "evt-catalog-package_published--catalog.on_package_published"




@pytest.fixture(scope="module")
def city_database(test_env):
    return f"{test_env['ONETHING_DB_PREFIX']}city_catalog"


@pytest.fixture(scope="module")
def city_worker(test_env, tmp_path_factory, city_database):
    """广州's catalog worker: its own database and data folder (a copy of the seed data)."""

    from services.common.config import ROOT
    data = tmp_path_factory.mktemp("guangzhou") / "data"
    shutil.copytree(os.path.join(ROOT, "services", "catalog", "data"), data)
    extra = dict(ONETHING_REGION=CITY, ONETHING_CATALOG_UPSTREAM=PROVINCE, ONETHING_CATALOG_DATA=str(data),
                 ONETHING_DB_PREFIX=city_database[:-len("catalog")], ONETHING_WORKER_POOL="1")
    log = os.path.join(test_env["ONETHING_VAR_DIR"], "catalog-city-worker.log")
    with running_worker("services.catalog.worker:CatalogWorker", log, QUEUE, extra) as proc:
        yield proc


@pytest.fixture
def province(own_database, city_worker, tmp_path, monkeypatch):
    """广东's catalog: the real store (its own database) and bus; the events it sends say site 440000."""
    from services.catalog.store import CatalogStore
    from services.catalog.wiring import build_catalog
    from services.common.audit import MemoryAuditLog
    from services.common.bus import Bus
    from services.common.config import ROOT
    monkeypatch.setenv("ONETHING_REGION", PROVINCE)
    database = own_database("catalog")
    data = tmp_path / "province"
    shutil.copytree(os.path.join(ROOT, "services", "catalog", "data"), data)
    for city in ("440100", "440300"):
        shutil.rmtree(data / "overlays" / city)  # the province's folder holds no city's overlay
    catalog = build_catalog(store=CatalogStore(Bus("catalog")), audit=MemoryAuditLog("catalog"), data_dir=str(data),
                            serves=lambda region: True)
    catalog.data, catalog.database = data, database
    assert catalog.hands_down
    return catalog


@contextlib.contextmanager
def on_database(name, back):
    """The catalog's store on database `name` for a while (the city's, to read it as the city does)."""
    from services.common import mongo
    mongo.disconnect("catalog")
    mongo.connect("catalog", db_name=name)
    try:
        yield
    finally:
        mongo.disconnect("catalog")
        mongo.connect("catalog", db_name=back)


def city_reads(province, city_database, read):
    """`read(catalog)` on a catalog of 广州 over the city's database."""
    from services.catalog.store import CatalogStore
    from services.catalog.wiring import build_catalog
    from services.common.audit import MemoryAuditLog
    with on_database(city_database, province.database):
        return read(build_catalog(store=CatalogStore(None), audit=MemoryAuditLog("catalog"), site=CITY,
                                  upstream=PROVINCE, serves=lambda region: True))


def city_db(city_database):
    import mongoengine
    return mongoengine.get_connection("catalog")[city_database]


def handled(city_database, event_id):
    return city_db(city_database).inbox.find_one({"_id": f"catalog.on_package_published:{event_id}"}) is not None


def city_version(city_database, code, version):
    return city_db(city_database).package_versions.find_one({"code": code, "version": version})


def send(payload, site, event_id=None, case_no=""):
    """A package_published as a link delivers it: the producer's headers, `site` the producing site's."""
    from services.common.bus import Bus
    event_id = event_id or uuid.uuid4().hex
    Bus("catalog").publish_raw("package_published", payload, {
        "event_id": event_id, "site": site, "producer": "catalog", "schema_version": "1", "case_no": case_no,
        "occurred_at": "2026-11-27T09:00:00+00:00"})
    return event_id


def captured(probe, code, version):
    """The (payload, headers) of the province's package_published of (code, version)."""
    return wait_for(lambda: next(((p, h) for k, p, h in list(probe.events) if k == "package_published"
                               and p.get("code") == code and p.get("version", 0) == version), None),
                 f"package_published {code} v{version} on the broker")


def card(pkg, code="110000000005"):
    return next(i for i in pkg["items"] if i["code"] == code)


def test_the_province_publishes_and_the_city_takes_each_version_once_with_its_own_overlay(
        province, probe, city_database):
    province.start()
    payload, headers = captured(probe, "XSECS", 1)
    assert headers["site"] == PROVINCE and headers["event_id"]
    wait_for(lambda: handled(city_database, headers["event_id"]), "the city to take XSECS v1")
    v1 = city_version(city_database, "XSECS", 1)
    assert v1["status"] == "published" and v1["definition"]["upstream"] == {
        "site": PROVINCE, "version": 1, "digest": payload["digest"]}
    case_version = city_reads(province, city_database, lambda c: c.get_package("XSECS", CITY))
    assert case_version["levels"] == ["national", PROVINCE, CITY]
    assert (card(case_version)["promised_limit_days"], card(case_version)["promised_limit_source"]) == (3, CITY)
    assert card(case_version)["implementing_body"]["name"] == "广州市人力资源和社会保障局"

    # the same event again (the link's at-least-once), and the same version under another id
    send(payload, PROVINCE, event_id=headers["event_id"])
    again = send(payload, PROVINCE)
    wait_for(lambda: handled(city_database, again), "the city to handle the copies")
    assert [d["version"] for d in city_db(city_database).package_versions.find({"code": "XSECS"})] == [1]
    assert city_db(city_database).upstream_versions.count_documents({"code": "XSECS"}) == 1

    # its own events coming back down, and another city's, are ignored
    forged = dict(payload, version=9)
    send(forged, CITY)
    send(forged, "440300")
    marker = send(payload, PROVINCE)
    wait_for(lambda: handled(city_database, marker), "the city to handle the marker")
    assert city_db(city_database).upstream_versions.count_documents({"code": "XSECS", "version": 9}) == 0

    # a newer province version: a new city version; a case on version 1 reads what it read
    newborn = province.data / "packages" / "newborn.yaml"
    doc = yaml.safe_load(newborn.read_text(encoding="utf-8"))
    card(doc, "110000000004")["promised_limit_days"] = 3
    newborn.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    assert ("XSECS", 2, "drafted") in province.reload()
    province.publish("XSECS")
    _, headers2 = captured(probe, "XSECS", 2)
    wait_for(lambda: handled(city_database, headers2["event_id"]), "the city to take XSECS v2")
    latest, old, versions = city_reads(province, city_database, lambda c: (
        c.get_package("XSECS", CITY), c.get_package("XSECS", CITY, version=1), c.versions("XSECS")))
    assert (latest["version"], card(latest, "110000000004")["promised_limit_days"], card(latest)["promised_limit_days"]) \
        == (2, 3, 3)
    assert old == dict(case_version, status=VersionStatus.RETIRED)
    assert [(v["version"], v["status"], v["upstream_version"]) for v in versions] == [
        (1, VersionStatus.RETIRED, 1), (2, VersionStatus.PUBLISHED, 2)]
    assert city_db(city_database).package_versions.count_documents({"outbox.0": {"$exists": True}}) == 0
