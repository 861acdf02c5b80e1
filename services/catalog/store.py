"""The catalog's MongoDB store (database `<prefix>catalog`) and the loader of the seed data files.

Layout of the data folder (operators edit it, then ReloadCatalog or restart the api):
    departments.yaml            department code -> name
    fields.yaml                 the field dictionary of the one form
    regions.yaml                GB/T 2260 code -> name
    packages/*.yaml             the national base list, one package a file
    overlays/<region>/*.yaml    `kind: overlay` (implementing bodies, per-package changes) or
                                `kind: package` (a local package offered in that region and below)
"""
import datetime
import glob
import os

import mongoengine as me
import yaml

from services.catalog.definitions import (
    STATUS_STORED,
    PackageVersion,
    UpstreamVersion,
    VersionStatus,
    status_of_stored,
)
from services.common.errors import InvalidArgument
from services.common.mongo import OutboxStore, plain

ALIAS = "catalog"


def _read_yaml(path):
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"{path}: not valid YAML ({exc})".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise InvalidArgument(f"{path}: expected a mapping at the top")
    return data


def read_catalog(path):
    """Everything in the data folder, for definitions.build_definitions."""
    rel = lambda p: os.path.relpath(p, path)
    raw = {"departments": _read_yaml(os.path.join(path, "departments.yaml")),
           "fields": _read_yaml(os.path.join(path, "fields.yaml")) if os.path.exists(
               os.path.join(path, "fields.yaml")) else {},
           "regions": {str(k): v for k, v in (_read_yaml(os.path.join(path, "regions.yaml")) if os.path.exists(
               os.path.join(path, "regions.yaml")) else {}).items()},
           "packages": [], "overlays": []}
    for name in sorted(glob.glob(os.path.join(path, "packages", "*.yaml"))):
        raw["packages"].append((rel(name), _read_yaml(name)))
    for folder in sorted(glob.glob(os.path.join(path, "overlays", "*"))):
        region = os.path.basename(folder)
        for name in sorted(glob.glob(os.path.join(folder, "*.yaml"))):
            doc = _read_yaml(name)
            kind = doc.get("kind")
            if kind == "package":
                raw["packages"].append((rel(name), dict(doc, home=region)))
            elif kind == "overlay":
                raw["overlays"].append((rel(name), region, doc))
            else:
                raise InvalidArgument(f"{rel(name)}: kind must be `overlay` or `package`, not {kind!r}")
    return raw


def read_data_dir(path):
    """(departments, packages) from the data files: every package, national and local (the suite
    starts a desk for every department that implements an item)."""
    raw = read_catalog(path)
    packages = [p for _, p in raw["packages"]]
    for _, _, overlay in raw["overlays"]:
        for changes in (overlay.get("packages") or {}).values():
            if (changes or {}).get("add_items"):
                packages.append({"code": "", "items": changes["add_items"]})
    return raw["departments"], packages


def _utc_now():
    return datetime.datetime.now(datetime.UTC)


def version_id(code, version):
    """The id of a version's document, and so of the aggregate whose outbox it holds."""
    return f"{code}:{version}"


class PackageVersionDoc(me.Document):
    meta = {"db_alias": ALIAS, "collection": "package_versions",
            "indexes": [{"fields": ["code", "version"], "unique": True}, "status", "outbox.next_at"]}
    id = me.StringField(primary_key=True)  # "<code>:<version>"
    code = me.StringField(required=True)
    version = me.IntField(required=True)
    status = me.StringField(required=True)  # draft | published | retired (definitions.STATUS_STORED)
    digest = me.StringField(required=True)
    definition = me.DictField(required=True)
    created_at = me.DateTimeField(default=_utc_now)
    published_at = me.DateTimeField()
    retired_at = me.DateTimeField()
    outbox = me.ListField(me.DictField())


def upstream_id(site, code, version):
    return f"{site}:{code}:{version}"


class UpstreamVersionDoc(me.Document):
    """A version of a package the site above published (a city keeps its province's), as received."""

    meta = {"db_alias": ALIAS, "collection": "upstream_versions",
            "indexes": [{"fields": ["site", "code", "version"], "unique": True}]}
    id = me.StringField(primary_key=True)  # "<site>:<code>:<version>"
    site = me.StringField(required=True)
    code = me.StringField(required=True)
    version = me.IntField(required=True)
    digest = me.StringField(required=True)
    definition = me.DictField(required=True)
    received_at = me.DateTimeField(default=_utc_now)
    problem = me.StringField(default="")  # why no version of this site could be derived from it


# the time each status is reached is kept in its own field
_STAMPED = {VersionStatus.PUBLISHED: "published_at", VersionStatus.RETIRED: "retired_at"}


