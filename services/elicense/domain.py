"""Electronic licences (电子证照): GB/T 36904-shaped identifiers, the canonical form that is signed,
and verification. Keys and signatures are Ed25519 through the `cryptography` package."""
import base64
import dataclasses
import datetime
import enum
import json
import re

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from services.common import china
from services.common.ids import mod37_36_check_char

ROOT_OID = "1.2.156.3005.2"
CST = china.CST  # licence dates are dates in China


class LicenseStatus(str, enum.Enum):
    """A licence is valid until it is revoked (by its issuer, or because its case was withdrawn) or
    superseded (a later licence replaced it: the buyer's 不动产权证书 the seller's). How a status is
    written outside (MongoDB, the PDF, the proto enum) is services.elicense.codec's business."""
    VALID = "valid"
    REVOKED = "revoked"
    SUPERSEDED = "superseded"


VALID, REVOKED, SUPERSEDED = LicenseStatus.VALID, LicenseStatus.REVOKED, LicenseStatus.SUPERSEDED


class Decision(str, enum.Enum):
    """A department's decision on an item (joint_review's opinion)."""
    UNSPECIFIED = "unspecified"
    APPROVE = "approve"
    REJECT = "reject"
    RECTIFY = "rectify"


class ResultType(str, enum.Enum):
    """What an item results in: only a licence item gets a licence."""
    UNSPECIFIED = "unspecified"
    LICENSE = "license"
    RECORD = "record"
    PAYMENT = "payment"


@dataclasses.dataclass(frozen=True)
class Party:
    """Whom a licence is issued to: the item's holder party (the applicant, the newborn, the
    deceased, the buyer, the enterprise …); `code_type`: GB/T 36903 type of `id_number`."""
    role: str = ""
    name: str = ""
    id_number: str = ""
    code_type: str = ""


@dataclasses.dataclass(frozen=True)
class Supersedes:
    """The licences a result replaces: the valid ones of `license_type_code` held by `holder_code`;
    `license_ids`: those the case named (empty: every one issued before the new licence)."""
    holder_code: str = ""
    license_type_code: str = ""
    license_ids: tuple = ()
    party: str = ""


@dataclasses.dataclass(frozen=True)
class Opinion:
    """A department's opinion on one item of a case, as far as licences go."""
    case_no: str
    item_code: str
    decision: Decision
    result_type: ResultType
    department_code: str = ""
    region_code: str = ""
    license_type_code: str = ""
    license_type_name: str = ""
    issuer_name: str = ""  # the implementing body's name
    holder: Party = Party()
    supersedes: Supersedes | None = None

    @property
    def issues_a_licence(self):
        return self.decision is Decision.APPROVE and self.result_type is ResultType.LICENSE


@dataclasses.dataclass(frozen=True)
class Withdrawal:
    """joint_review closed a withdrawn case: `license_ids` those it knows were issued for it."""
    case_no: str
    license_ids: tuple = ()
    after_conclusion: bool = False


class SigningAlgorithm(str, enum.Enum):
    """How a signing key signs (a closed set: the proto enum SigningAlgorithm, codec.py)."""
    ED25519 = "Ed25519"


@dataclasses.dataclass(frozen=True)
class SigningKey:
    """A region's Ed25519 key (base64 raw keys) that this site holds; only the active one signs, all
    of them verify. `created_at`/`retired_at`: seconds since the epoch (0: not recorded / still
    signing); a rotation retires the older keys."""
    key_id: str
    region_code: str
    private_key: str
    public_key: str
    active: bool = True
    created_at: float = 0.0
    retired_at: float = 0.0


def key_identifier(region_code, serial, site=""):
    """The id of a key this site (`site`, its region code) makes for `region_code`:
    `<region>-<serial>`; a key for a region other than the site's own (a city issuing the licence of
    a provincial item) also names the site, `<region>-<serial>@<site>`, so that two sites never
    choose the same key id and every site's key directory can tell their keys apart."""
    key_id = f"{region_code}-{serial}"
    return key_id if not site or site == region_code else f"{key_id}@{site}"


