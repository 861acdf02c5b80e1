"""Who may do what: signed bearer tokens (JWT, EdDSA/Ed25519) in the `authorization` metadata of
every gRPC call. The region's identity provider signs; services verify with its public keys; for a
local run, `infra.local up` makes a key pair in var/auth/ and `python -m tools.mint_token` signs
tokens.

A token is accepted only when all of this holds:
- header `alg` is EdDSA (never `none`, never an HMAC or RSA algorithm) and `kid` names one of the
  trusted public keys: the identity provider's public key file and, during a key rotation, the keys
  of a JWK set file (ONETHING_AUTH_JWKS_FILE, var/auth/jwks.json), so old and new keys both verify;
- the Ed25519 signature verifies with that key;
- claims `iss` (the identity provider), `aud` (ONETHING_AUTH_AUDIENCE), `sub`, `role`, `iat` and
  `exp` are present; the token is not expired, not issued in the future, and lives no longer than
  ONETHING_AUTH_MAX_TOKEN_SECONDS (exp - iat), whoever minted it;
- `role` is one of ROLES; a clerk, officer and operator carry their region (6-digit GB/T 2260),
  an officer its department.

Claims: sub (citizen ID or credit code for an applicant, staff ID, or `service:<name>`), role, and
for staff their department and region. Authority comes from the verified token, never from a
request field (services/common/policy.py says who may call what).

The identity provider's private key is created once with mode 0600 and never made again silently:
a public key without its private key is an error, not a reason to make a new pair."""
import base64
import datetime
import hashlib
import json
import os
import threading
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from services.common.config import settings
from services.common.errors import PermissionDenied, Unauthenticated

ROLES = ("applicant", "clerk", "officer", "operator", "sre", "service")
STAFF_WITH_REGION = ("clerk", "officer", "operator")
ISSUER = "onething-idp"  # the default of ONETHING_AUTH_ISSUER
ALGORITHM = "EdDSA"


@dataclass(frozen=True)
class Actor:
    sub: str
    role: str
    department: str = ""
    region: str = ""

    def label(self):
        return f"{self.role}:{self.sub}"


# --- keys --------------------------------------------------------------------------------------

def key_paths():
    """(private, public) key files of the identity provider."""
    s = settings()
    return s.auth_private_key_file, s.auth_public_key_file


def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _raw_public(public_key):
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key):
    """The key's id (`kid`): its RFC 7638 JWK thumbprint, so every party computes the same id."""
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": _b64url(_raw_public(public_key))},
                           separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode("ascii")).digest())


def jwk_of(public_key):
    return {"kty": "OKP", "crv": "Ed25519", "x": _b64url(_raw_public(public_key)), "kid": key_id(public_key),
            "use": "sig", "alg": ALGORITHM}


def _load_public(data):
    if isinstance(data, Ed25519PublicKey):
        return data
    key = serialization.load_pem_public_key(data if isinstance(data, bytes) else data.encode())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("the identity provider's key must be an Ed25519 key")
    return key


