"""Settings are read once, from ONETHING_* variables, and a value that cannot be used stops the
process at start-up with a message naming the variable."""
import pytest

from services.common import config
from services.common.config import Settings, SettingsError


@pytest.fixture
def env(monkeypatch):
    for name in list(__import__("os").environ):
        if name.startswith("ONETHING_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_the_embedded_defaults_are_valid(env):
    s = Settings()
    assert s.region == "440100" and s.port("intake") == 50052 and s.bad_review_days == 5
    assert s.desk_region == "440100" and s.desks == [] and s.chaos_restarts == ["broker", "mongo", "s3"]


@pytest.mark.parametrize("name, value, words", [
    ("ONETHING_GRPC_THREADS", "many", "ONETHING_GRPC_THREADS='many' is not a whole number"),
    ("ONETHING_RPC_TIMEOUT_SECONDS", "10s", "ONETHING_RPC_TIMEOUT_SECONDS='10s' is not a number"),
    ("ONETHING_S3_SECURE", "yes", "ONETHING_S3_SECURE='yes': use 1 (on) or 0 (off)"),
    ("ONETHING_PROFILE", "prod", "ONETHING_PROFILE='prod': use local or production"),
    ("ONETHING_REGION", "4401", "ONETHING_REGION: '4401' is not a six-digit GB/T 2260 region code"),
    ("ONETHING_SERVED_REGIONS", "440100,44030X", "ONETHING_SERVED_REGIONS: '44030X'"),
    ("ONETHING_MAX_HANDLER_ATTEMPTS", "0", "ONETHING_MAX_HANDLER_ATTEMPTS=0 must be more than 0"),
    ("ONETHING_BAD_REVIEW_DAYS", "-3", "ONETHING_BAD_REVIEW_DAYS=-3 must be more than 0"),
    ("ONETHING_SWEEP_GRACE_SECONDS", "-1", "ONETHING_SWEEP_GRACE_SECONDS=-1.0 must not be negative"),
    ("ONETHING_GRPC_TLS", "true", "ONETHING_GRPC_TLS='true'"),
    ("ONETHING_INTAKE_PORT", "http", "ONETHING_INTAKE_PORT='http' is not a whole number"),
])
def test_a_value_that_cannot_be_used_is_named(env, name, value, words):
    env.setenv(name, value)
    with pytest.raises(SettingsError) as err:
        s = Settings()
        s.port("intake")
    assert words in str(err.value)


def test_half_a_tls_pair_is_refused(env):
    env.setenv("ONETHING_GRPC_TLS_CERT_FILE", "/etc/onething/api.crt")
    with pytest.raises(SettingsError, match="both ONETHING_GRPC_TLS_CERT_FILE and ONETHING_GRPC_TLS_KEY_FILE"):
        Settings()


def test_desks_are_pairs_of_department_and_region(env):
    env.setenv("ONETHING_DESKS", "wsjk:440100, gaj:440300")
    assert Settings().desks == [("wsjk", "440100"), ("gaj", "440300")]
    env.setenv("ONETHING_DESKS", "wsjk")
    with pytest.raises(SettingsError, match="'wsjk' is not <department>:<region code>"):
        Settings().desks  # noqa: B018


def test_a_process_with_unreadable_settings_does_not_start(env):
    env.setenv("ONETHING_PICKUP_MAX_ATTEMPTS", "five")
    with pytest.raises(SystemExit) as err:
        config.refuse_defaults_in_production("api")
    assert "refusing to start" in str(err.value) and "ONETHING_PICKUP_MAX_ATTEMPTS='five'" in str(err.value)


def test_ports_and_names_come_from_the_registry(env):
    from services.common.registry import SERVICES, service
    assert config.DEFAULT_PORTS == {s.name: s.port for s in SERVICES}
    assert len(set(config.DEFAULT_PORTS.values())) == len(SERVICES)
    assert service("joint_review").exchange == "joint_review.events"
    with pytest.raises(KeyError, match="no service called 'billing'"):
        service("billing")
    env.setenv("ONETHING_ELICENSE_PORT", "60054")
    assert Settings().address("elicense") == "127.0.0.1:60054"


def test_children_of_the_launcher_inherit_the_environment_and_the_extras(env):
    env.setenv("ONETHING_REGION", "440300")
    child = config.process_environment({"ONETHING_DESK_DEPARTMENT": "gaj"})
    assert child["ONETHING_REGION"] == "440300" and child["ONETHING_DESK_DEPARTMENT"] == "gaj"
