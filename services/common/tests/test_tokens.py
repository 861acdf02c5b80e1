"""Tokens and keys of the identity provider: key ids, several trusted keys during a rotation, the
private key made once with mode 0600 and never silently again, service tokens, and the production
profile that refuses default credentials and the local development key."""
import json
import os
import stat

import jwt
import pytest

from services.common import auth, config
from services.common.errors import Unauthenticated


@pytest.fixture
def idp_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ONETHING_AUTH_PRIVATE_KEY_FILE", str(tmp_path / "idp.key"))
    monkeypatch.setenv("ONETHING_AUTH_PUBLIC_KEY_FILE", str(tmp_path / "idp.pub"))
    monkeypatch.setenv("ONETHING_AUTH_JWKS_FILE", str(tmp_path / "jwks.json"))
    return tmp_path


def test_the_private_key_is_made_once_with_mode_0600(idp_dir):
    auth.ensure_keys()
    mode = stat.S_IMODE(os.stat(idp_dir / "idp.key").st_mode)
    assert mode == 0o600
    before = (idp_dir / "idp.key").read_bytes()
    auth.ensure_keys()
    assert (idp_dir / "idp.key").read_bytes() == before  # never made again


def test_a_public_key_without_its_private_key_fails_loudly(idp_dir):
    auth.ensure_keys()
    pub = (idp_dir / "idp.pub").read_bytes()
    os.remove(idp_dir / "idp.key")
    with pytest.raises(RuntimeError, match="refusing to make a new key pair silently"):
        auth.ensure_keys()
    assert not (idp_dir / "idp.key").exists() and (idp_dir / "idp.pub").read_bytes() == pub


def test_a_private_key_readable_by_others_is_refused_and_a_missing_public_key_is_derived(idp_dir):
    auth.ensure_keys()
    pub = (idp_dir / "idp.pub").read_bytes()
    os.remove(idp_dir / "idp.pub")
    auth.ensure_keys()
    assert (idp_dir / "idp.pub").read_bytes() == pub
    os.chmod(idp_dir / "idp.key", 0o644)
    with pytest.raises(RuntimeError, match="chmod 600"):
        auth.ensure_keys()


def test_tokens_carry_audience_issued_at_expiry_and_the_key_id(idp_dir):
    auth.ensure_keys()
    token = auth.mint("440106199001011235", "applicant", hours=1)
    header, claims = jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})
    assert header["alg"] == "EdDSA" and header["kid"] == next(iter(auth.trusted_keys()))
    assert claims["aud"] == "onething-api" and claims["iss"] == "onething-idp"
    assert claims["exp"] - claims["iat"] == 3600
    assert auth.actor_from_token(token) == auth.Actor("440106199001011235", "applicant")
    with pytest.raises(ValueError, match="at most 12 hours"):
        auth.mint("x", "applicant", hours=13)


def test_a_rotation_keeps_old_and_new_keys_valid_until_the_old_one_is_removed(idp_dir):
    auth.ensure_keys()
    old_token = auth.mint("clerk-1", "clerk", region="440100")
    old_kid, new_kid = auth.rotate_keys()
    assert old_kid != new_kid and stat.S_IMODE(os.stat(idp_dir / "idp.key").st_mode) == 0o600
    new_token = auth.mint("clerk-1", "clerk", region="440100")
    assert jwt.get_unverified_header(new_token)["kid"] == new_kid
    assert set(auth.trusted_keys()) == {old_kid, new_kid}
    for token in (old_token, new_token):  # both verify during the rotation
        assert auth.actor_from_token(token).sub == "clerk-1"
    # the old key's tokens have expired: the old key leaves the set, its tokens no longer verify
    (idp_dir / "jwks.json").write_text(json.dumps({"keys": []}))
    with pytest.raises(Unauthenticated, match="does not trust"):
        auth.actor_from_token(old_token)
    assert auth.actor_from_token(new_token).sub == "clerk-1"


