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
    # the api role's gRPC server: its threads, and how much of them streams may hold (the rest
    # always serves unary calls); see services/common/streams.py
    grpc_threads: int = field(default_factory=lambda: int(_env("ONETHING_GRPC_THREADS", "16")))
    stream_uploads_total: int = field(default_factory=lambda: int(_env("ONETHING_STREAM_UPLOADS_TOTAL", "6")))
    stream_uploads_per_caller: int = field(default_factory=lambda: int(_env("ONETHING_STREAM_UPLOADS_PER_CALLER", "3")))
    stream_watches_total: int = field(default_factory=lambda: int(_env("ONETHING_STREAM_WATCHES_TOTAL", "4")))
    stream_watches_per_caller: int = field(default_factory=lambda: int(_env("ONETHING_STREAM_WATCHES_PER_CALLER", "2")))
    stream_idle_seconds: float = field(default_factory=lambda: float(_env("ONETHING_STREAM_IDLE_SECONDS", "10")))
    stream_max_seconds: float = field(default_factory=lambda: float(_env("ONETHING_STREAM_MAX_SECONDS", "600")))
    # regions this site serves: its own region code and every region under it (GB/T 2260);
    # ONETHING_SERVED_REGIONS="440100,440300" names them explicitly
    served_regions_spec: str = field(default_factory=lambda: _env("ONETHING_SERVED_REGIONS", ""))

    # reliability: how often and how long things are tried ------------------------------------
    # a handler that fails this many times (outages not counted) goes to the dead-letter queue
    max_handler_attempts: int = field(default_factory=lambda: int(_env("ONETHING_MAX_HANDLER_ATTEMPTS", "5")))
    retry_base_seconds: float = field(default_factory=lambda: float(_env("ONETHING_RETRY_BASE_SECONDS", "1")))
    retry_max_seconds: float = field(default_factory=lambda: float(_env("ONETHING_RETRY_MAX_SECONDS", "30")))
    # the outbox sweep: how often it runs, and how old an entry must be before it takes it
    sweep_interval_seconds: float = field(default_factory=lambda: float(_env("ONETHING_SWEEP_INTERVAL_SECONDS", "5")))
    sweep_grace_seconds: float = field(default_factory=lambda: float(_env("ONETHING_SWEEP_GRACE_SECONDS", "10")))
    # timeouts of every outbound call
    rpc_timeout_seconds: float = field(default_factory=lambda: float(_env("ONETHING_RPC_TIMEOUT_SECONDS", "10")))
    grpc_timeout_seconds: float = field(default_factory=lambda: float(_env("ONETHING_GRPC_TIMEOUT_SECONDS", "10")))
    mongo_timeout_ms: int = field(default_factory=lambda: int(_env("ONETHING_MONGO_TIMEOUT_MS", "3000")))
    mongo_socket_timeout_ms: int = field(default_factory=lambda: int(_env("ONETHING_MONGO_SOCKET_TIMEOUT_MS", "10000")))
    s3_connect_timeout_seconds: float = field(default_factory=lambda: float(_env("ONETHING_S3_CONNECT_TIMEOUT_SECONDS", "3")))
    s3_read_timeout_seconds: float = field(default_factory=lambda: float(_env("ONETHING_S3_READ_TIMEOUT_SECONDS", "30")))
    s3_retries: int = field(default_factory=lambda: int(_env("ONETHING_S3_RETRIES", "2")))
    amqp_timeout_seconds: float = field(default_factory=lambda: float(_env("ONETHING_AMQP_TIMEOUT_SECONDS", "5")))
    # fault injection for tests: "<point>" names a place where the process exits on purpose
    fault: str = field(default_factory=lambda: _env("ONETHING_FAULT", ""))

    def serves(self, region_code):
        """True when a case of `region_code` is this site's to handle."""
        if self.served_regions_spec:
            served = [r.strip() for r in self.served_regions_spec.split(",") if r.strip()]
        else:
            served = [self.region]
        return any(region_within(region_code, r) for r in served)

    @property
    def served_regions(self):
        return [r.strip() for r in self.served_regions_spec.split(",") if r.strip()] or [self.region]

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


def region_within(code, ancestor):
    """GB/T 2260: `code` is `ancestor` or lies under it (440106 within 440100 within 440000).
    Compared by level, not by string prefix: 440000 covers 44xxxx, 440100 covers 4401xx."""
    if not (isinstance(code, str) and len(code) == 6 and code.isdigit()):
        return False
    if code == ancestor:
        return True
    if ancestor.endswith("0000"):
        return code[:2] == ancestor[:2]
    if ancestor.endswith("00"):
        return code[:4] == ancestor[:4]
    return False


def settings():
    return Settings()
