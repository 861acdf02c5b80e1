"""Package definitions (一件事 and its 单项事) as the data files give them: building one definition
per package code from what the loader read, checking it, and its digest. Pure Python.

A *definition* is everything one package code needs, kept together so that one version of it is a
frozen snapshot: the base package (national, or local to one region), the overlays of the regions
below it, their implementing bodies, and the department names and form fields it uses. How a
definition applies in a region is services.catalog.resolution; the notice and the savings figures
are services.catalog.notice."""
import dataclasses
import datetime
import enum
import hashlib
import json
import re

from services.common import ids
from services.common.errors import InvalidArgument
from services.common.forms import FIELD_TYPES, VALIDATORS

NATIONAL = "national"
REGION_RE = re.compile(r"[0-9]{6}")
BASIC_CODE_RE = re.compile(r"[0-9A-Z]{12}")
IMPLEMENTING_CODE_RE = re.compile(r"[0-9A-Z]{1,30}")
PACKAGE_CODE_RE = re.compile(r"[0-9A-Z]{2,16}")
MATERIAL_FORMS = ("paper", "scan", "e-licence")
RESULT_TYPES = ("RESULT_TYPE_LICENSE", "RESULT_TYPE_RECORD", "RESULT_TYPE_PAYMENT")
AUDIENCES = ("AUDIENCE_PERSON", "AUDIENCE_ENTERPRISE")
CHANNELS = ("DELIVERY_CHANNEL_ELECTRONIC", "DELIVERY_CHANNEL_WINDOW", "DELIVERY_CHANNEL_MAIL")
# parties (当事人) a package's cases name besides the applicant; `agent` (代理人, acting under a power
# of attorney) is allowed in every package without being declared
APPLICANT = "applicant"
AGENT: dict[str, str | bool] = {"role": "agent", "name": "代理人", "id_kind": "citizen_id", "required": False}
ROLE_RE = re.compile(r"[a-z][a-z_]{1,31}")
ID_KINDS = ("citizen_id", "credit_code", "any")
OVERLAY_KEYS = ("implementing_code", "implementing_bodies", "promised_limit_days", "disable_items",
                "add_items", "add_materials", "add_situations")
# an item implemented above the case's region (sites): its task goes to that level's desk
IMPLEMENTING_LEVELS = ("province",)
# what one item costs the applicant when done on its own (overridable per item with `separately`)
DEFAULT_STEPS_SEPARATELY = 4   # 申请、受理、审查、决定/出件
DEFAULT_TRIPS_SEPARATELY = 2   # 递交材料、领取结果


# --- versions ---------------------------------------------------------------------------------

class VersionStatus(enum.StrEnum):
    """Where a version of a package stands: a draft (not offered), published (offered; at most one
    per code), retired (no new cases; cases on it still read it by number)."""

    DRAFT = "draft"
    PUBLISHED = "published"
    RETIRED = "retired"


# onething.catalog.v1.VersionStatus, by name and number (api.py and worker.py encode with these)
STATUS_PROTO_NAMES = {VersionStatus.DRAFT: "VERSION_STATUS_DRAFT", VersionStatus.PUBLISHED: "VERSION_STATUS_PUBLISHED",
                      VersionStatus.RETIRED: "VERSION_STATUS_RETIRED"}
STATUS_PROTO_NUMBERS = {VersionStatus.DRAFT: 1, VersionStatus.PUBLISHED: 2, VersionStatus.RETIRED: 3}
# what the store writes (the strings package_versions has always held; renaming a member or a proto
# value must not change them)
STATUS_STORED = {VersionStatus.DRAFT: "draft", VersionStatus.PUBLISHED: "published", VersionStatus.RETIRED: "retired"}
_STATUS_OF_STORED = {v: k for k, v in STATUS_STORED.items()}


def status_of_stored(value: str) -> VersionStatus:
    return _STATUS_OF_STORED[value]


