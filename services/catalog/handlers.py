"""Catalog use cases; no framework here: the store, the bus and the data reader are passed in.

Versions. The unit of versioning is one package code with everything that shapes it (base package,
every region's overlay of it, implementing bodies, department names, form fields), so a case that
names (code, version) always gets the same resolution.
- First load of a code: version 1 is stored as published (the seed).
- Re-load with the same content: nothing happens (idempotent).
- Re-load with changed content: the change becomes a draft (version = latest + 1); a later change
  before publishing replaces that draft. Published and retired versions are never rewritten.
- PublishPackage: the draft becomes published, the previously published version becomes retired
  (no new cases; cases already on it still read it by number).
- The catalog publishes no events: `package_published` had no consumer (cases carry the snapshot
  of their version, nothing caches packages) and was removed. The store keeps an outbox all the
  same (services.common.mongo.OutboxStore), swept by the worker, for the catalog's future events.
- RetirePackage: withdraws the published version; the package is then not offered until a draft is
  published.
- A data folder that does not validate is refused as a whole: nothing changes."""
from services.catalog import definitions, notice, resolution
from services.catalog.definitions import PackageVersion, VersionStatus
from services.common.audit import MemoryAuditLog
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound

DRAFT, PUBLISHED, RETIRED = VersionStatus.DRAFT, VersionStatus.PUBLISHED, VersionStatus.RETIRED


def _iso(value):
    return value.isoformat() if value is not None else ""


def version_view(found: PackageVersion):
    """A version as ListVersions, PublishPackage and RetirePackage answer it (status a VersionStatus;
    api.py encodes it)."""
    return {"code": found.code, "version": found.version, "status": found.status, "digest": found.digest,
            "name": found.name, "created_at": _iso(found.created_at), "published_at": _iso(found.published_at),
            "retired_at": _iso(found.retired_at)}


