"""Configuration from the environment, with embedded defaults for a local run.

Every setting has one name (ONETHING_*) and one default; nothing else in the code reads
os.environ. A value that cannot be read (a word where a number belongs, an unknown profile, a
region that is not a GB/T 2260 code) stops the process at start-up with a message naming the
variable (`SettingsError`), instead of failing later in the middle of a case.
"""
import os
import re
from dataclasses import dataclass, field
from typing import Any

from services.common.registry import SERVICES

DEFAULT_PORTS = {s.name: s.port for s in SERVICES}

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class SettingsError(ValueError):
    """A setting's value cannot be used; the message names the variable and what it expects."""


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value in (None, "") else value


def _number(kind: type, name: str, default: object) -> Any:
    raw = _env(name, str(default))
    try:
        return kind(raw)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise SettingsError(f"{name}={raw!r} is not {what}") from None


def _int(name: str, default: int | str) -> int:
    return _number(int, name, default)


def _float(name: str, default: float | str) -> float:
    return _number(float, name, default)


def _flag(name: str, default: str = "0") -> bool:
    raw = _env(name, default)
    if raw not in ("0", "1"):
        raise SettingsError(f"{name}={raw!r}: use 1 (on) or 0 (off)")
    return raw == "1"


def _choice(name: str, default: str, allowed: tuple[str, ...]) -> str:
    raw = _env(name, default)
    if raw not in allowed:
        raise SettingsError(f"{name}={raw!r}: use one of {', '.join(allowed)}")
    return raw


def process_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a child process of the launcher starts with: this one's, plus `extra`."""
    return {**os.environ, **(extra or {})}


# the local servers' default secret (S3 and the MongoDB administrator); production refuses it
LOCAL_S3_SECRET = "onething-local-secret"


