"""The local S3 server enforces credentials, as production object storage does."""
import pytest
from minio.error import S3Error

from services.common.blobs import Blobs

pytestmark = pytest.mark.integration


def test_s3_refuses_a_wrong_secret(test_env):
    good = Blobs()
    good.ensure_bucket("results")  # the right secret works
    assert good.client.bucket_exists(good.bucket("results")) is True
    bad = Blobs(secret_key="not-the-secret")
    with pytest.raises(S3Error) as err:
        bad.client.list_buckets()
    assert err.value.code in ("SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied")
