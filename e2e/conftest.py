import pytest


@pytest.fixture(scope="session")
def suite_running(test_env):
    """The whole suite, started the way `make run` starts it, on this test run's own vhost,
    databases, buckets and ports."""
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