def test_a_token_without_kid_or_from_an_unknown_key_is_refused(idp_dir):
    auth.ensure_keys()
    from cryptography.hazmat.primitives import serialization
    key = serialization.load_pem_private_key((idp_dir / "idp.key").read_bytes(), None)
    import datetime
    now = datetime.datetime.now(datetime.UTC)
    claims = {"sub": "x", "role": "applicant", "iss": "onething-idp", "aud": "onething-api", "iat": now,
              "exp": now + datetime.timedelta(hours=1)}
    with pytest.raises(Unauthenticated, match="kid"):
        auth.actor_from_token(jwt.encode(claims, key, algorithm="EdDSA"))
    with pytest.raises(Unauthenticated, match="does not trust"):
        auth.actor_from_token(jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": "someone-elses"}))


def test_service_tokens_are_minted_locally_or_read_from_the_platforms_file(idp_dir, monkeypatch):
    auth.ensure_keys()
    auth._service_tokens.clear()
    actor = auth.actor_from_token(auth.service_token("intake"))
    assert actor == auth.Actor("service:intake", "service")
    assert auth.service_token("intake") == auth.service_token("intake")  # reused until near its expiry
    (idp_dir / "svc.token").write_text("issued-by-the-idp\n")
    monkeypatch.setenv("ONETHING_SERVICE_TOKEN_FILE", str(idp_dir / "svc.token"))
    assert auth.service_metadata("intake") == (("authorization", "Bearer issued-by-the-idp"),)
    monkeypatch.delenv("ONETHING_SERVICE_TOKEN_FILE")
    monkeypatch.setenv("ONETHING_PROFILE", "production")
    with pytest.raises(RuntimeError, match="ONETHING_SERVICE_TOKEN_FILE"):
        auth.service_token("intake")


# --- the production profile ------------------------------------------------------------------------

def test_the_local_profile_accepts_the_defaults(monkeypatch):
    monkeypatch.delenv("ONETHING_PROFILE", raising=False)
    assert config.production_problems() == []
    config.refuse_defaults_in_production()


def test_production_refuses_default_credentials_and_the_local_key(tmp_path, monkeypatch):
    monkeypatch.setenv("ONETHING_PROFILE", "production")
    monkeypatch.setenv("ONETHING_INFRA_DIR", str(tmp_path / "var"))
    os.makedirs(tmp_path / "var" / "auth")
    (tmp_path / "var" / "auth" / "idp_ed25519.key").write_text("local dev key")
    for name in ("ONETHING_S3_SECRET_KEY", "ONETHING_AMQP_URI", "ONETHING_AUTH_PUBLIC_KEY_FILE",
                 "ONETHING_AUTH_JWKS_FILE", "ONETHING_GRPC_BIND_HOST", "ONETHING_MONGO_URI"):
        monkeypatch.delenv(name, raising=False)
    problems = " | ".join(config.production_problems())
    assert "ONETHING_S3_SECRET_KEY" in problems and "guest" in problems
    assert "ONETHING_MONGO_URI uses the local administrator's default password" in problems
    assert "local development key" in problems and "private key" in problems
    with pytest.raises(SystemExit, match="refusing to start in the production profile"):
        config.refuse_defaults_in_production()
    from services.common.grpc_server import ApiServer
    with pytest.raises(SystemExit, match="ONETHING_PROFILE=production"):
        ApiServer(0, [], [])

    # a proper set-up starts
    os.remove(tmp_path / "var" / "auth" / "idp_ed25519.key")
    keys = tmp_path / "idp-public"
    keys.mkdir()
    (keys / "jwks.json").write_text('{"keys": []}')
    monkeypatch.setenv("ONETHING_S3_SECRET_KEY", "a-real-secret")
    monkeypatch.setenv("ONETHING_AMQP_URI", "amqp://onething:s3cret@mq.internal:5672/onething")
    monkeypatch.setenv("ONETHING_MONGO_URI", "mongodb://svc-intake:an0ther@mongo.internal:27017/?authSource=admin")
    monkeypatch.setenv("ONETHING_AUTH_JWKS_FILE", str(keys / "jwks.json"))
    assert config.production_problems() == []
    # binding beyond loopback needs TLS in production
    monkeypatch.setenv("ONETHING_GRPC_BIND_HOST", "0.0.0.0")
    assert "without TLS" in " ".join(config.production_problems())
    assert config.production_problems(role="worker") == []


def test_the_local_key_folder_is_refused_even_when_named(tmp_path, monkeypatch):
    monkeypatch.setenv("ONETHING_PROFILE", "production")
    monkeypatch.setenv("ONETHING_INFRA_DIR", str(tmp_path))
    monkeypatch.setenv("ONETHING_S3_SECRET_KEY", "a-real-secret")
    monkeypatch.setenv("ONETHING_AMQP_URI", "amqp://onething:s3cret@mq.internal:5672/onething")
    monkeypatch.setenv("ONETHING_AUTH_PUBLIC_KEY_FILE", str(tmp_path / "auth" / "idp_ed25519.pub"))
    assert "local development key folder" in " ".join(config.production_problems())
