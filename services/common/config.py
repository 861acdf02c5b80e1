"""Configuration from the environment, with embedded defaults for a local run.

Every setting has one name (ONETHING_*) and one default; nothing else reads os.environ.
"""
import os
from dataclasses import dataclass, field

DEFAULT_PORTS = {
    "catalog": 50051,
    "intake": 50052,
    "joint_review": 50053,
    "elicense": 50054,
    "delivery": 50055,
    "evaluation": 50056,
}

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _env(name, default):
    value = os.environ.get(name)
    return default if value in (None, "") else value


@dataclass(frozen=True)
class Settings:
    amqp_uri: str = field(default_factory=lambda: _env(
        "ONETHING_AMQP_URI", "amqp://guest:guest@127.0.0.1:5672/onething"))
    mongo_uri: str = field(default_factory=lambda: _env("ONETHING_MONGO_URI", "mongodb://127.0.0.1:27017"))
    db_prefix: str = field(default_factory=lambda: _env("ONETHING_DB_PREFIX", "onething_"))
    s3_endpoint: str = field(default_factory=lambda: _env("ONETHING_S3_ENDPOINT", "127.0.0.1:8333"))
    s3_access_key: str = field(default_factory=lambda: _env("ONETHING_S3_ACCESS_KEY", "onething"))
    s3_secret_key: str = field(default_factory=lambda: _env("ONETHING_S3_SECRET_KEY", "onething-local-secret"))
    s3_secure: bool = field(default_factory=lambda: _env("ONETHING_S3_SECURE", "0") == "1")
    var_dir: str = field(default_factory=lambda: _env("ONETHING_VAR_DIR", os.path.join(ROOT, "var")))
    # where the local MongoDB/S3 servers keep PID files, logs and data (shared by a test run)
    infra_dir: str = field(default_factory=lambda: _env("ONETHING_INFRA_DIR", os.path.join(ROOT, "var")))
    bucket_prefix: str = field(default_factory=lambda: _env("ONETHING_BUCKET_PREFIX", ""))
    region: str = field(default_factory=lambda: _env("ONETHING_REGION", "440100"))
    max_upload_bytes: int = field(default_factory=lambda: int(_env("ONETHING_MAX_UPLOAD_BYTES", str(20 * 1024 * 1024))))
    catalog_data: str = field(default_factory=lambda: _env(
        "ONETHING_CATALOG_DATA", os.path.join(ROOT, "services", "catalog", "data")))

    @property
    def spans_dir(self):
        return os.path.join(self.var_dir, "spans")

    def db_name(self, service):
        return f"{self.db_prefix}{service}"

    def port(self, service):
        return int(_env(f"ONETHING_{service.upper()}_PORT", str(DEFAULT_PORTS[service])))

    def address(self, service):
        host = _env(f"ONETHING_{service.upper()}_HOST", "127.0.0.1")
        return f"{host}:{self.port(service)}"


def settings():
    return Settings()