@dataclass(frozen=True)
class Settings:
    amqp_uri: str = field(default_factory=lambda: _env(
        "ONETHING_AMQP_URI", "amqp://guest:guest@127.0.0.1:5672/onething"))
    # locally: the administrator the local server is made with (infra/local.py); each service of
    # the suite gets its own user instead
    mongo_uri: str = field(default_factory=lambda: _env(
        "ONETHING_MONGO_URI", f"mongodb://onething:{LOCAL_S3_SECRET}@127.0.0.1:27017/?authSource=admin"))
    db_prefix: str = field(default_factory=lambda: _env("ONETHING_DB_PREFIX", "onething_"))
    s3_endpoint: str = field(default_factory=lambda: _env("ONETHING_S3_ENDPOINT", "127.0.0.1:8333"))
    s3_access_key: str = field(default_factory=lambda: _env("ONETHING_S3_ACCESS_KEY", "onething"))
    s3_secret_key: str = field(default_factory=lambda: _env("ONETHING_S3_SECRET_KEY", "onething-local-secret"))
    s3_secure: bool = field(default_factory=lambda: _flag("ONETHING_S3_SECURE"))
    var_dir: str = field(default_factory=lambda: _env("ONETHING_VAR_DIR", os.path.join(ROOT, "var")))
    # where the local MongoDB/S3 servers keep PID files, logs and data (shared by a test run)
    infra_dir: str = field(default_factory=lambda: _env("ONETHING_INFRA_DIR", os.path.join(ROOT, "var")))
    bucket_prefix: str = field(default_factory=lambda: _env("ONETHING_BUCKET_PREFIX", ""))
    # the broker users' passwords (infra/topology.py): a JSON file {user: password}, a mounted secret
    # in production; locally generated once under <infra_dir>/secrets
    broker_passwords_file_spec: str = field(default_factory=lambda: _env("ONETHING_BROKER_PASSWORDS_FILE", ""))
    # the RabbitMQ management API the topology is loaded through (the chart's hook job); empty:
    # `rabbitmqctl import_definitions` on the local node
    broker_management_url: str = field(default_factory=lambda: _env("ONETHING_BROKER_MANAGEMENT_URL", ""))
    # the links to other sites' brokers (the chart's hook job): a folder with one file per linked
    # site, named by its region code, holding the AMQP URI the link connects to (a mounted secret)
    broker_links_dir: str = field(default_factory=lambda: _env("ONETHING_BROKER_LINKS_DIR", ""))
    region: str = field(default_factory=lambda: _env("ONETHING_REGION", "440100"))
    max_upload_bytes: int = field(default_factory=lambda: _int("ONETHING_MAX_UPLOAD_BYTES", 20 * 1024 * 1024))
    catalog_data: str = field(default_factory=lambda: _env(
        "ONETHING_CATALOG_DATA", os.path.join(ROOT, "services", "catalog", "data")))
    # a city site's catalog takes the package versions its province publishes (`package_published`,
    # over the site link) and puts its own overlays on top: the province's region code. Empty (the
    # default): the catalog owns the national base and loads it from its data folder (one site alone,
    # or the province)
    catalog_upstream: str = field(default_factory=lambda: _env("ONETHING_CATALOG_UPSTREAM", ""))
    # the api role's gRPC server: its threads, and how much of them streams may hold (the rest
    # always serves unary calls); watches (async, no thread) are capped only per caller and
    # overall; see services/common/streams.py
    grpc_threads: int = field(default_factory=lambda: _int("ONETHING_GRPC_THREADS", "16"))
    stream_uploads_total: int = field(default_factory=lambda: _int("ONETHING_STREAM_UPLOADS_TOTAL", "6"))
    stream_uploads_per_caller: int = field(default_factory=lambda: _int("ONETHING_STREAM_UPLOADS_PER_CALLER", "3"))
    stream_watches_total: int = field(default_factory=lambda: _int("ONETHING_STREAM_WATCHES_TOTAL", "2000"))
    stream_watches_per_caller: int = field(default_factory=lambda: _int("ONETHING_STREAM_WATCHES_PER_CALLER", "10"))
    stream_idle_seconds: float = field(default_factory=lambda: _float("ONETHING_STREAM_IDLE_SECONDS", "10"))
    stream_max_seconds: float = field(default_factory=lambda: _float("ONETHING_STREAM_MAX_SECONDS", "600"))
    # regions this site serves: its own region code and every region under it (GB/T 2260);
    # ONETHING_SERVED_REGIONS="440100,440300" names them explicitly
    served_regions_spec: str = field(default_factory=lambda: _env("ONETHING_SERVED_REGIONS", ""))

    # reliability: how often and how long things are tried ------------------------------------
    # a handler that fails this many times (outages not counted) goes to the dead-letter queue
    max_handler_attempts: int = field(default_factory=lambda: _int("ONETHING_MAX_HANDLER_ATTEMPTS", "5"))
    retry_base_seconds: float = field(default_factory=lambda: _float("ONETHING_RETRY_BASE_SECONDS", "1"))
    retry_max_seconds: float = field(default_factory=lambda: _float("ONETHING_RETRY_MAX_SECONDS", "30"))
    # the outbox sweep: how often it runs, and how old an entry must be before it takes it
    sweep_interval_seconds: float = field(default_factory=lambda: _float("ONETHING_SWEEP_INTERVAL_SECONDS", "5"))
    sweep_grace_seconds: float = field(default_factory=lambda: _float("ONETHING_SWEEP_GRACE_SECONDS", "10"))
    # the writes whose loss costs at most a duplicate (an inbox record, the removal of published
    # events from an outbox) wait this long to go in one batch (services/common/write_behind.py); 0:
    # each is written at once
    write_behind_ms: float = field(default_factory=lambda: _float("ONETHING_WRITE_BEHIND_MS", "50"))
    # timeouts of every outbound call
    rpc_timeout_seconds: float = field(default_factory=lambda: _float("ONETHING_RPC_TIMEOUT_SECONDS", "10"))
    grpc_timeout_seconds: float = field(default_factory=lambda: _float("ONETHING_GRPC_TIMEOUT_SECONDS", "10"))
    mongo_timeout_ms: int = field(default_factory=lambda: _int("ONETHING_MONGO_TIMEOUT_MS", "3000"))
    mongo_socket_timeout_ms: int = field(default_factory=lambda: _int("ONETHING_MONGO_SOCKET_TIMEOUT_MS", "10000"))
    s3_connect_timeout_seconds: float = field(default_factory=lambda: _float("ONETHING_S3_CONNECT_TIMEOUT_SECONDS", "3"))
    s3_read_timeout_seconds: float = field(default_factory=lambda: _float("ONETHING_S3_READ_TIMEOUT_SECONDS", "30"))
    s3_retries: int = field(default_factory=lambda: _int("ONETHING_S3_RETRIES", "2"))
    amqp_timeout_seconds: float = field(default_factory=lambda: _float("ONETHING_AMQP_TIMEOUT_SECONDS", "5"))
    # the local log files (infra/supervise.py): a process's log turns into <log>.1 past this size,
    # and this many rotated files are kept
    log_file_bytes: int = field(default_factory=lambda: _int("ONETHING_LOG_FILE_BYTES", 64 * 1024 * 1024))
    log_files_kept: int = field(default_factory=lambda: _int("ONETHING_LOG_FILES_KEPT", "3"))
    # the local span files (services/common/telemetry.py): a new file when one passes this size,
    # the oldest finished files deleted while the folder holds more than the second
    spans_file_bytes: int = field(default_factory=lambda: _int("ONETHING_SPANS_FILE_BYTES", 64 * 1024 * 1024))
    spans_keep_bytes: int = field(default_factory=lambda: _int("ONETHING_SPANS_KEEP_BYTES", 2 * 1024 * 1024 * 1024))
    # tracing and logs (services/common/telemetry.py, services/common/logs.py): the standard
    # OpenTelemetry variables; `file` (OTLP JSON lines in the span folder) is onething's local default
    traces_exporter: str = field(default_factory=lambda: _env("OTEL_TRACES_EXPORTER", "file"))
    otlp_protocol: str = field(default_factory=lambda: _env(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", _env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")))
    # seconds, as the Python OTLP exporter reads it (the spec's unit is milliseconds)
    otlp_timeout: float = field(default_factory=lambda: _float(
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", _env("OTEL_EXPORTER_OTLP_TIMEOUT", "10")))
    tracing_disabled: bool = field(default_factory=lambda: _env("OTEL_SDK_DISABLED", "false").lower() == "true")
    # set: the batch processor's delay is the operator's; unset, span files are flushed every second
    bsp_schedule_delay_set: bool = field(default_factory=lambda: bool(_env("OTEL_BSP_SCHEDULE_DELAY", "")))
    log_format: str = field(default_factory=lambda: _choice("ONETHING_LOG_FORMAT", "json", ("json", "plain")))
    # the launcher's name of this process (`intake-api`, `desk-wsjk-440100`; the chart: the pod's)
    process_name: str = field(default_factory=lambda: _env("ONETHING_PROCESS_NAME", ""))
    # the local Prometheus of `make observe` (infra/observe.py)
    prometheus_port: int = field(default_factory=lambda: _int("ONETHING_PROMETHEUS_PORT", "9090"))
    # fault injection for tests: "<point>" names a place where the process exits on purpose
    fault: str = field(default_factory=lambda: _env("ONETHING_FAULT", ""))

    # the ops endpoint of every process (services/common/ops.py: /metrics, /healthz, /readyz) ------
    # its port (0: a free one the kernel picks, written to <var>/observe/targets/<process>.json, where
    # the local Prometheus finds it; the chart: 8080) and the address it binds (the chart: 0.0.0.0)
    ops_port: int = field(default_factory=lambda: _int("ONETHING_OPS_PORT", "0"))
    ops_bind_host: str = field(default_factory=lambda: _env("ONETHING_OPS_BIND_HOST", "127.0.0.1"))
    # readiness (services/common/readiness.py): how often the database, broker and S3 are asked, and
    # how long one answer may take before the dependency counts as down
    readiness_interval_seconds: float = field(default_factory=lambda: _float("ONETHING_READINESS_INTERVAL_SECONDS", "2"))
    readiness_timeout_seconds: float = field(default_factory=lambda: _float("ONETHING_READINESS_TIMEOUT_SECONDS", "2"))

    # who may do what (services/common/auth.py, services/common/policy.py) -----------------------
    # "production" refuses default credentials and the local development key at start-up
    profile: str = field(default_factory=lambda: _env("ONETHING_PROFILE", "local"))
    # the identity provider's key pair (a service needs only the public one); empty: var/auth/
    auth_public_key_file_spec: str = field(default_factory=lambda: _env("ONETHING_AUTH_PUBLIC_KEY_FILE", ""))
    auth_private_key_file_spec: str = field(default_factory=lambda: _env("ONETHING_AUTH_PRIVATE_KEY_FILE", ""))
    # more trusted public keys, as a JWK set (key rotation: old and new keys both verify); empty:
    # var/auth/jwks.json when it exists
    auth_jwks_file_spec: str = field(default_factory=lambda: _env("ONETHING_AUTH_JWKS_FILE", ""))
    auth_issuer: str = field(default_factory=lambda: _env("ONETHING_AUTH_ISSUER", "onething-idp"))
    auth_audience: str = field(default_factory=lambda: _env("ONETHING_AUTH_AUDIENCE", "onething-api"))
    # no token may live longer than this (exp - iat), whoever signed it
    auth_max_token_seconds: int = field(default_factory=lambda: _int("ONETHING_AUTH_MAX_TOKEN_SECONDS", 12 * 3600))
    auth_clock_skew_seconds: int = field(default_factory=lambda: _int("ONETHING_AUTH_CLOCK_SKEW_SECONDS", "60"))
    # the token a service presents when it calls another service (issued by the identity
    # provider, refreshed by the platform); empty: minted with the local key (local profile only)
    service_token_file: str = field(default_factory=lambda: _env("ONETHING_SERVICE_TOKEN_FILE", ""))

    # the api role's gRPC transport ------------------------------------------------------------
    grpc_bind_host: str = field(default_factory=lambda: _env("ONETHING_GRPC_BIND_HOST", "127.0.0.1"))
    # TLS: the server's certificate and key (both set: the api serves TLS only)
    grpc_tls_cert_file: str = field(default_factory=lambda: _env("ONETHING_GRPC_TLS_CERT_FILE", ""))
    grpc_tls_key_file: str = field(default_factory=lambda: _env("ONETHING_GRPC_TLS_KEY_FILE", ""))
    # the CA that signs the apis' certificates (clients trust it) and, under mutual TLS, the
    # clients' certificates (the server checks them against it)
    grpc_tls_ca_file: str = field(default_factory=lambda: _env("ONETHING_GRPC_TLS_CA_FILE", ""))
    # mutual TLS: the server refuses a client without a certificate its CA signed
    grpc_tls_client_auth: bool = field(default_factory=lambda: _flag("ONETHING_GRPC_TLS_CLIENT_AUTH"))
    # what a client (a service calling another, a tool) presents under mutual TLS
    grpc_tls_client_cert_file: str = field(default_factory=lambda: _env("ONETHING_GRPC_TLS_CLIENT_CERT_FILE", ""))
    grpc_tls_client_key_file: str = field(default_factory=lambda: _env("ONETHING_GRPC_TLS_CLIENT_KEY_FILE", ""))
    # clients connect with TLS ("1"); default: when a CA file is set
    grpc_tls_spec: str = field(default_factory=lambda: _env("ONETHING_GRPC_TLS", ""))
    # the name the clients expect in the servers' certificates, when it is not the host they dial
    grpc_tls_server_name: str = field(default_factory=lambda: _env("ONETHING_GRPC_TLS_SERVER_NAME", ""))

    # WINDOW pickups: after this many wrong codes in a row, ConfirmPickup is locked for a while
    pickup_max_attempts: int = field(default_factory=lambda: _int("ONETHING_PICKUP_MAX_ATTEMPTS", "5"))
    pickup_lock_minutes: float = field(default_factory=lambda: _float("ONETHING_PICKUP_LOCK_MINUTES", "30"))

    # evaluation: working days a department has to put a 差评 right (5 and 15 are both seen)
    bad_review_days: int = field(default_factory=lambda: _int("ONETHING_BAD_REVIEW_DAYS", 5))
    # joint_review: how often the worker looks for tasks past their due date
    clock_check_seconds: float = field(default_factory=lambda: _float("ONETHING_CLOCK_CHECK_SECONDS", 60))

    # a department's desk process (services/desk, `python -m services.desk`) ------------------------
    desk_department: str = field(default_factory=lambda: _env("ONETHING_DESK_DEPARTMENT", ""))
    desk_region_spec: str = field(default_factory=lambda: _env("ONETHING_DESK_REGION", ""))
    # one rule for every item (materials_present or manual), standing in for the rules file; empty:
    # the rules file decides (the local suite sets materials_present)
    desk_rule: str = field(default_factory=lambda: _env("ONETHING_DESK_RULE", ""))
    # which items each department decides by rule, per region (services/desk/rules.py)
    desk_rules_file: str = field(default_factory=lambda: _env(
        "ONETHING_DESK_RULES_FILE", os.path.join(ROOT, "services", "desk", "data", "rules.yaml")))
    # how long the rule takes over one task; 0 in production, set by tests that kill a desk mid-task
    desk_delay_seconds: float = field(default_factory=lambda: _float("ONETHING_DESK_DELAY_SECONDS", 0))
    # the launcher: which desks to start ("wsjk:440100,gaj:440100"); empty: one for every department
    # that implements an item of a seeded package, in the suite's region
    desks_spec: str = field(default_factory=lambda: _env("ONETHING_DESKS", ""))
    # the local S3 server (SeaweedFS): its first port (master; volume, filer and S3 follow)
    weed_port_base: int = field(default_factory=lambda: _int("ONETHING_WEED_PORT_BASE", 9333))

    # test runs only -------------------------------------------------------------------------------
    # which servers e2e/test_chaos.py restarts in the middle of its run
    chaos_restarts_spec: str = field(default_factory=lambda: _env("ONETHING_CHAOS_RESTARTS", "broker,mongo,s3"))
    # how many generated inputs each property of e2e/test_fuzz.py tries
    fuzz_examples: int = field(default_factory=lambda: _int("ONETHING_FUZZ_EXAMPLES", 25))
    # how long infra/tests/test_links.py keeps a site's broker away (stopped or killed) while the
    # other side publishes to it; a few seconds by default, 30 in the long run
    link_outage_seconds: float = field(default_factory=lambda: _float("ONETHING_LINK_OUTAGE_SECONDS", 3))
    # `make run-sites` (infra/multisite.py): added to every port of the three sites (broker nodes and
    # apis), so a test run's sites stand beside a developer's
    sites_port_offset: int = field(default_factory=lambda: _int("ONETHING_SITES_PORT_OFFSET", 0))

    def __post_init__(self) -> None:
        problems = []
        if self.profile not in ("local", "production"):
            problems.append(f"ONETHING_PROFILE={self.profile!r}: use local or production")
        for name, code in [("ONETHING_REGION", self.region), ("ONETHING_DESK_REGION", self.desk_region_spec),
                           ("ONETHING_CATALOG_UPSTREAM", self.catalog_upstream)] + [
                ("ONETHING_SERVED_REGIONS", r) for r in self.served_regions_spec.split(",") if r.strip()]:
            code = code.strip()
            if code and not (len(code) == 6 and code.isdigit()):
                problems.append(f"{name}: {code!r} is not a six-digit GB/T 2260 region code")
        if self.catalog_upstream and len(self.catalog_upstream) == 6 and self.catalog_upstream.isdigit() and (
                self.catalog_upstream == self.region or not region_within(self.region, self.catalog_upstream)):
            problems.append(f"ONETHING_CATALOG_UPSTREAM={self.catalog_upstream!r} is not a level above this site's "
                            f"region ONETHING_REGION={self.region!r} (a city takes its province's packages: 440100 "
                            "from 440000)")
        for name, value in (("ONETHING_GRPC_THREADS", self.grpc_threads),
                            ("ONETHING_MAX_HANDLER_ATTEMPTS", self.max_handler_attempts),
                            ("ONETHING_PICKUP_MAX_ATTEMPTS", self.pickup_max_attempts),
                            ("ONETHING_BAD_REVIEW_DAYS", self.bad_review_days),
                            ("ONETHING_MAX_UPLOAD_BYTES", self.max_upload_bytes),
                            ("ONETHING_SWEEP_INTERVAL_SECONDS", self.sweep_interval_seconds),
                            ("ONETHING_CLOCK_CHECK_SECONDS", self.clock_check_seconds),
                            ("ONETHING_RPC_TIMEOUT_SECONDS", self.rpc_timeout_seconds),
                            ("ONETHING_GRPC_TIMEOUT_SECONDS", self.grpc_timeout_seconds),
                            ("ONETHING_MONGO_TIMEOUT_MS", self.mongo_timeout_ms),
                            ("ONETHING_AMQP_TIMEOUT_SECONDS", self.amqp_timeout_seconds),
                            ("ONETHING_READINESS_INTERVAL_SECONDS", self.readiness_interval_seconds),
                            ("ONETHING_READINESS_TIMEOUT_SECONDS", self.readiness_timeout_seconds)):
            if value < 1 and not (isinstance(value, float) and value > 0):
                problems.append(f"{name}={value!r} must be more than 0")
        for name, value in (("ONETHING_SWEEP_GRACE_SECONDS", self.sweep_grace_seconds),
                            ("ONETHING_DESK_DELAY_SECONDS", self.desk_delay_seconds),
                            ("ONETHING_S3_RETRIES", self.s3_retries),
                            ("ONETHING_LINK_OUTAGE_SECONDS", self.link_outage_seconds),
                            ("ONETHING_SITES_PORT_OFFSET", self.sites_port_offset)):
            if value < 0:
                problems.append(f"{name}={value!r} must not be negative")
        if self.grpc_tls_server and not self.grpc_tls_cert_file.strip():
            problems.append("ONETHING_GRPC_TLS_CERT_FILE is empty")
        if bool(self.grpc_tls_cert_file) != bool(self.grpc_tls_key_file):
            problems.append("set both ONETHING_GRPC_TLS_CERT_FILE and ONETHING_GRPC_TLS_KEY_FILE, or neither")
        if not 0 <= self.ops_port <= 65535:
            problems.append(f"ONETHING_OPS_PORT={self.ops_port!r} is not a port (0 to 65535; 0: any free one)")
        if self.process_name and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", self.process_name):
            problems.append(f"ONETHING_PROCESS_NAME={self.process_name[:80]!r}: use up to 63 letters, digits, "
                            "'-', '_' or '.' (it names the process's file_sd target file)")
        if self.grpc_tls_spec not in ("", "0", "1"):
            problems.append(f"ONETHING_GRPC_TLS={self.grpc_tls_spec!r}: use 1 (on) or 0 (off)")
        if problems:
            raise SettingsError("; ".join(problems))

    @property
    def desk_region(self) -> str:
        return self.desk_region_spec or self.region

    @property
    def desks(self) -> list[tuple[str, str]]:
        """(department, region) pairs of ONETHING_DESKS (empty: the launcher's default)."""
        pairs = []
        for part in (p.strip() for p in self.desks_spec.split(",") if p.strip()):
            department, _, region = part.partition(":")
            if not department or not (len(region) == 6 and region.isdigit()):
                raise SettingsError(f"ONETHING_DESKS: {part!r} is not <department>:<region code>")
            pairs.append((department, region))
        return pairs

    @property
    def chaos_restarts(self) -> list[str]:
        return [r for r in self.chaos_restarts_spec.split(",") if r]

    def serves(self, region_code: str) -> bool:
        """True when a case of `region_code` is this site's to handle."""
        if self.served_regions_spec:
            served = [r.strip() for r in self.served_regions_spec.split(",") if r.strip()]
        else:
            served = [self.region]
        return any(region_within(region_code, r) for r in served)

    @property
    def served_regions(self) -> list[str]:
        return [r.strip() for r in self.served_regions_spec.split(",") if r.strip()] or [self.region]

    @property
    def spans_dir(self) -> str:
        return os.path.join(self.var_dir, "spans")

    @property
    def production(self) -> bool:
        return self.profile == "production"

    @property
    def broker_passwords_file(self) -> str:
        return self.broker_passwords_file_spec or os.path.join(self.infra_dir, "secrets", "broker-passwords.json")

    @property
    def auth_dir(self) -> str:
        return os.path.join(self.infra_dir, "auth")

    @property
    def auth_public_key_file(self) -> str:
        return self.auth_public_key_file_spec or os.path.join(self.auth_dir, "idp_ed25519.pub")

    @property
    def auth_private_key_file(self) -> str:
        return self.auth_private_key_file_spec or os.path.join(self.auth_dir, "idp_ed25519.key")

    @property
    def auth_jwks_file(self) -> str:
        return self.auth_jwks_file_spec or os.path.join(self.auth_dir, "jwks.json")

    @property
    def grpc_tls_server(self) -> bool:
        """The api serves TLS (a certificate and its key are set)."""
        return bool(self.grpc_tls_cert_file and self.grpc_tls_key_file)

    @property
    def grpc_tls(self) -> bool:
        """Clients connect with TLS."""
        if self.grpc_tls_spec:
            return self.grpc_tls_spec == "1"
        return bool(self.grpc_tls_ca_file)

    def db_name(self, service: str) -> str:
        return f"{self.db_prefix}{service}"

    def port(self, service: str) -> int:
        return _int(f"ONETHING_{service.upper()}_PORT", DEFAULT_PORTS[service])

    def address(self, service: str) -> str:
        host = _env(f"ONETHING_{service.upper()}_HOST", "127.0.0.1")
        return f"{host}:{self.port(service)}"


def region_within(code: object, ancestor: str) -> bool:
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


def region_prefix(ancestor: object) -> str | None:
    """The digits every code within `ancestor` shares, by the level of `ancestor` (GB/T 2260): 440000
    -> "44", 440100 -> "4401", 440106 -> "440106"; for store queries that must agree with
    region_within (None for a code that is not 6 digits: nothing is within it)."""
    if not (isinstance(ancestor, str) and len(ancestor) == 6 and ancestor.isdigit()):
        return None
    if ancestor.endswith("0000"):
        return ancestor[:2]
    if ancestor.endswith("00"):
        return ancestor[:4]
    return ancestor


_cached: tuple[tuple, Settings] | None = None


def settings() -> Settings:
    """The settings of the environment as it is now. Built once and kept while the environment does
    not change (every call used to read and check every variable again: 85 µs, many times per case);
    a changed variable (a test's monkeypatch, the launcher's child) gives a new one."""
    global _cached
    key = tuple(os.environ._data.items())  # type: ignore[attr-defined]  # the raw environment, no decoding
    cached = _cached
    if cached is None or cached[0] != key:
        cached = (key, Settings())
        _cached = cached
    return cached[1]




def production_problems(s: Settings | None = None, role: str = "api") -> list[str]:
    """What a production process must not run with: the default S3 secret, RabbitMQ's guest user,
    the local development key of the identity provider (var/auth), the identity provider's private
    key within the process's reach. Empty outside the production profile."""
    from urllib.parse import urlparse
    s = s or settings()
    if not s.production:
        return []
    problems = []
    amqp = urlparse(s.amqp_uri)
    if (amqp.username or "guest") == "guest" or amqp.password in (None, "", "guest"):
        problems.append("ONETHING_AMQP_URI uses RabbitMQ's default guest user (or no password)")
    if role == "desk":  # a department's desk holds broker credentials only: no S3, no keys
        return problems
    if s.s3_secret_key == LOCAL_S3_SECRET:
        problems.append("ONETHING_S3_SECRET_KEY is the local default secret")
    if LOCAL_S3_SECRET in s.mongo_uri:
        problems.append("ONETHING_MONGO_URI uses the local administrator's default password")
    local_dir = os.path.realpath(s.auth_dir)
    if not s.auth_public_key_file_spec and not s.auth_jwks_file_spec:
        problems.append("no identity provider key is configured (ONETHING_AUTH_PUBLIC_KEY_FILE or "
                        "ONETHING_AUTH_JWKS_FILE); the local development key in var/auth is refused")
    for spec, name in ((s.auth_public_key_file_spec, "ONETHING_AUTH_PUBLIC_KEY_FILE"),
                       (s.auth_jwks_file_spec, "ONETHING_AUTH_JWKS_FILE")):
        if spec and os.path.dirname(os.path.realpath(spec)) == local_dir:
            problems.append(f"{name} points into the local development key folder {s.auth_dir}")
    if os.path.exists(s.auth_private_key_file):
        problems.append(f"the identity provider's private key {s.auth_private_key_file} is within reach of "
                        "this process; services verify tokens, they never sign them")
    if role == "api" and s.grpc_bind_host not in ("127.0.0.1", "::1", "localhost") and not s.grpc_tls_server:
        problems.append(f"the api binds {s.grpc_bind_host} without TLS (set ONETHING_GRPC_TLS_CERT_FILE and "
                        "ONETHING_GRPC_TLS_KEY_FILE)")
    return problems


def refuse_defaults_in_production(role: str = "api") -> None:
    """Called once at the start of every api, worker and desk process: settings that cannot be read
    stop it (SettingsError, naming the variable), and under ONETHING_PROFILE=production a process
    with default credentials or the local development key does not start."""
    try:
        current = settings()
    except SettingsError as exc:
        raise SystemExit(f"refusing to start: {exc}") from None
    problems = production_problems(current, role=role)
    if problems:
        raise SystemExit("refusing to start in the production profile (ONETHING_PROFILE=production):\n  - "
                         + "\n  - ".join(problems))
