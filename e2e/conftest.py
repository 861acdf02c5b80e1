import os

import pytest


@pytest.fixture(scope="session")
def otlp_receiver(test_env):
    """An OTLP/HTTP receiver every process of the suite exports its spans to (as well as to its span
    files): e2e/test_otlp_export.py reads what arrived and takes it down."""
    from e2e.otlp_receiver import OtlpReceiver
    receiver = OtlpReceiver(int(os.environ.get("ONETHING_TEST_PORT_BASE", "21051")) + 49).open()
    env = {"OTEL_TRACES_EXPORTER": "otlp,file", "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
           "OTEL_BSP_SCHEDULE_DELAY": "500", "OTEL_EXPORTER_OTLP_TIMEOUT": "5"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield receiver
    finally:
        receiver.close()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session")
def suite_running(test_env, otlp_receiver):
    """The whole suite, started the way `make run` starts it, on this test run's own vhost,
    databases, buckets and ports, exporting its spans to `otlp_receiver` too."""
    from infra import suite
    try:
        suite.up()
        yield suite
    finally:
        suite.down()


@pytest.fixture(scope="session")
def client(suite_running):
    from services.common import telemetry
    from tools.client import Suite
    telemetry.setup("e2e-client")
    return Suite()
