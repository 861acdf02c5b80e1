"""Each service's own database user on the real (authenticating) MongoDB server (infra/local.py)."""
import pymongo
import pytest

from infra import local
from services.common.config import settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def logins(test_env):
    prefix = f"{test_env['ONETHING_DB_PREFIX']}users_"
    local.ensure_mongo_users(prefix)
    local.ensure_mongo_users(prefix)  # repeatable
    yield prefix, local.mongo_logins(prefix)
    local.drop_mongo_users(prefix)


def _client(uri):
    return pymongo.MongoClient(uri, directConnection=True, serverSelectionTimeoutMS=5000)


def test_a_service_reads_and_writes_its_own_database(logins):
    prefix, uris = logins
    with _client(uris["intake"]) as intake:
        intake[f"{prefix}intake"]["cases"].insert_one({"_id": "C1"})
        intake[f"{prefix}intake"]["cases"].create_index("status")
        assert intake[f"{prefix}intake"]["cases"].find_one({"_id": "C1"}) == {"_id": "C1"}


@pytest.mark.parametrize("other", ["catalog", "elicense"])
def test_a_service_cannot_touch_another_services_database(logins, other):
    prefix, uris = logins
    with _client(uris["intake"]) as intake, pytest.raises(pymongo.errors.OperationFailure, match="not authorized"):
        intake[f"{prefix}{other}"]["anything"].find_one()


def test_without_a_login_nothing_is_read(logins):
    prefix, _ = logins
    host = settings().mongo_uri.split("@")[-1].split("/")[0]
    with _client(f"mongodb://{host}") as anonymous, pytest.raises(pymongo.errors.OperationFailure,
                                                                   match="requires authentication"):
        anonymous[f"{prefix}intake"]["cases"].find_one()


def test_a_users_password_is_its_own_and_kept(logins):
    prefix, uris = logins
    assert uris == local.mongo_logins(prefix)
    assert len({u.split("@")[0] for u in uris.values()}) == len(uris)