def _load_private(data):
    key = serialization.load_pem_private_key(data if isinstance(data, bytes) else data.encode(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the identity provider's key must be an Ed25519 key")
    return key


def _write_new(path, data, mode):
    """Create `path` with `mode` from the start (never readable by others in between); an existing
    file is an error."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _check_private_mode(path):
    mode = os.stat(path).st_mode & 0o777
    if mode & 0o077:
        raise RuntimeError(f"the identity provider's private key {path} is readable by others (mode {mode:o}); "
                           f"chmod 600 {path}")


def _public_pem(public_key):
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def ensure_keys():
    """The local identity provider's key pair, made once: the private key with mode 0600 from its
    creation. A public key whose private key is missing is an error (tokens signed with a silently
    made new key would be refused everywhere the old public key is trusted, and the old tokens would
    stop verifying): restore the private key, or remove the public key on purpose to start over."""
    private_path, public_path = key_paths()
    have_private, have_public = os.path.exists(private_path), os.path.exists(public_path)
    if have_private:
        _check_private_mode(private_path)
        if not have_public:  # derived from the private key: nothing new is made
            with open(private_path, "rb") as fh:
                key = _load_private(fh.read())
            _write_new(public_path, _public_pem(key.public_key()), 0o644)
        return
    if have_public:
        raise RuntimeError(f"the identity provider's public key {public_path} exists but its private key "
                           f"{private_path} is missing; refusing to make a new key pair silently. Restore the "
                           f"private key, or remove {public_path} (and any jwks.json) on purpose to start over.")
    os.makedirs(os.path.dirname(private_path) or ".", exist_ok=True)
    key = Ed25519PrivateKey.generate()
    _write_new(private_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()), 0o600)
    _write_new(public_path, _public_pem(key.public_key()), 0o644)


def rotate_keys():
    """A new signing key for the local identity provider; the old public key stays trusted in the
    JWK set file until every token it signed has expired (then remove it from jwks.json). Returns
    (old kid, new kid)."""
    s = settings()
    private_path, public_path = key_paths()
    ensure_keys()
    with open(public_path, "rb") as fh:
        old = _load_public(fh.read())
    keys = _read_jwks(s.auth_jwks_file)
    if key_id(old) not in [k.get("kid") for k in keys]:
        keys.append(jwk_of(old))
    tmp = s.auth_jwks_file + ".tmp"
    with open(tmp, "w") as fh:
        json.dump({"keys": keys}, fh, indent=1)
    os.replace(tmp, s.auth_jwks_file)
    key = Ed25519PrivateKey.generate()
    for path, data, mode in ((private_path, key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()), 0o600),
            (public_path, _public_pem(key.public_key()), 0o644)):
        _write_new(path + ".new", data, mode)
        os.replace(path + ".new", path)
    return key_id(old), key_id(key.public_key())


def _read_jwks(path):
    try:
        with open(path) as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return []
    return [k for k in data.get("keys", []) if isinstance(k, dict)]


_cache: dict = {}
_cache_lock = threading.Lock()


def _stamp(path):
    try:
        st = os.stat(path)
        return (st.st_mtime_ns, st.st_size)
    except FileNotFoundError:
        return None


def trusted_keys():
    """kid -> Ed25519 public key: the identity provider's public key file and every key of the JWK
    set file. Re-read when either file changes (a rotation needs no restart)."""
    s = settings()
    pub, jwks = s.auth_public_key_file, s.auth_jwks_file
    stamp = (pub, _stamp(pub), jwks, _stamp(jwks))
    with _cache_lock:
        if _cache.get("stamp") == stamp:
            return _cache["keys"]
    keys = {}
    if stamp[1] is not None:
        with open(pub, "rb") as fh:
            key = _load_public(fh.read())
        keys[key_id(key)] = key
    for jwk in _read_jwks(jwks):
        if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or not jwk.get("x"):
            continue
        raw = base64.urlsafe_b64decode(jwk["x"] + "=" * (-len(jwk["x"]) % 4))
        key = Ed25519PublicKey.from_public_bytes(raw)
        keys[jwk.get("kid") or key_id(key)] = key
    with _cache_lock:
        _cache.update(stamp=stamp, keys=keys)
    return keys


# --- tokens ------------------------------------------------------------------------------------

def mint(sub, role, department="", region="", hours=8, private_key_pem=None, audience=None, issued_at=None,
         kid=None):
    """A signed token (what the identity provider issues; locally, with the key in var/auth).
    `issued_at` (a datetime) backdates it, e.g. for an expired token in a test."""
    s = settings()
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if hours * 3600 > s.auth_max_token_seconds:
        raise ValueError(f"a token lives at most {s.auth_max_token_seconds / 3600:g} hours "
                         "(ONETHING_AUTH_MAX_TOKEN_SECONDS)")
    if private_key_pem is None:
        with open(key_paths()[0], "rb") as fh:
            private_key_pem = fh.read()
    key = _load_private(private_key_pem)
    now = issued_at or datetime.datetime.now(datetime.UTC)
    claims = {"sub": sub, "role": role, "iss": s.auth_issuer, "aud": audience or s.auth_audience,
              "iat": now, "exp": now + datetime.timedelta(hours=hours)}
    if department:
        claims["department"] = department
    if region:
        claims["region"] = region
    return jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": kid or key_id(key.public_key())})


def actor_from_token(token, public_key_pem=None):
    """The verified actor of a token, else Unauthenticated (the token itself is never repeated).
    `public_key_pem`: verify with this key only (tests); otherwise the key the token's kid names."""
    s = settings()
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise Unauthenticated("the bearer token is not a well-formed JWT") from None
    if header.get("alg") != ALGORITHM:
        raise Unauthenticated(f"the token is not valid: it must be signed with {ALGORITHM} "
                              f"(it says {str(header.get('alg'))[:16]!r})")
    if public_key_pem is not None:
        key = _load_public(public_key_pem)
    else:
        kid = header.get("kid")
        if not kid:
            raise Unauthenticated("the token is not valid: it names no signing key (kid)")
        key = trusted_keys().get(kid)
        if key is None:
            raise Unauthenticated("the token is not valid: it is signed by a key this service does not trust")
    try:
        claims = jwt.decode(token, key, algorithms=[ALGORITHM], issuer=s.auth_issuer, audience=s.auth_audience,
                            leeway=s.auth_clock_skew_seconds,
                            options={"require": ["sub", "role", "exp", "iat", "iss", "aud"]})
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("the token has expired; sign in again") from None
    except jwt.PyJWTError as exc:
        raise Unauthenticated(f"the token is not valid ({exc})") from None
    now = datetime.datetime.now(datetime.UTC).timestamp()
    iat, exp = claims.get("iat"), claims.get("exp")
    if not isinstance(iat, (int, float)) or iat > now + s.auth_clock_skew_seconds:
        raise Unauthenticated("the token is not valid: it was issued in the future")
    if not isinstance(exp, (int, float)) or exp - iat > s.auth_max_token_seconds:
        raise Unauthenticated(f"the token is not valid: it lives longer than the {s.auth_max_token_seconds} s "
                              "a token may")
    role, sub = claims["role"], claims["sub"]
    if role not in ROLES:
        raise Unauthenticated(f"the token names an unknown role {str(role)[:16]!r}")
    if not isinstance(sub, str) or not sub or len(sub) > 128:
        raise Unauthenticated("the token names no subject")
    department, region = str(claims.get("department", "") or ""), str(claims.get("region", "") or "")
    if role in STAFF_WITH_REGION and not (len(region) == 6 and region.isdigit()):
        raise Unauthenticated(f"the token of a {role} must name the region (6-digit GB/T 2260) they work in")
    if role == "officer" and not department:
        raise Unauthenticated("the token of an officer must name their department")
    return Actor(sub, role, department, region)


def bearer_of(metadata):
    """The bearer token of gRPC invocation metadata: "" when there is none; an `authorization`
    that is not a bearer token is Unauthenticated."""
    found = [v for k, v in (metadata or ()) if k == "authorization"]
    if not found:
        return ""
    if len(found) > 1:
        raise Unauthenticated("send one authorization header, not several")
    value = found[0] if isinstance(found[0], str) else ""
    if not value.lower().startswith("bearer ") or not value[7:].strip():
        raise Unauthenticated("the authorization metadata must be 'Bearer <token>'")
    return value[7:].strip()


def actor_from_metadata(metadata):
    """The caller, from gRPC invocation metadata; UNAUTHENTICATED without a valid bearer token."""
    token = bearer_of(metadata)
    if not token:
        raise Unauthenticated("this call needs a bearer token (metadata 'authorization: Bearer …'); "
                              "mint one locally with `python -m tools.mint_token`")
    return actor_from_token(token)


def require_officer(actor, department, region):
    """Only an officer of that department in that region."""
    if actor.role != "officer":
        raise PermissionDenied(f"only department officers may do this, not a {actor.role}")
    if actor.department != department or actor.region != region:
        raise PermissionDenied(f"officer {actor.sub} works for {actor.department or '?'} in {actor.region or '?'}, "
                               f"not {department} in {region}")


# --- a service's own token (calls between services) ------------------------------------------------

_service_tokens: dict = {}
_service_lock = threading.Lock()


def service_token(name):
    """The token `name` presents to another service: read from ONETHING_SERVICE_TOKEN_FILE (issued by
    the identity provider, refreshed by the platform; read again on every call), else, in the local
    profile only, minted for one hour with the local key and reused until 5 minutes before it expires."""
    s = settings()
    if s.service_token_file:
        with open(s.service_token_file) as fh:
            return fh.read().strip()
    if s.production:
        raise RuntimeError("the production profile needs ONETHING_SERVICE_TOKEN_FILE for calls between services")
    now = datetime.datetime.now(datetime.UTC)
    with _service_lock:
        token, expires = _service_tokens.get(name, ("", now))
        if expires - now < datetime.timedelta(minutes=5):
            hours = min(1.0, s.auth_max_token_seconds / 3600)
            token = mint(f"service:{name}", "service", hours=hours)
            _service_tokens[name] = (token, now + datetime.timedelta(hours=hours))
        return token


def service_metadata(name):
    return (("authorization", "Bearer " + service_token(name)),)