@dataclasses.dataclass(frozen=True)
class PublishedKey:
    """A signing key as sites tell each other (the public half only): what a site publishes of each
    of its own keys (`signing_key_published`), and what a site's key directory keeps of the keys
    other sites published. `site_region`: the site that holds the private half; `issuer_region`:
    the issuer region whose licences it signs; `valid_from`/`valid_until`: seconds since the epoch,
    0 when not recorded / while it still signs."""
    site_region: str
    key_id: str
    issuer_region: str
    public_key: str
    algorithm: SigningAlgorithm | None = SigningAlgorithm.ED25519
    valid_from: float = 0.0
    valid_until: float = 0.0

    @property
    def active(self):
        return not self.valid_until

    @property
    def event_id(self):
        """The id of its `signing_key_published`: derived from the site, the key id and its
        retirement, so announcing the same key again (every start of the worker, a sweep) is
        absorbed by the consumers' inboxes, and its retirement is news."""
        until = f":until:{round(self.valid_until * 1000)}" if self.valid_until else ""
        return f"signing_key_published:{self.site_region}:{self.key_id}{until}"


def published(key, site):
    """What site `site` publishes of its own SigningKey `key`."""
    return PublishedKey(site_region=site, key_id=key.key_id, issuer_region=key.region_code,
                        public_key=key.public_key, algorithm=SigningAlgorithm.ED25519,
                        valid_from=key.created_at or 0.0,
                        valid_until=(key.retired_at or 0.0) if not key.active else 0.0)


def retirement(key, region_keys):
    """When `key` stopped signing (0 while it signs): as recorded since keys are dated, else (a key
    retired before that) when the first later key of its region (`region_keys`) was made, since a
    rotation retires the older keys as it makes the new one."""
    if key.active:
        return 0.0
    if key.retired_at:
        return key.retired_at
    later = [k.created_at for k in region_keys if k.created_at > key.created_at]
    return min(later) if later else 0.0


_KEY_ID = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._:@-]{0,63}$")
_REGION = re.compile(r"^[0-9]{6}$")


def published_key_problems(key):
    """Why another site's PublishedKey cannot go into the key directory (empty: it can)."""
    problems = []
    if not _REGION.match(key.site_region or ""):
        problems.append(f"site_region {key.site_region[:12]!r} is not a 6-digit region code")
    if not _REGION.match(key.issuer_region or ""):
        problems.append(f"issuer_region {key.issuer_region[:12]!r} is not a 6-digit region code")
    if not _KEY_ID.match(key.key_id or ""):
        problems.append(f"key_id {key.key_id[:70]!r} is not a key id (letters, digits, . _ : @ -; at most 64)")
    if key.algorithm is not SigningAlgorithm.ED25519:
        problems.append("algorithm: only Ed25519 keys are verified here")
    elif not public_key_valid(key.public_key):
        problems.append("public_key is not a base64 raw Ed25519 public key")
    if key.valid_from and key.valid_until and key.valid_until < key.valid_from:
        problems.append("valid_until is before valid_from")
    return problems


def public_key_valid(public_b64):
    try:
        raw = base64.b64decode(public_b64 or "", validate=True)
        Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:  # binascii.Error included
        return False
    return len(raw) == 32


class DirectoryOutcome(str, enum.Enum):
    """What a key published by another site did to this site's key directory."""
    ADDED = "added"          # a key the directory did not know
    UPDATED = "updated"      # a known key (same public key), now with its retirement or start
    UNCHANGED = "unchanged"  # nothing new: a repeat


def merged_directory_key(known, incoming):
    """The directory entry after another announcement of a known key, or None when the two do not
    describe the same key (another public key, site, issuer region or algorithm): a key id already
    known is never given another key. Dates once known stay (an older announcement arriving late
    does not make a retired key active again)."""
    same = (known.public_key, known.site_region, known.issuer_region, known.algorithm) == (
        incoming.public_key, incoming.site_region, incoming.issuer_region, incoming.algorithm)
    if not same:
        return None
    return dataclasses.replace(known, valid_from=known.valid_from or incoming.valid_from,
                               valid_until=known.valid_until or incoming.valid_until)


class StatusCheck(str, enum.Enum):
    """How far verifying a licence document got with the licence's status."""
    CHECKED = "checked"                   # this site issued the licence and checked its status
    AT_ISSUING_SITE = "at_issuing_site"   # another site issued it: its status is known there only
    NOT_REACHED = "not_reached"           # the document failed before its status mattered


@dataclasses.dataclass(frozen=True)
class DocumentCheck:
    """The verdict on a licence document: `fields` as the document carries them (with the status
    only when `status_check` is CHECKED), `issuing_site` the site holding the key that signed it."""
    valid: bool
    reason: str
    fields: dict
    issuing_site: str = ""
    status_check: StatusCheck = StatusCheck.NOT_REACHED


