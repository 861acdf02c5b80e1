import datetime

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.common import auth
from services.common.errors import PermissionDenied, Unauthenticated


def keypair():
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


def test_token_round_trip_gives_the_actor():
    private, public = keypair()
    token = auth.mint("officer-7", "officer", "gaj", "440100", private_key_pem=private)
    actor = auth.actor_from_token(token, public)
    assert actor == auth.Actor("officer-7", "officer", "gaj", "440100")


def test_token_from_another_key_or_expired_or_garbled_is_unauthenticated():
    private, public = keypair()
    other_private, _ = keypair()
    with pytest.raises(Unauthenticated, match="not valid"):
        auth.actor_from_token(auth.mint("x", "applicant", private_key_pem=other_private), public)
    with pytest.raises(Unauthenticated, match="expired"):
        auth.actor_from_token(auth.mint("x", "applicant", hours=-1, private_key_pem=private), public)
    with pytest.raises(Unauthenticated):
        auth.actor_from_token("not.a.token", public)
    forged = jwt.encode({"sub": "x", "role": "officer", "iss": auth.ISSUER,
                         "exp": datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)},
                        "secret", algorithm="HS256")
    with pytest.raises(Unauthenticated):
        auth.actor_from_token(forged, public)


def test_missing_bearer_is_unauthenticated():
    with pytest.raises(Unauthenticated, match="bearer token"):
        auth.actor_from_metadata([("x-other", "1")])


def test_only_officers_of_that_department_and_region():
    auth.require_officer(auth.Actor("o", "officer", "gaj", "440100"), "gaj", "440100")
    for actor in (auth.Actor("o", "officer", "wsjk", "440100"), auth.Actor("o", "officer", "gaj", "440300"),
                  auth.Actor("c", "clerk", "gaj", "440100")):
        with pytest.raises(PermissionDenied):
            auth.require_officer(actor, "gaj", "440100")
