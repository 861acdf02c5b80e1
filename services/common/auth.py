"""Who may do what: signed bearer tokens (JWT, EdDSA/Ed25519) in the `authorization` metadata of
every gRPC call. The region's identity provider signs; services verify with its public key; for a
local run, `infra.local up` makes a key pair and `python -m tools.mint_token` signs tokens.

Claims: sub (citizen ID, credit code or staff ID), role (applicant, clerk, officer, operator, sre),
and for staff their department and region. Authority comes from the verified token, never from a
request field."""
import datetime
import os
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.common.config import settings
from services.common.errors import PermissionDenied, Unauthenticated

ROLES = ("applicant", "clerk", "officer", "operator", "sre")
ISSUER = "onething-idp"


@dataclass(frozen=True)
class Actor:
    sub: str
    role: str
    department: str = ""
    region: str = ""

    def label(self):
        return f"{self.role}:{self.sub}"


def key_paths():
    folder = os.path.join(settings().infra_dir, "auth")
    return os.path.join(folder, "idp_ed25519.key"), os.path.join(folder, "idp_ed25519.pub")


def ensure_keys():
    """Make the local identity provider's key pair once."""
    private_path, public_path = key_paths()
    if os.path.exists(private_path) and os.path.exists(public_path):
        return
    os.makedirs(os.path.dirname(private_path), exist_ok=True)
    key = Ed25519PrivateKey.generate()
    with open(private_path, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    os.chmod(private_path, 0o600)
    with open(public_path, "wb") as fh:
        fh.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo))


_public_cache = {}


def _public_key():
    path = os.environ.get("ONETHING_AUTH_PUBLIC_KEY_FILE") or key_paths()[1]
    if path not in _public_cache:
        with open(path, "rb") as fh:
            _public_cache[path] = fh.read()
    return _public_cache[path]


def mint(sub, role, department="", region="", hours=8, private_key_pem=None):
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if private_key_pem is None:
        with open(os.environ.get("ONETHING_AUTH_PRIVATE_KEY_FILE") or key_paths()[0], "rb") as fh:
            private_key_pem = fh.read()
    now = datetime.datetime.now(datetime.timezone.utc)
    claims = {"sub": sub, "role": role, "iss": ISSUER, "iat": now, "exp": now + datetime.timedelta(hours=hours)}
    if department:
        claims["department"] = department
    if region:
        claims["region"] = region
    return jwt.encode(claims, private_key_pem, algorithm="EdDSA")


def actor_from_token(token, public_key_pem=None):
    try:
        claims = jwt.decode(token, public_key_pem or _public_key(), algorithms=["EdDSA"], issuer=ISSUER,
                            options={"require": ["sub", "role", "exp"]})
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("the token has expired; sign in again")
    except jwt.PyJWTError as exc:
        raise Unauthenticated(f"the token is not valid ({exc})")
    if claims["role"] not in ROLES:
        raise Unauthenticated(f"the token names an unknown role {claims['role']!r}")
    return Actor(claims["sub"], claims["role"], claims.get("department", ""), claims.get("region", ""))


def actor_from_metadata(metadata):
    """The caller, from gRPC invocation metadata; UNAUTHENTICATED without a valid bearer token."""
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str) and value.lower().startswith("bearer "):
            return actor_from_token(value[7:].strip())
    raise Unauthenticated("this call needs a bearer token (metadata 'authorization: Bearer …'); "
                          "mint one locally with `python -m tools.mint_token`")


def require_officer(actor, department, region):
    """Only an officer of that department in that region."""
    if actor.role != "officer":
        raise PermissionDenied(f"only department officers may do this, not a {actor.role}")
    if actor.department != department or actor.region != region:
        raise PermissionDenied(f"officer {actor.sub} works for {actor.department or '?'} in {actor.region or '?'}, "
                               f"not {department} in {region}")