def _version(doc):
    if doc is None:
        return None
    return PackageVersion(code=doc.code, version=doc.version, status=status_of_stored(doc.status),
                          digest=doc.digest, definition=plain(doc.definition), created_at=doc.created_at,
                          published_at=doc.published_at, retired_at=doc.retired_at)


class CatalogStore(OutboxStore):
    """Package versions (definitions.PackageVersion). A version's definition is written once (a
    draft's may be replaced while it is a draft); its status moves draft -> published -> retired by
    compare-and-set updates. The events a write adds (a province's `package_published`) are
    published after the commit (OutboxStore); `clock` gives the times it stamps. A city also keeps
    the versions its province published (definitions.UpstreamVersion), each once."""

    document = PackageVersionDoc

    def __init__(self, bus=None, clock=None):
        super().__init__(bus)
        self.clock = clock or _utc_now

    def add_version(self, code, version, status, definition, digest, events=()):
        """Store a new version; False when (code, version) exists already (nothing changes)."""
        status, events, now = VersionStatus(status), list(events), self.clock()
        try:
            PackageVersionDoc(id=version_id(code, version), code=code, version=version, status=STATUS_STORED[status],
                              digest=digest, definition=definition, created_at=now,
                              published_at=now if status is VersionStatus.PUBLISHED else None,
                              outbox=events).save(force_insert=True)
        except me.NotUniqueError:
            return False
        self.publish(version_id(code, version), events)
        return True

    def replace_draft(self, code, version, definition, digest):
        """Replace a draft's definition; False when the version is no longer a draft."""
        return PackageVersionDoc.objects(id=version_id(code, version), status=STATUS_STORED[VersionStatus.DRAFT]
                                         ).update_one(set__definition=definition, set__digest=digest) == 1

    def set_status(self, code, version, expected, status, events=()):
        """Move a version from `expected` to `status`; False when it is not at `expected` (anymore)."""
        expected, status, events = VersionStatus(expected), VersionStatus(status), list(events)
        update = {"set__status": STATUS_STORED[status]}
        if status in _STAMPED:
            update[f"set__{_STAMPED[status]}"] = self.clock()
        if events:
            update["push_all__outbox"] = events
        if PackageVersionDoc.objects(id=version_id(code, version), status=STATUS_STORED[expected]).update_one(
                **update) != 1:
            return False
        self.publish(version_id(code, version), events)
        return True

    def version(self, code, version):
        return _version(PackageVersionDoc.objects(id=version_id(code, version)).first())

    def latest(self, code, status=None):
        query = PackageVersionDoc.objects(code=code)
        if status is not None:
            query = query.filter(status=STATUS_STORED[VersionStatus(status)])
        return _version(query.order_by("-version").first())

    def versions(self, code):
        return [_version(d) for d in PackageVersionDoc.objects(code=code).order_by("version")]

    def codes(self):
        return sorted(PackageVersionDoc.objects.distinct("code"))

    def add_events(self, code, version, events):
        """Events about a version that do not change it (a province announcing what it has
        published); False when there is no such version."""
        events = list(events)
        query = PackageVersionDoc.objects(id=version_id(code, version))
        if (query.update_one(push_all__outbox=events) if events else query.count()) != 1:
            return False
        self.publish(version_id(code, version), events)
        return True

    # -- what the site above published ------------------------------------------------------------

    def add_upstream(self, upstream):
        """Keep an upstream version; False when (site, code, version) is kept already (nothing changes)."""
        try:
            UpstreamVersionDoc(id=upstream_id(upstream.site, upstream.code, upstream.version), site=upstream.site,
                               code=upstream.code, version=upstream.version, digest=upstream.digest,
                               definition=upstream.definition, received_at=self.clock(),
                               problem=upstream.problem).save(force_insert=True)
        except me.NotUniqueError:
            return False
        return True

    def upstream(self, site, code, version):
        return _upstream(UpstreamVersionDoc.objects(id=upstream_id(site, code, version)).first())

    def latest_upstream(self, site, code):
        return _upstream(UpstreamVersionDoc.objects(site=site, code=code).order_by("-version").first())

    def upstream_codes(self, site):
        return sorted(UpstreamVersionDoc.objects(site=site).distinct("code"))

    def note_upstream(self, site, code, version, problem):
        """Say why no version could be derived from an upstream version ("": one was); False when
        it is not kept."""
        return UpstreamVersionDoc.objects(id=upstream_id(site, code, version)).update_one(
            set__problem=problem) == 1


def _upstream(doc):
    if doc is None:
        return None
    return UpstreamVersion(site=doc.site, code=doc.code, version=doc.version, digest=doc.digest,
                           definition=plain(doc.definition), received_at=doc.received_at, problem=doc.problem or "")
