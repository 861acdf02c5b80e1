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
- RetirePackage: withdraws the published version; the package is then not offered until a draft is
  published.
- A data folder that does not validate is refused as a whole: nothing changes.

Sites (issue 11). Which of three a catalog is follows from its site's region (`site`) and its
`upstream` (ONETHING_CATALOG_UPSTREAM):
- one site alone (`make run`, 440100, no upstream): everything comes from its data folder, as
  above; it publishes no events.
- the province (a region code ending 0000, no upstream) loads the same way and hands its packages
  down: when a version of a package it owns (a national one or its own local one) is published (the
  first load's seed, PublishPackage), its outbox sends `package_published` with the definition the
  cities need: the base with the province's overlay and bodies, no city's (definitions.handed_down).
  When its api starts it sends the versions published then again, for a city that joined later.
- a city (upstream: its province) owns only its local packages (`kind: package` under
  overlays/<city>/) and its layer (the overlays and bodies of its region and below); the national
  base and the province's overlay in its data folder are not read. `receive` keeps what the
  province published (once per (code, province version); a second copy changes nothing) and
  derives the city's version: the province's definition with the city's layer on top. It is
  published at once (the province published its part, the city's layer is the one its current
  version has, or on the first arrival the data folder's), and the city's previous version is
  retired. City version numbers are the city's own (1, 2, 3 ...): each names the province version
  it is built on (ListVersions: upstream_site, upstream_version), and a city's own overlay change
  makes a new city version on the same province version. A city draft pending when a province
  version arrives gives its number to the new published version; the draft is made again from the
  data folder on top of the new province version (a draft only when it still differs). A province
  version that the city's layer does not fit (the province lengthened nothing, but, say, removed an
  item the city shortens) is kept with the problem and nothing else changes: the city stays on its
  current version until its operator fixes the overlay and reloads. An older or equal province
  version arriving late, or one with the content the city's version is built on, changes nothing,
  even when the city has retired the package since (RetirePackage); a newer one publishes it again.
A case stays on the version it started with: intake records the (city) version number and sends
the version's snapshot with the case; that number resolves to the same package for ever."""
from services.catalog import codec, definitions, notice, resolution
from services.catalog.definitions import NATIONAL, PackageVersion, VersionStatus
from services.common.audit import MemoryAuditLog
from services.common.bus import outbox_entry
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound

DRAFT, PUBLISHED, RETIRED = VersionStatus.DRAFT, VersionStatus.PUBLISHED, VersionStatus.RETIRED


class ChangedMeanwhile(RuntimeError):
    """A version changed under a use case three times over (other processes writing the same
    package): not a refusal, so the worker tries the event again later."""


def _iso(value):
    return value.isoformat() if value is not None else ""


def _stored(definition):
    """A definition as a version keeps it (without where it was read from or what it lacked)."""
    return {k: v for k, v in definition.items() if k not in ("source", "missing")}


def version_view(found: PackageVersion):
    """A version as ListVersions, PublishPackage and RetirePackage answer it (status a VersionStatus;
    api.py encodes it)."""
    on = definitions.built_on(found.definition)
    return {"code": found.code, "version": found.version, "status": found.status, "digest": found.digest,
            "name": found.name, "created_at": _iso(found.created_at), "published_at": _iso(found.published_at),
            "retired_at": _iso(found.retired_at), "upstream_site": on.get("site", ""),
            "upstream_version": int(on.get("version", 0))}


class Catalog:
    """The catalog's use cases over its adapters: `store` (package versions), `reader` (data folder
    -> what definitions.build_definitions takes), `audit` (publish, retire and reload), `serves`
    (region_code -> bool: which regions this site serves; None: all), `site` (this site's region
    code) and `upstream` (the region code of the site whose published versions it takes; "": none,
    it owns the national base)."""

    def __init__(self, store, reader, data_dir=None, audit=None, serves=None, site="", upstream=""):
        self.store = store
        self.reader = reader
        self.data_dir = data_dir
        self.audit = audit or MemoryAuditLog("catalog")
        self.serves = serves
        self.site = site
        self.upstream = upstream

    @property
    def hands_down(self):
        """The province: it owns the national base (nothing above it) and publishes for its cities."""
        return not self.upstream and definitions.is_province(self.site)

    # loading and versions -----------------------------------------------------------------
    def load(self, data_dir=None, unfit_upstream_refused=True):
        """Read the data folder and record what changed; returns [(code, version, outcome)]. At a
        city, a province version its overlay does not fit refuses the whole folder, or, without
        `unfit_upstream_refused` (the api's start), is left out with its problem noted."""
        raw = self.reader(data_dir or self.data_dir)
        if self.upstream:
            defs = self._below_upstream(raw, unfit_upstream_refused)
        else:
            defs = definitions.build_definitions(raw)
        definitions.check_shared_items(defs)
        for d in defs.values():  # all or nothing: validate everything before storing anything
            definitions.validate_definition(d)
        changes = []
        for code, d in sorted(defs.items()):
            d = _stored(d)
            changes.append(self._record(code, d, definitions.digest(d)))
        return changes

    def _below_upstream(self, raw, unfit_upstream_refused=True):
        """A city's definitions: its local packages from its data folder, and each package its
        province published (the latest version kept) with its layer on top."""
        local, layer = definitions.split_local(raw, self.site)
        defs = definitions.build_definitions(local)
        for code in self.store.upstream_codes(self.upstream):
            if code in defs:
                raise InvalidArgument(f"{defs[code]['source']}: package {code} is published by {self.upstream}; "
                                      "a local package needs a code of its own")
            upstream = self.store.latest_upstream(self.upstream, code)
            try:
                derived = definitions.derive(upstream, layer)
                definitions.validate_definition(derived)
            except InvalidArgument as exc:
                if unfit_upstream_refused:
                    raise
                self.store.note_upstream(upstream.site, code, upstream.version, exc.message)
                continue
            defs[code] = derived
        return defs

    def start(self, actor=None):
        """What the api does when it starts: reload (audited like an operator's; at a city, a
        province version its overlay does not fit does not stop the api: it is left out, the city
        stays on its version, and ReloadCatalog names the problem), and the province announces
        again what it has published."""
        changes = self.reload(actor=actor, unfit_upstream_refused=False)
        self.announce(skip={code for code, _, outcome in changes if outcome == "published"})
        return changes

    def reload(self, data_dir=None, actor=None, unfit_upstream_refused=True):
        """load(), asked for by an operator (ReloadCatalog): recorded in the audit log with what changed."""
        with self.audit.attempt(actor, "catalog.reload", "") as details:
            changes = self.load(data_dir, unfit_upstream_refused)
            details["changes"] = [f"{code} v{version} {outcome}" for code, version, outcome in changes
                                  if outcome != "unchanged"]
        return changes

    def _record(self, code, definition, digest):
        for _ in range(3):  # another api process may store the same version at the same moment
            latest = self.store.latest(code)
            if latest is None:
                if self.store.add_version(code, 1, PUBLISHED, definition, digest,
                                          self._announcement(code, 1, definition)):
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
        if not self.store.set_status(code, draft.version, DRAFT, PUBLISHED,
                                     self._announcement(code, draft.version, draft.definition)):
            raise FailedPrecondition(f"version {draft.version} of {code} was published or replaced meanwhile")
        self._retire_before(code, draft.version)
        return version_view(self.store.version(code, draft.version))

    def _retire_before(self, code, number):
        for older in self.store.versions(code):
            if older.status is PUBLISHED and older.version < number:
                self.store.set_status(code, older.version, PUBLISHED, RETIRED)

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

    # the province hands its packages down ---------------------------------------------------
    def _announcement(self, code, number, definition):
        """The outbox entries that publishing version `number` of a package adds: the province's
        `package_published` for a package it owns; none anywhere else."""
        if not self.hands_down or not definitions.owned_by(definition, self.site):
            return []
        part = definitions.handed_down(definition, self.site)
        return [outbox_entry("package_published", codec.package_published(code, number, definition["base"]["name"],
                                                                           part))]

    def announce(self, skip=()):
        """The province sends `package_published` again for the version of each package published
        now (the codes in `skip` were just announced); [(code, version)] sent. A city that has it
        changes nothing; one that joined later gets it."""
        if not self.hands_down:
            return []
        sent = []
        for code in self.store.codes():
            found = None if code in skip else self.store.latest(code, PUBLISHED)
            if found is None:
                continue
            events = self._announcement(code, found.version, found.definition)
            if events and self.store.add_events(code, found.version, events):
                sent.append((code, found.version))
        return sent

    # a city takes them ------------------------------------------------------------------------
    def takes_from(self, site):
        """Whether this catalog takes the versions site `site` publishes (it is its upstream)."""
        return bool(self.upstream) and site == self.upstream

    def receive(self, site, upstream):
        """`package_published` from site `site` (the event's header), as a definitions.UpstreamVersion.
        Taken only from this catalog's upstream; its own events and other sites' are ignored
        (None). The version is kept once per (code, version), and the city's version derived from
        it: (code, city version, "published"), or "unchanged" when the city's version is built on it
        (or on a newer one, or on the same content) already. A version that is no version (digest,
        code or home that do not fit) is refused (InvalidArgument) and not kept; one with other
        content under a number kept already is refused (FailedPrecondition); one the city's layer
        does not fit is kept with the problem, and refused (FailedPrecondition) saying so."""
        if not self.takes_from(site):
            return None
        definitions.check_upstream(upstream, self.site)
        if not self.store.add_upstream(upstream):
            kept = self.store.upstream(site, upstream.code, upstream.version)
            if kept is not None and kept.digest != upstream.digest:
                raise FailedPrecondition(f"{site} sent version {upstream.version} of {upstream.code} again with "
                                         f"other content ({upstream.digest[:12]}, kept {kept.digest[:12]}); the "
                                         "first is kept")
        return self._derive_published(upstream)

    def _derive_published(self, upstream):
        code = upstream.code
        for _ in range(3):  # the city's api (a reload) or another worker may write the same package
            # the city's newest version that is not a draft: the one it published (or has retired since)
            current = max((v for v in self.store.versions(code) if v.status is not DRAFT),
                          key=lambda v: v.version, default=None)
            on = definitions.built_on(current.definition) if current else {}
            if current is not None and on.get("site") == upstream.site and (
                    on["version"] >= upstream.version or on["digest"] == upstream.digest):
                return (code, current.version, "unchanged")
            home = current.definition["home"] if current is not None else NATIONAL
            if not on and home != NATIONAL and definitions.within(home, self.site):
                self.store.note_upstream(upstream.site, code, upstream.version, f"{code} is a local package here")
                raise FailedPrecondition(f"package {code} is a local package of {self.site}; version "
                                         f"{upstream.version} from {upstream.site} is kept but not used")
            try:
                # the layer of the city's current version; the data folder's when it has none yet
                # (or only a version from before it took its packages from above)
                layer = definitions.layer_of(current.definition, self.site) if current and on else self._folder_layer()
                derived = definitions.derive(upstream, layer)
                definitions.validate_definition(derived)
            except InvalidArgument as exc:
                self.store.note_upstream(upstream.site, code, upstream.version, exc.message)
                raise FailedPrecondition(f"version {upstream.version} of {code} from {upstream.site} is kept, but "
                                         f"the overlays of {self.site} do not fit it: {exc.message}; fix them and "
                                         "ReloadCatalog, then publish the draft") from None
            number = self._put_published(code, _stored(derived))
            if number is None:
                continue
            self._retire_before(code, number)
            self.store.note_upstream(upstream.site, code, upstream.version, "")
            self._redraft(upstream)
            return (code, number, "published")
        raise ChangedMeanwhile(f"package {code} changed three times while version {upstream.version} from "
                               f"{upstream.site} was applied; tried again later")

    def _put_published(self, code, definition):
        """Store a derived definition as the newest published version (a pending draft gives up its
        number); the number, or None when another writer came first."""
        digest = definitions.digest(definition)
        latest = self.store.latest(code)
        if latest is None or latest.status is not DRAFT:
            number = (latest.version if latest else 0) + 1
            return number if self.store.add_version(code, number, PUBLISHED, definition, digest) else None
        if not self.store.replace_draft(code, latest.version, definition, digest):
            return None
        if not self.store.set_status(code, latest.version, DRAFT, PUBLISHED):
            found = self.store.version(code, latest.version)  # an operator published it meanwhile: ours
            if found is None or found.status is not PUBLISHED or found.digest != digest:
                return None
        return latest.version

    def _folder_layer(self):
        return definitions.split_local(self.reader(self.data_dir), self.site)[1]

    def _redraft(self, upstream):
        """The data folder's layer on the new upstream version: a draft when it differs from what
        was just published (an operator's edit not yet published). A folder that does not fit is
        left for the operator's next ReloadCatalog to name."""
        try:
            derived = definitions.derive(upstream, self._folder_layer())
            definitions.validate_definition(derived)
            definition = _stored(derived)
            return self._record(upstream.code, definition, definitions.digest(definition))
        except (InvalidArgument, FailedPrecondition):
            return None

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
