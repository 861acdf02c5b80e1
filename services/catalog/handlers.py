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
  of their version, nothing caches packages) and was removed. `bus` is kept for the worker's outbox
  sweep of versions written before that.
- RetirePackage: withdraws the published version; the package is then not offered until a draft is
  published.
- A data folder that does not validate is refused as a whole: nothing changes."""
import datetime

from services.catalog import domain
from services.common.audit import MemoryAuditLog
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound

STATUS_ENUM = {"draft": "VERSION_STATUS_DRAFT", "published": "VERSION_STATUS_PUBLISHED",
               "retired": "VERSION_STATUS_RETIRED"}


def _iso(value):
    return value.isoformat() if isinstance(value, datetime.datetime) else ""


def version_view(doc):
    return {"code": doc["code"], "version": doc["version"], "status": STATUS_ENUM[doc["status"]],
            "digest": doc["digest"], "name": doc["definition"]["base"]["name"],
            "created_at": _iso(doc.get("created_at")), "published_at": _iso(doc.get("published_at")),
            "retired_at": _iso(doc.get("retired_at"))}


class Catalog:
    def __init__(self, store, bus=None, reader=None, data_dir=None, audit=None):
        from services.catalog.store import read_catalog
        self.store, self.bus = store, bus
        # the audit log (services.common.audit): publish, retire and reload
        self.audit = audit or MemoryAuditLog("catalog")
        self.reader = reader or read_catalog
        self.data_dir = data_dir
        self.serves = None  # region_code -> bool: which regions this site serves (None: all)

    # loading and versions -----------------------------------------------------------------
    def load(self, data_dir=None):
        """Read the data folder and record what changed; returns [(code, version, outcome)]."""
        raw = self.reader(data_dir or self.data_dir)
        defs = domain.build_definitions(raw)
        domain.check_shared_items(defs)
        for d in defs.values():  # all or nothing: validate everything before storing anything
            domain.validate_definition(d)
        changes = []
        for code, d in sorted(defs.items()):
            d = {k: v for k, v in d.items() if k not in ("source", "missing")}
            changes.append(self._record(code, d, domain.digest(d)))
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
                if self.store.add_version(code, 1, "published", definition, digest):
                    return (code, 1, "published")
                continue
            if latest["digest"] == digest:
                return (code, latest["version"], "unchanged")
            if latest["status"] == "draft":
                if self.store.replace_draft(code, latest["version"], definition, digest):
                    return (code, latest["version"], "draft_updated")
                continue
            if self.store.add_version(code, latest["version"] + 1, "draft", definition, digest):
                return (code, latest["version"] + 1, "drafted")
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
        draft = self.store.version(code, version) if version else self.store.latest(code, "draft")
        if draft is None or draft["status"] != "draft":
            if draft is None and not self.store.versions(code):
                raise NotFound(f"there is no package {code!r}")
            what = f"version {version} of {code} is {draft['status']}, not a draft" if draft else \
                f"package {code} has no draft"
            raise FailedPrecondition(f"{what}; edit its data files and ReloadCatalog to make one")
        if not self.store.set_status(code, draft["version"], "draft", "published"):
            raise FailedPrecondition(f"version {draft['version']} of {code} was published or replaced meanwhile")
        for older in self.store.versions(code):
            if older["status"] == "published" and older["version"] < draft["version"]:
                self.store.set_status(code, older["version"], "published", "retired")
        return version_view(self.store.version(code, draft["version"]))

    def retire(self, code, version=0, actor=None):
        with self.audit.attempt(actor, "catalog.retire", code, version=int(version or 0)) as details:
            retired = self._retire(code, version)
            details["version"] = retired["version"]
        return retired

    def _retire(self, code, version=0):
        doc = self.store.version(code, version) if version else self.store.latest(code, "published")
        if doc is None:
            if not self.store.versions(code):
                raise NotFound(f"there is no package {code!r}")
            raise NotFound(f"package {code} has no {'version %d' % version if version else 'published version'}")
        if doc["status"] == "retired":
            return version_view(doc)
        if doc["status"] != "published":
            raise FailedPrecondition(f"version {doc['version']} of {code} is a draft; only a published version "
                                     "can be retired")
        self.store.set_status(code, doc["version"], "published", "retired")
        return version_view(self.store.version(code, doc["version"]))

    # look-ups -----------------------------------------------------------------------------
    def _check_served(self, region_code):
        domain.check_region(region_code)
        if self.serves is not None and not self.serves(region_code):
            raise FailedPrecondition(f"this site does not serve region {region_code}; ask the catalog of "
                                     f"that region's site")

    def _version_doc(self, code, region_code, version):
        self._check_served(region_code)
        if not code:
            raise InvalidArgument("name the package (code)")
        if version:
            doc = self.store.version(code, int(version))
            if doc is None:
                raise NotFound(f"package {code!r} has no version {version}")
            if doc["status"] == "draft":
                raise FailedPrecondition(f"version {version} of {code} is a draft; publish it before use")
            return doc
        doc = self.store.latest(code, "published")
        if doc is None:
            if self.store.versions(code):
                raise NotFound(f"package {code!r} is retired (no published version); it is not offered in {region_code}")
            raise domain.not_found(code, region_code)
        return doc

    def get_package(self, code, region_code, situations=None, version=0, held_license_types=()):
        doc = self._version_doc(code, region_code, version)
        pkg = domain.resolve(doc["definition"], region_code, situations or {}, held_license_types,
                             version=doc["version"])
        pkg["status"] = STATUS_ENUM[doc["status"]]
        return pkg

    def list_packages(self, region_code, audience=""):
        self._check_served(region_code)
        if audience and audience not in domain.AUDIENCES:
            raise InvalidArgument(f"audience {audience!r} is not one of {', '.join(domain.AUDIENCES)}")
        out = []
        for code in self.store.codes():
            doc = self.store.latest(code, "published")
            if doc is None:
                continue
            try:
                pkg = domain.resolve(doc["definition"], region_code, {}, version=doc["version"])
            except NotFound:  # a local package of another region
                continue
            if audience and pkg["audience"] != audience:
                continue
            pkg["status"] = STATUS_ENUM[doc["status"]]
            out.append(pkg)
        return out

    def notice(self, code, region_code, situations=None, version=0, held_license_types=()):
        pkg = self.get_package(code, region_code, situations, version, held_license_types)
        step_list = domain.steps(pkg)
        figures = domain.savings(pkg)
        return {"package": pkg, "steps": step_list, "savings": figures,
                "text": domain.notice_text(pkg, step_list, figures)}

    def savings(self, code, region_code, situations=None, version=0, held_license_types=()):
        return domain.savings(self.get_package(code, region_code, situations, version, held_license_types))

    def check_form(self, code, region_code, situations=None, version=0, values=None):
        pkg = self.get_package(code, region_code, situations, version)
        problems = domain.check_form(pkg["form_fields"], values or {})
        return {"ok": not problems, "problems": [{"key": k, "problem": p} for k, p in problems]}