@dataclasses.dataclass(frozen=True)
class PackageVersion:
    """One stored version of a package code: its definition (a frozen snapshot) and its status."""

    code: str
    version: int
    status: VersionStatus
    digest: str
    definition: dict
    created_at: datetime.datetime | None = None
    published_at: datetime.datetime | None = None
    retired_at: datetime.datetime | None = None

    @property
    def name(self) -> str:
        return self.definition["base"]["name"]


# --- regions and levels ------------------------------------------------------------------------


def check_region(region_code):
    if not isinstance(region_code, str) or not REGION_RE.fullmatch(region_code) or not region_code.isascii():
        raise InvalidArgument(f"region code {region_code!r} is not a 6-digit GB/T 2260 code (e.g. 440100)")


def region_chain(region_code):
    """The levels a region belongs to, broadest first: national, province, city, county."""
    check_region(region_code)
    chain = [NATIONAL]
    for level in (region_code[:2] + "0000", region_code[:4] + "00", region_code):
        if level not in chain and level != "000000":
            chain.append(level)
    return chain


def level_digit(level):
    """The level digit of an implementing code: 1 national, 2 province, 3 city, 4 county."""
    if level == NATIONAL:
        return "1"
    if level.endswith("0000"):
        return "2"
    if level.endswith("00"):
        return "3"
    return "4"


# --- order ------------------------------------------------------------------------------------


def topological_order(items):
    """Item codes in an order where every prerequisite comes first; a cycle is an error."""
    by_code = {i["code"]: i for i in items}
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(code, path):
        if state.get(code) == "done":
            return
        if state.get(code) == "visiting":
            raise InvalidArgument(f"items {' -> '.join([*path, code])} form a cycle")
        state[code] = "visiting"
        for pre in by_code[code].get("prerequisites", []):
            if pre in by_code:
                visit(pre, [*path, code])
        state[code] = "done"
        order.append(code)

    for item in items:
        visit(item["code"], [])
    return order


# --- definitions from the data files -----------------------------------------------------------


def _plain_copy(value):
    return json.loads(json.dumps(value, ensure_ascii=False))


def build_definitions(raw):
    """{code: definition} from what the loader read: raw = {"departments", "fields", "regions",
    "packages": [(source, package)], "overlays": [(source, region, overlay)]}. Local packages are
    files of kind `package` under overlays/<region>/ (the loader passes them as packages with
    `home` set). Raises InvalidArgument naming the file for what does not fit together."""
    defs: dict[str, dict] = {}
    for source, pkg in raw["packages"]:
        pkg = _plain_copy(pkg)
        home = pkg.pop("home", NATIONAL)
        pkg.pop("kind", None)
        code = pkg.get("code")
        if not code:
            raise InvalidArgument(f"{source}: a package needs a code")
        if code in defs:
            raise InvalidArgument(f"{source}: package {code} is defined twice (also in {defs[code]['source']})")
        defs[code] = {"code": code, "home": home, "source": source, "base": pkg, "overlays": {}, "bodies": {}}
    bodies: dict[str, dict] = {}
    for source, region, overlay in raw["overlays"]:
        found_bodies, changes_by_code = _read_overlay(source, region, overlay)
        if found_bodies:
            bodies.setdefault(region, {}).update(found_bodies)
        for code, changes in changes_by_code.items():
            if code not in defs:
                raise InvalidArgument(f"{source}: overlay for package {code}, which no data file defines")
            if region in defs[code]["overlays"]:
                raise InvalidArgument(f"{source}: a second overlay of {code} for region {region}")
            defs[code]["overlays"][region] = changes
    for d in defs.values():
        reach = [r for r in bodies if d["home"] == NATIONAL or d["home"] in region_chain(r)]
        d["bodies"] = {r: bodies[r] for r in sorted(reach)}
        _complete(d, raw["departments"], raw["fields"])
        d["regions"] = dict(raw.get("regions") or {})
    return defs


