"""Each service's own S3 identity (infra/local.py), on the real S3 server: limited to its buckets
and to what it does there."""
import pytest
from minio.error import S3Error

from infra import local
from services.common.blobs import Blobs

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def logins(test_env):
    local.ensure_s3_identities()
    local.ensure_s3_identities()  # repeatable
    Blobs().put("results", "probe/ok.txt", b"ok")  # the local administrator
    return local.s3_logins()


def _as(logins, service):
    key, secret = logins[service]
    return Blobs(access_key=key, secret_key=secret)


def _refused(call):
    with pytest.raises(S3Error) as refused:
        call()
    return refused.value.code


def test_intake_writes_and_reads_materials_and_nothing_else(logins):
    intake = _as(logins, "intake")
    intake.put("materials", "probe/m.pdf", b"%PDF")
    assert intake.get("materials", "probe/m.pdf") == b"%PDF"
    assert _refused(lambda: intake.put("results", "probe/x", b"x")) == "AccessDenied"
    assert _refused(lambda: intake.get("results", "probe/ok.txt")) == "AccessDenied"


def test_delivery_only_reads_the_results(logins):
    delivery = _as(logins, "delivery")
    assert delivery.get("results", "probe/ok.txt") == b"ok"
    assert _refused(lambda: delivery.put("results", "probe/forged", b"x")) == "AccessDenied"
    assert _refused(lambda: delivery.get("materials", "probe/m.pdf")) == "AccessDenied"


def test_elicense_writes_results_but_cannot_read_materials(logins):
    elicense = _as(logins, "elicense")
    elicense.put("results", "probe/licence.pdf", b"%PDF")
    assert _refused(lambda: elicense.get("materials", "probe/m.pdf")) == "AccessDenied"


@pytest.mark.parametrize("service", ["catalog", "evaluation"])
def test_a_service_without_buckets_has_no_identity(logins, service):
    assert _refused(lambda: _as(logins, service).get("results", "probe/ok.txt")) == "InvalidAccessKeyId"


def test_another_runs_buckets_are_out_of_reach(logins):
    other = Blobs(bucket_prefix="someone-else-")
    other.ensure_bucket("materials")
    try:
        key, secret = logins["intake"]
        intruder = Blobs(access_key=key, secret_key=secret, bucket_prefix="someone-else-")
        assert _refused(lambda: intruder.put("materials", "probe/x", b"x")) == "AccessDenied"
    finally:
        other.client.remove_bucket(other.bucket("materials"))