# --- the events elicense publishes --------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LicenseIssued:
    license_id: str
    case_no: str
    item_code: str
    type_code: str
    holder_code: str
    document_key: str


@dataclasses.dataclass(frozen=True)
class LicenseRevoked:
    """A licence no longer valid: revoked, or superseded (`superseded_by` the licence that replaced it)."""
    license_id: str
    case_no: str
    holder_code: str
    reason: str
    revoked_by: str
    superseded_by: str = ""


SIGNED_FIELDS = ("license_id", "type_code", "type_name", "license_no", "issuer_name", "issuer_code", "valid_from",
                 "valid_to", "holder_name", "holder_code", "holder_code_type", "item_code", "case_no", "key_id")


def license_identifier(type_code, issuer_code, serial, version=1):
    """`1.2.156.3005.2.<type>.<issuer>.<serial>.<version>.<check>`; the check character is
    ISO 7064 MOD 37,36 over the type, issuer, serial and version without the dots."""
    body = f"{type_code}{issuer_code}{serial}{version:03d}".upper()
    return f"{ROOT_OID}.{type_code}.{issuer_code}.{serial}.{version:03d}.{mod37_36_check_char(body)}"


def identifier_valid(license_id):
    parts = license_id.split(".")
    if len(parts) != 10 or ".".join(parts[:5]) != ROOT_OID:
        return False
    type_code, issuer, serial, version, check = parts[5:]
    try:
        return mod37_36_check_char(f"{type_code}{issuer}{serial}{version}".upper()) == check
    except ValueError:  # a character outside 0-9A-Z
        return False


def to_supersede(candidates, issued, type_code, named_ids=()):
    """Which of the superseded party's licences (`candidates`) a newly `issued` licence replaces:
    valid ones of `type_code`, never the new licence itself; those named (`named_ids`: handed in
    with the case) when any are given, else every one issued before the new licence."""
    out = []
    for lic in candidates:
        if lic.get("license_id") == issued["license_id"] or lic.get("status", VALID) != VALID:
            continue
        if lic.get("type_code") != type_code:
            continue
        if named_ids:
            if lic["license_id"] in named_ids:
                out.append(lic)
        elif (lic.get("issued_at") or "") < (issued.get("issued_at") or "~"):
            out.append(lic)
    return out


def canonical(fields):
    """The bytes that are signed: the directory fields as sorted, compact UTF-8 JSON."""
    return json.dumps({k: fields.get(k, "") for k in SIGNED_FIELDS}, ensure_ascii=False, sort_keys=True,
                      separators=(",", ":")).encode("utf-8")


def new_key():
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
    return base64.b64encode(private).decode(), public_of(private_b64=base64.b64encode(private).decode())


def public_of(private_b64):
    key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(private_b64))
    return base64.b64encode(key.public_key().public_bytes(serialization.Encoding.Raw,
                                                          serialization.PublicFormat.Raw)).decode()


def sign(fields, private_b64):
    key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(private_b64))
    return base64.b64encode(key.sign(canonical(fields))).decode()


def verify(fields, public_b64, today=None):
    """(valid, reason) for a licence's fields against its issuer's public key."""
    if not identifier_valid(fields.get("license_id", "")):
        return False, "the licence identifier's check character is wrong"
    try:
        Ed25519PublicKey.from_public_bytes(base64.b64decode(public_b64)).verify(
            base64.b64decode(fields.get("signature", "")), canonical(fields))
    except (InvalidSignature, ValueError):
        return False, "the signature does not match the licence's content"
    if fields.get("status", VALID) == REVOKED:
        return False, "the licence has been revoked"
    if fields.get("status", VALID) == SUPERSEDED:
        return False, (f"the licence has been superseded by {fields.get('superseded_by') or 'a later licence'}"
                       f"{' on ' + fields['superseded_at'][:10] if fields.get('superseded_at') else ''}; "
                       "it is no longer valid")
    today = today or datetime.datetime.now(CST).date().isoformat()
    if fields.get("valid_from") and today < fields["valid_from"]:
        return False, f"the licence is valid only from {fields['valid_from']}"
    if fields.get("valid_to") and today > fields["valid_to"]:
        return False, f"the licence expired on {fields['valid_to']}"
    return True, "signature, validity and status check out"