def _read_overlay(source, region, overlay):
    """One overlay file: ({department: implementing body}, {package code: changes}), checked for
    what does not fit (unknown keys, a region that is not its folder's)."""
    unknown = set(overlay) - {"kind", "region", "implementing_bodies", "packages"}
    if unknown:
        raise InvalidArgument(f"{source}: unknown overlay keys {', '.join(sorted(unknown))}")
    if str(overlay.get("region", region)) != region:
        raise InvalidArgument(f"{source}: says region {overlay.get('region')} but lies in the folder of {region}")
    check_region(region)
    found_bodies = {dept: _plain_copy(body) for dept, body in (overlay.get("implementing_bodies") or {}).items()}
    changes = {code: _plain_copy(c or {}) for code, c in (overlay.get("packages") or {}).items()}
    return found_bodies, changes


def _complete(d, departments, fields):
    """The department names and form fields a definition uses, taken from the dictionaries given
    (`missing` names what they lack)."""
    items = list(d["base"].get("items", []))
    for ov in d["overlays"].values():
        items += ov.get("add_items", []) or []
    used_depts = {d["base"].get("lead_department")} | {i.get("department_code") for i in items}
    for r in d["bodies"]:
        used_depts |= set(d["bodies"][r])
    for ov in d["overlays"].values():
        used_depts |= set(ov.get("implementing_bodies") or {})
    d["departments"] = {c: n for c, n in departments.items() if c in used_depts}
    keys = set(d["base"].get("form_fields", []))
    for i in items:
        keys |= set(i.get("form_fields", []))
    d["fields"] = {k: v for k, v in fields.items() if k in keys}
    d["missing"] = {"departments": sorted(c for c in used_depts if c not in departments),
                    "fields": sorted(k for k in keys if k not in fields)}
    return d