class Catalog:
    """The catalog's use cases over its adapters: `store` (package versions), `reader` (data folder
    -> what definitions.build_definitions takes), `audit` (publish, retire and reload), `serves`
    (region_code -> bool: which regions this site serves; None: all)."""

    def __init__(self, store, reader, data_dir=None, audit=None, serves=None):
        self.store = store
        self.reader = reader
        self.data_dir = data_dir
        self.audit = audit or MemoryAuditLog("catalog")
        self.serves = serves

    # loading and versions -----------------------------------------------------------------
    def load(self, data_dir=None):
        """Read the data folder and record what changed; returns [(code, version, outcome)]."""
        raw = self.reader(data_dir or self.data_dir)
        defs = definitions.build_definitions(raw)
        definitions.check_shared_items(defs)
        for d in defs.values():  # all or nothing: validate everything before storing anything
            definitions.validate_definition(d)
        changes = []
        for code, d in sorted(defs.items()):
            d = {k: v for k, v in d.items() if k not in ("source", "missing")}
            changes.append(self._record(code, d, definitions.digest(d)))
        return changes

    def reload(self, data_dir=None, actor=None):
        """load(), asked for by an operator (ReloadCatalog): recorded in the audit log with what changed."""
        with self.audit.attempt(actor, "catalog.reload", "") as details:
            changes = self.load(data_dir)
            details["changes"] = [f"{code} v{version} {outcome}" for code, version, outcome in changes
                                  if outcome != "unchanged"]
        return changes

    def _record(self, code, definition, digest):
        for _ in range(3):  # another api process may store the same version at the same moment
            latest = self.store.latest(code)
            if latest is None:
                if self.store.add_version(code, 1, PUBLISHED, definition, digest):
                    return (code, 1, "published")
                continue
            if latest.digest == digest:
                return (code, latest.version, "unchanged")
            if latest.status is DRAFT:
                if self.store.replace_draft(code, latest.version, definition, digest):
                    return (code, latest.version, "draft_updated")
                continue
            if self.store.add_version(code, latest.version + 1, DRAFT, definition, digest):
                return (code, latest.version + 1, "drafted")
        raise FailedPrecondition(f"package {code} changed while it was being loaded; reload again")

    def versions(self, code):
        found = self.store.versions(code)
        if not found:
            raise NotFound(f"there is no package {code!r}")
        return [version_view(v) for v in found]

    def publish(self, code, version=0, actor=None):
        with self.audit.attempt(actor, "catalog.publish", code, version=int(version or 0)) as details:
            published = self._publish(code, version)
            details["version"] = published["version"]
        return published

    def _publish(self, code, version=0):
        draft = self.store.version(code, version) if version else self.store.latest(code, DRAFT)
        if draft is None or draft.status is not DRAFT:
            if draft is None and not self.store.versions(code):
                raise NotFound(f"there is no package {code!r}")
            what = f"version {version} of {code} is {draft.status}, not a draft" if draft else \
                f"package {code} has no draft"
            raise FailedPrecondition(f"{what}; edit its data files and ReloadCatalog to make one")
        if not self.store.set_status(code, draft.version, DRAFT, PUBLISHED):
            raise FailedPrecondition(f"version {draft.version} of {code} was published or replaced meanwhile")
        for older in self.store.versions(code):
            if older.status is PUBLISHED and older.version < draft.version:
                self.store.set_status(code, older.version, PUBLISHED, RETIRED)
        return version_view(self.store.version(code, draft.version))

    def retire(self, code, version=0, actor=None):
        with self.audit.attempt(actor, "catalog.retire", code, version=int(version or 0)) as details:
            retired = self._retire(code, version)
            details["version"] = retired["version"]
        return retired

    def _retire(self, code, version=0):
        found = self.store.version(code, version) if version else self.store.latest(code, PUBLISHED)
        if found is None:
            if not self.store.versions(code):
                raise NotFound(f"there is no package {code!r}")
            raise NotFound(f"package {code} has no {'version %d' % version if version else 'published version'}")
        if found.status is RETIRED:
            return version_view(found)
        if found.status is not PUBLISHED:
            raise FailedPrecondition(f"version {found.version} of {code} is a draft; only a published version "
                                     "can be retired")
        self.store.set_status(code, found.version, PUBLISHED, RETIRED)
        return version_view(self.store.version(code, found.version))

    # look-ups -----------------------------------------------------------------------------
    def _check_served(self, region_code):
        definitions.check_region(region_code)
        if self.serves is not None and not self.serves(region_code):
            raise FailedPrecondition(f"this site does not serve region {region_code}; ask the catalog of "
                                     f"that region's site")

    def _offered_version(self, code, region_code, version):
        self._check_served(region_code)
        if not code:
            raise InvalidArgument("name the package (code)")
        if version:
            found = self.store.version(code, int(version))
            if found is None:
                raise NotFound(f"package {code!r} has no version {version}")
            if found.status is DRAFT:
                raise FailedPrecondition(f"version {version} of {code} is a draft; publish it before use")
            return found
        found = self.store.latest(code, PUBLISHED)
        if found is None:
            if self.store.versions(code):
                raise NotFound(f"package {code!r} is retired (no published version); it is not offered in {region_code}")
            raise resolution.not_found(code, region_code)
        return found

    def get_package(self, code, region_code, situations=None, version=0, held_license_types=()):
        """The package resolved (a dict shaped like catalog.v1.Package; `status` a VersionStatus)."""
        found = self._offered_version(code, region_code, version)
        pkg = resolution.resolve(found.definition, region_code, situations or {}, held_license_types,
                                 version=found.version)
        pkg["status"] = found.status
        return pkg

    def list_packages(self, region_code, audience=""):
        self._check_served(region_code)
        if audience and audience not in definitions.AUDIENCES:
            raise InvalidArgument(f"audience {audience!r} is not one of {', '.join(definitions.AUDIENCES)}")
        out = []
        for code in self.store.codes():
            found = self.store.latest(code, PUBLISHED)
            if found is None:
                continue
            try:
                pkg = resolution.resolve(found.definition, region_code, {}, version=found.version)
            except NotFound:  # a local package of another region
                continue
            if audience and pkg["audience"] != audience:
                continue
            pkg["status"] = found.status
            out.append(pkg)
        return out

    def notice(self, code, region_code, situations=None, version=0, held_license_types=()):
        pkg = self.get_package(code, region_code, situations, version, held_license_types)
        step_list = notice.steps(pkg)
        figures = notice.savings(pkg)
        return {"package": pkg, "steps": step_list, "savings": figures,
                "text": notice.notice_text(pkg, step_list, figures)}

    def savings(self, code, region_code, situations=None, version=0, held_license_types=()):
        return notice.savings(self.get_package(code, region_code, situations, version, held_license_types))

    def check_form(self, code, region_code, situations=None, version=0, values=None):
        """CheckForm: the values against the package's merged form, every problem listed (the rules
        of services.common.forms, which intake's SubmitCase applies too)."""
        pkg = self.get_package(code, region_code, situations, version)
        return resolution.check_form(pkg["form_fields"], values or {})