def digest(defn):
    """sha256 of a definition's content (what decides whether a reload changed anything)."""
    body = {k: v for k, v in defn.items() if k != "source"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def bare_definition(pkg, departments, fields=None):
    """A definition of one package with no overlays (tests and tools of other services)."""
    keys = set(pkg.get("form_fields", [])) | {k for i in pkg.get("items", []) for k in i.get("form_fields", [])}
    fields = fields or {}
    return {"code": pkg["code"], "home": NATIONAL, "base": pkg, "overlays": {}, "bodies": {},
            "departments": dict(departments), "regions": {},
            "fields": {k: fields.get(k, {"label": k}) for k in keys}}


# --- sites: a province hands its packages down, a city puts its own layer on top -----------------
#
# A site is one deployment for one region. The province's catalog owns the national base and its
# own overlay: it publishes each version of a package it owns (`package_published`) with the
# definition a city needs, its `handed_down` part. A city's catalog does not own the base: it keeps
# what its province published (UpstreamVersion) and derives its own versions from it with its own
# `LocalLayer` (the overlays and implementing bodies of its region and the regions below, read from
# its data folder) on top. A derived definition names the upstream version it is built on.


def is_province(region_code):
    """A province-level region code (广东省 440000): the level that owns the national base of a site."""
    return isinstance(region_code, str) and REGION_RE.fullmatch(region_code) is not None \
        and region_code.endswith("0000") and region_code != "000000"


def within(region_code, level):
    """`region_code` is `level` or lies under it (GB/T 2260): 440106 within 440100 within 440000."""
    return level == NATIONAL or level in region_chain(region_code)


@dataclasses.dataclass(frozen=True)
class UpstreamVersion:
    """A version of a package as the site above published it (`site`: its region code), kept by a
    site below: its definition is the handed-down part (base, the upper levels' overlays and bodies,
    the dictionaries they use), `digest` that definition's. `problem` says why no version of this
    site could be derived from it (its own layer does not fit), empty when one was."""

    site: str
    code: str
    version: int
    digest: str
    definition: dict
    received_at: datetime.datetime | None = None
    problem: str = ""


@dataclasses.dataclass(frozen=True)
class LocalLayer:
    """What a site that takes its packages from above adds of its own: for its region and the
    regions below it, the overlays ({package code: {region: changes}}) and implementing bodies
    ({region: {department: body}}), and the dictionaries its additions use."""

    region: str
    overlays: dict
    bodies: dict
    departments: dict
    fields: dict
    regions: dict


def owned_by(defn, site):
    """Whether the package is the site's to hand down: a national one, or local to the site's own
    region or a level above it (a city's local package stays with the city)."""
    return defn["home"] == NATIONAL or defn["home"] in region_chain(site)


def handed_down(defn, site):
    """The part of a definition the sites below `site` need: the base with the overlays and
    implementing bodies of `site` and the levels above it, the department names and form fields
    those use and the names of the regions within `site`. The overlays of the levels below (each
    city's) stay behind: each lower site has its own."""
    upper = set(region_chain(site))
    part = {"code": defn["code"], "home": defn["home"], "base": _plain_copy(defn["base"]),
            "overlays": {r: _plain_copy(ov) for r, ov in defn["overlays"].items() if r in upper},
            "bodies": {r: _plain_copy(b) for r, b in defn["bodies"].items() if r in upper}}
    _complete(part, defn["departments"], defn["fields"])
    del part["missing"]  # a definition that validated uses nothing its dictionaries lack
    part["regions"] = {code: name for code, name in (defn.get("regions") or {}).items()
                       if REGION_RE.fullmatch(str(code)) and within(str(code), site)}
    return part


def split_local(raw, region):
    """A lower site's data folder (what the loader read) split in two: (the folder as
    build_definitions takes it, with only the packages local to `region` or below and their
    overlays; the LocalLayer of the packages it takes from above). The national base list and the
    overlays of other regions in the folder are not the site's and are left out."""
    packages = [(source, p) for source, p in raw["packages"]
                if p.get("home", NATIONAL) != NATIONAL and within(p["home"], region)]
    local_codes = {p.get("code") for _, p in packages}
    overlays: list[tuple] = []
    layer_overlays: dict[str, dict] = {}
    layer_bodies: dict[str, dict] = {}
    for source, r, overlay in raw["overlays"]:
        check_region(r)
        if not within(r, region):
            continue
        found_bodies, changes = _read_overlay(source, r, overlay)
        if found_bodies:
            layer_bodies.setdefault(r, {}).update(found_bodies)
        for code, change in changes.items():
            if code in local_codes:
                continue
            if r in layer_overlays.setdefault(code, {}):
                raise InvalidArgument(f"{source}: a second overlay of {code} for region {r}")
            layer_overlays[code][r] = change
        own = dict(overlay, packages={c: v for c, v in (overlay.get("packages") or {}).items() if c in local_codes})
        overlays.append((source, r, own))
    local = dict(raw, packages=packages, overlays=overlays)
    layer = LocalLayer(region=region, overlays=layer_overlays, bodies=layer_bodies,
                       departments=dict(raw.get("departments") or {}), fields=dict(raw.get("fields") or {}),
                       regions={str(k): v for k, v in (raw.get("regions") or {}).items()})
    return local, layer


def built_on(defn):
    """The upstream version a derived definition is built on: {"site", "version", "digest"}; {} for
    a definition of the site's own."""
    return dict(defn.get("upstream") or {})


def layer_of(defn, region):
    """The LocalLayer a derived definition holds (to put on a newer upstream version)."""
    own = lambda r: REGION_RE.fullmatch(str(r)) is not None and within(str(r), region)
    return LocalLayer(region=region, overlays={defn["code"]: {r: ov for r, ov in defn["overlays"].items() if own(r)}},
                      bodies={r: b for r, b in defn["bodies"].items() if own(r)},
                      departments=dict(defn["departments"]), fields=dict(defn["fields"]),
                      regions=dict(defn.get("regions") or {}))


def check_upstream(upstream, region):
    """Raise InvalidArgument unless `upstream` is a version `region` can take: a definition of its
    code, matching its digest, of a package national or local to a level above `region`."""
    defn = upstream.definition
    where = f"version {upstream.version} of {upstream.code} from {upstream.site}"
    if not PACKAGE_CODE_RE.fullmatch(str(upstream.code)) or not isinstance(upstream.version, int) \
            or upstream.version < 1:
        raise InvalidArgument(f"{where}: not a package code (2-16 characters 0-9A-Z) and version number (1 or more)")
    if not isinstance(defn, dict) or not isinstance(defn.get("base"), dict):
        raise InvalidArgument(f"{where} carries no definition")
    if defn.get("code") != upstream.code:
        raise InvalidArgument(f"{where} defines package {defn.get('code')!r}")
    if digest(defn) != upstream.digest:
        raise InvalidArgument(f"{where}: the definition does not match its digest {str(upstream.digest)[:12]!r}")
    home = defn.get("home")
    if home != NATIONAL and (not isinstance(home, str) or not REGION_RE.fullmatch(home)
                             or home not in region_chain(region)[:-1]):
        raise InvalidArgument(f"{where}: the package belongs to region {home!r}, not to a level above {region}")


def derive(upstream, layer):
    """The definition of `layer.region`'s version of a package from the upstream version: the
    handed-down part (of it only the levels above `layer.region`: a lower level's overlay or body
    there would not be the upstream's to give) with the layer on top, and the upstream version it
    is built on. Raises InvalidArgument for an upstream version `layer.region` cannot take
    (check_upstream); validate_definition checks the result like any other."""
    check_upstream(upstream, layer.region)
    defn = upstream.definition
    home = defn["home"]
    above = set(region_chain(layer.region)[:-1])
    reaches = lambda r: home == NATIONAL or home in region_chain(r)
    overlays = {r: _plain_copy(ov) for r, ov in (defn.get("overlays") or {}).items() if r in above}
    overlays.update({r: _plain_copy(ov) for r, ov in layer.overlays.get(upstream.code, {}).items() if reaches(r)})
    bodies = {r: _plain_copy(b) for r, b in (defn.get("bodies") or {}).items() if r in above}
    bodies.update({r: _plain_copy(b) for r, b in layer.bodies.items() if reaches(r)})
    derived = {"code": upstream.code, "home": home, "source": f"{upstream.site} v{upstream.version}",
               "base": _plain_copy(defn["base"]), "overlays": dict(sorted(overlays.items())),
               "bodies": dict(sorted(bodies.items()))}
    _complete(derived, {**layer.departments, **(defn.get("departments") or {})},
              {**layer.fields, **(defn.get("fields") or {})})
    derived["regions"] = {**layer.regions, **(defn.get("regions") or {})}
    derived["upstream"] = {"site": upstream.site, "version": int(upstream.version), "digest": upstream.digest}
    return derived


# --- checks -------------------------------------------------------------------------------------


def check_item(item, where, departments, materials, fields, roles=None):
    code = item.get("code")
    if not isinstance(code, str) or not BASIC_CODE_RE.fullmatch(code):
        raise InvalidArgument(f"{where}: item code {code!r} is not a 12-character GB/T 39554 basic code")
    if not item.get("name"):
        raise InvalidArgument(f"{where}: item {code} has no name")
    if item.get("department_code") not in departments:
        raise InvalidArgument(f"{where}: item {code}: department {item.get('department_code')} is unknown")
    for key in ("statutory_limit_days", "promised_limit_days"):
        if not isinstance(item.get(key), int) or item[key] < 0:
            raise InvalidArgument(f"{where}: item {code}: {key} must be a whole number of working days")
    if item["promised_limit_days"] > item["statutory_limit_days"]:
        raise InvalidArgument(f"{where}: item {code}: promised limit {item['promised_limit_days']} is longer "
                              f"than the statutory limit {item['statutory_limit_days']}")
    result = item.get("result") or {}
    if result.get("type") not in RESULT_TYPES:
        raise InvalidArgument(f"{where}: item {code}: result type {result.get('type')!r} is not one of "
                              f"{', '.join(RESULT_TYPES)}")
    if result["type"] == "RESULT_TYPE_LICENSE" and not result.get("license_type_code"):
        raise InvalidArgument(f"{where}: item {code}: a licence result needs its license_type_code")
    _check_result_parties(result, f"{where}: item {code}", roles if roles is not None else party_roles({}))
    for m in item.get("material_codes", []):
        if m not in materials:
            raise InvalidArgument(f"{where}: item {code}: material {m} is not declared by the package")
    for f in item.get("form_fields", []):
        if f not in fields:
            raise InvalidArgument(f"{where}: item {code}: form field {f} is not in fields.yaml")
    level = item.get("implementing_level")
    if level is not None and level not in IMPLEMENTING_LEVELS:
        raise InvalidArgument(f"{where}: item {code}: implementing_level must be one of "
                              f"{', '.join(IMPLEMENTING_LEVELS)}, not {level!r}")
    named = item.get("implementing_region_field")
    if named is not None:
        if named not in item.get("form_fields", []):
            raise InvalidArgument(f"{where}: item {code}: implementing_region_field {named!r} is not one of "
                                  "the item's form fields")
        if (fields.get(named) or {}).get("validator") != "region":
            raise InvalidArgument(f"{where}: item {code}: implementing_region_field {named!r} is not a region field")


def _check_material(m, where, roles=None):
    if not m.get("code") or not m.get("name"):
        raise InvalidArgument(f"{where}: a material needs a code and a name ({m!r})")
    party = m.get("party", APPLICANT)
    roles = roles if roles is not None else party_roles({})
    if party != APPLICANT and party not in roles:
        raise InvalidArgument(f"{where}: material {m['code']} is about party {party!r}, which the package does not "
                              f"name (it names: {', '.join([APPLICANT, *list(roles)])})")
    forms = m.get("forms") or []
    bad = [f for f in forms if f not in MATERIAL_FORMS]
    if not forms or bad:
        raise InvalidArgument(f"{where}: material {m['code']}: forms must be some of {', '.join(MATERIAL_FORMS)}"
                              f" (got {forms})")
    if "e-licence" in forms and not m.get("license_type_code"):
        raise InvalidArgument(f"{where}: material {m['code']} may be an e-licence but names no license_type_code")


def _check_situation(s, where):
    if not s.get("key") or not s.get("question") or not s.get("answers"):
        raise InvalidArgument(f"{where}: a situation needs a key, a question and answers ({s.get('key')!r})")
    if str(s.get("default")) not in {str(a) for a in s["answers"]}:
        raise InvalidArgument(f"{where}: situation {s['key']}: default {s.get('default')!r} is not one of its answers")


def party_roles(pkg):
    """{role: party} of the parties a package's cases name besides the applicant, `agent` included.
    Raises InvalidArgument for a malformed list."""
    roles = {}
    for party in pkg.get("parties") or []:
        if not isinstance(party, dict):
            raise InvalidArgument(f"a party of package {pkg.get('code', '?')} must be a mapping with a role ({party!r})")
        role = party.get("role")
        if not isinstance(role, str) or not ROLE_RE.fullmatch(role):
            raise InvalidArgument(f"party role {role!r} of package {pkg.get('code', '?')} must be 2-32 lower-case "
                                  "letters or _ (e.g. deceased, buyer)")
        if role == APPLICANT:
            raise InvalidArgument(f"package {pkg.get('code', '?')}: the applicant is not a party to declare; "
                                  "every case names its applicant")
        if role in roles:
            raise InvalidArgument(f"package {pkg.get('code', '?')}: party {role} is declared twice")
        if not party.get("name"):
            raise InvalidArgument(f"package {pkg.get('code', '?')}: party {role} needs a name (e.g. 逝者)")
        kind = party.get("id_kind", "any")
        if kind not in ID_KINDS:
            raise InvalidArgument(f"package {pkg.get('code', '?')}: party {role}: id_kind {kind!r} is not one of "
                                  f"{', '.join(ID_KINDS)}")
        roles[role] = {"role": role, "name": str(party["name"]), "id_kind": kind,
                       "required": bool(party.get("required", False))}
    roles.setdefault(str(AGENT["role"]), dict(AGENT))
    return roles


def _check_result_parties(result, where, roles):
    """The result's holder must be the applicant or a party every case names (a required one); what
    it supersedes must be a licence of a party the package knows."""
    holder = result.get("holder_party", APPLICANT)
    if holder != APPLICANT and not (roles.get(holder) or {}).get("required"):
        known = [APPLICANT] + [r for r, p in roles.items() if p["required"]]
        raise InvalidArgument(f"{where}: holder_party {holder!r} is not the applicant or a required party of the "
                              f"package ({', '.join(known)}): every case must name the holder of its result")
    sup = result.get("supersedes")
    if sup is None:
        return
    if not isinstance(sup, dict) or not sup.get("party"):
        raise InvalidArgument(f"{where}: supersedes names the party whose licence the result replaces "
                              "(e.g. supersedes: {party: seller})")
    if result.get("type") != "RESULT_TYPE_LICENSE":
        raise InvalidArgument(f"{where}: only a licence result can supersede a licence")
    if sup["party"] != APPLICANT and sup["party"] not in roles:
        raise InvalidArgument(f"{where}: supersedes a licence of party {sup['party']!r}, which the package does not "
                              f"name (it names: {', '.join([APPLICANT, *list(roles)])})")
    unknown = set(sup) - {"party", "license_type_code"}
    if unknown:
        raise InvalidArgument(f"{where}: supersedes takes party and license_type_code, not {', '.join(sorted(unknown))}")


def validate_package(pkg, departments, fields=None, where=None):
    """Raise InvalidArgument naming the first thing wrong with a base package."""
    where = where or f"package {pkg.get('code', '?')}"
    for key in ("code", "name", "items", "lead_department"):
        if not pkg.get(key):
            raise InvalidArgument(f"{where}: package {pkg.get('code', '?')} has no {key}")
    if not PACKAGE_CODE_RE.fullmatch(str(pkg["code"])):
        raise InvalidArgument(f"{where}: package code {pkg['code']!r} must be 2-16 characters 0-9A-Z")
    if pkg.get("audience", "AUDIENCE_PERSON") not in AUDIENCES:
        raise InvalidArgument(f"{where}: audience {pkg.get('audience')!r} is not one of {', '.join(AUDIENCES)}")
    if pkg["lead_department"] not in departments:
        raise InvalidArgument(f"{where}: package {pkg['code']}: lead department {pkg['lead_department']} is unknown")
    for ch in pkg.get("delivery_channels", []):
        if ch not in CHANNELS:
            raise InvalidArgument(f"{where}: delivery channel {ch!r} is not one of {', '.join(CHANNELS)}")
    fields = fields if fields is not None else {k: {} for i in pkg["items"] for k in i.get("form_fields", [])}
    try:
        roles = party_roles(pkg)
    except InvalidArgument as exc:
        raise InvalidArgument(f"{where}: {exc.message}") from None
    materials = {}
    for m in pkg.get("materials", []):
        _check_material(m, where, roles)
        materials[m["code"]] = m
    for s in pkg.get("situations", []):
        _check_situation(s, where)
    seen = set()
    for item in pkg["items"]:
        check_item(item, where, departments, materials, fields, roles)
        if item["code"] in seen:
            raise InvalidArgument(f"{where}: item {item['code']} is listed twice")
        seen.add(item["code"])
    check_graph(pkg["items"], pkg.get("situations", []), where)


def check_graph(items, situations, where):
    codes = {i["code"] for i in items}
    answers = {s["key"]: {str(a) for a in s["answers"]} for s in situations}
    for item in items:
        for pre in item.get("prerequisites", []):
            if pre not in codes:
                raise InvalidArgument(f"{where}: item {item['code']}: prerequisite {pre} is not in the package")
        for key, value in (item.get("when") or {}).items():
            if key not in answers:
                raise InvalidArgument(f"{where}: item {item['code']} depends on situation {key}, which the "
                                      "package does not ask")
            if str(value) not in answers[key]:
                raise InvalidArgument(f"{where}: item {item['code']}: {value!r} is not an answer of situation {key}")
    topological_order(items)


def validate_definition(defn):
    """Everything a version must satisfy before it is stored: the base package, every overlay's
    changes (shorter promised limits only, optional items only switched off), the implementing
    bodies' credit codes, and a resolution in every region it has an overlay for."""
    if defn["missing"]["departments"]:
        raise InvalidArgument(f"{defn['source']}: departments {', '.join(defn['missing']['departments'])} "
                              "are not in departments.yaml")
    if defn["missing"]["fields"]:
        raise InvalidArgument(f"{defn['source']}: form fields {', '.join(defn['missing']['fields'])} "
                              "are not in fields.yaml")
    departments, fields = defn["departments"], defn["fields"]
    validate_package(defn["base"], departments, fields, where=defn["source"])
    if defn["home"] != NATIONAL:
        check_region(defn["home"])
    for key, f in fields.items():
        if f.get("type", "string") not in FIELD_TYPES:
            raise InvalidArgument(f"fields.yaml: {key}: type {f.get('type')!r} is not one of {', '.join(FIELD_TYPES)}")
        if f.get("validator") and f["validator"] not in VALIDATORS:
            raise InvalidArgument(f"fields.yaml: {key}: validator {f['validator']!r} is not one of {', '.join(VALIDATORS)}")
        if f.get("type") == "choice" and not f.get("choices"):
            raise InvalidArgument(f"fields.yaml: {key}: a choice field needs choices")
    for region, bodies in defn["bodies"].items():
        for dept, body in bodies.items():
            _check_body(body, f"overlays/{region}: implementing body of {dept}")
    for region, ov in defn["overlays"].items():
        where = f"overlays/{region} ({defn['code']})"
        unknown = set(ov) - set(OVERLAY_KEYS)
        if unknown:
            raise InvalidArgument(f"{where}: unknown keys {', '.join(sorted(unknown))}; an overlay may set "
                                  f"{', '.join(OVERLAY_KEYS)}")
        if ov.get("implementing_code") and not IMPLEMENTING_CODE_RE.fullmatch(str(ov["implementing_code"])):
            raise InvalidArgument(f"{where}: implementing code {ov['implementing_code']!r} must be 1-30 characters 0-9A-Z")
        for dept, body in (ov.get("implementing_bodies") or {}).items():
            _check_body(body, f"{where}: implementing body of {dept}")
        for m in ov.get("add_materials", []) or []:
            _check_material(m, where, party_roles(defn["base"]))
        for s in ov.get("add_situations", []) or []:
            _check_situation(s, where)
    # the last check is a resolution in every region the definition reaches (resolution builds on
    # this module, hence the import here)
    from services.catalog.resolution import resolve
    home = defn["home"]
    probe = ["110000"] if home == NATIONAL else [home]
    for region in probe + sorted(set(defn["overlays"]) | set(defn["bodies"])):
        if home == NATIONAL or home in region_chain(region):
            resolve(defn, region, {}, strict=True)


def check_shared_items(defs):
    """An item (one basic code) is the same statutory service wherever it appears: same name and
    department in every package that bundles it."""
    seen: dict[str, tuple] = {}
    for d in defs.values():
        items = list(d["base"]["items"])
        for ov in d["overlays"].values():
            items += ov.get("add_items", []) or []
        for i in items:
            key = (i.get("name"), i.get("department_code"))
            first = seen.setdefault(i["code"], (key, d["code"]))
            if first[0] != key:
                raise InvalidArgument(f"item {i['code']} is {key[0]} ({key[1]}) in {d['code']} but {first[0][0]} "
                                      f"({first[0][1]}) in {first[1]}; one basic code is one item")


def _check_body(body, where):
    if not isinstance(body, dict) or not body.get("name"):
        raise InvalidArgument(f"{where} needs a name")
    problem = ids.credit_code_problem(str(body.get("credit_code", "")))
    if problem:
        raise InvalidArgument(f"{where} ({body['name']}): {problem}")
