"""A real Prometheus for the local suite, with onething's alert rules (infra/prometheus/alerts.yml).

    python -m infra.observe up | down | status | targets | install

`up` installs Debian's `prometheus` package when `prometheus`/`promtool` are missing (as root), writes
`<var_dir>/observe/prometheus.yml` and starts Prometheus on 127.0.0.1:9090 (ONETHING_PROMETHEUS_PORT)
with its data in `<var_dir>/observe/data`, its PID file in `<var_dir>/run/prometheus.pid` and its log in
`<var_dir>/log/prometheus.log`; `down` stops it by that PID. The package's own service never runs: it
is installed with services kept from starting, and nothing here uses /etc/prometheus.

What it scrapes:
- job `onething`: every suite process, from the file_sd target file each writes on start and removes on
  a clean stop (`<var_dir>/observe/targets/<process>.json`; the sites' processes under
  `<var_dir>/sites/<region>/observe/targets/`);
- job `rabbitmq`: RabbitMQ's own plugin, per queue (`/metrics/per-object`), on the machine's node
  (127.0.0.1:15692) and on each site node that runs (`make run-sites`), from target files this module
  writes in `<var_dir>/observe/brokers/` (`targets` writes them again after the sites start or stop).
"""
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

import yaml

from infra import procs
from services.common.config import ROOT, process_environment, settings

DEFAULT_PORT = 9090
HOST = "127.0.0.1"
NAME = "prometheus"  # its PID file and log: <var_dir>/run/prometheus.pid, <var_dir>/log/prometheus.log
RULES = os.path.join(ROOT, "infra", "prometheus", "alerts.yml")
RABBITMQ_PORT = 15692  # the machine's node's rabbitmq_prometheus listener
PER_OBJECT = "/metrics/per-object"
APT_INSTALL = "apt-get install -y --no-install-recommends prometheus"
# what `up` prints: a few queries worth a look
EXAMPLES = (
    ("up == 0", "targets that do not answer"),
    ("rabbitmq_queue_messages_ready{queue=~`desk\\..*`}", "tasks waiting at each desk"),
    ("sum by (grpc_service, grpc_code) (rate(grpc_server_handled_total[5m]))", "api calls per outcome"),
    ("sum by (service, handler, outcome) (rate(onething_handler_messages_total[5m]))", "handled events"),
    ("histogram_quantile(0.95, sum by (le, department) (rate(onething_desk_decision_seconds_bucket[5m])))",
     "95th percentile of each department's decision time"),
    ("onething_tasks_overdue > 0", "overdue tasks per department and region"),
    ("onething_outbox_oldest_age_seconds", "the oldest unpublished event of each service"),
)


class ObserveError(RuntimeError):
    """Prometheus cannot be installed, configured or started; the message says why and what to do."""


@dataclass(frozen=True)
class Layout:
    """Where one Prometheus keeps its files and which port it answers on."""
    base: str      # prometheus.yml, data/, brokers/ and the processes' targets/
    port: int
    run_dir: str   # prometheus.pid
    log_dir: str   # prometheus.log

    @property
    def config(self) -> str:
        return os.path.join(self.base, "prometheus.yml")

    @property
    def data(self) -> str:
        return os.path.join(self.base, "data")

    @property
    def targets(self) -> str:
        return os.path.join(self.base, "targets")

    @property
    def brokers(self) -> str:
        return os.path.join(self.base, "brokers")

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


def prometheus_port() -> int:
    return settings().prometheus_port  # ONETHING_PROMETHEUS_PORT


def layout() -> Layout:
    s = settings()
    return Layout(os.path.join(s.var_dir, "observe"), prometheus_port(),
                  os.path.join(s.var_dir, "run"), os.path.join(s.var_dir, "log"))


# installing -----------------------------------------------------------------------------------------
def missing_tools() -> list[str]:
    return [tool for tool in ("prometheus", "promtool") if shutil.which(tool) is None]


def install(policy_file: str = "/usr/sbin/policy-rc.d") -> bool:
    """Debian's `prometheus` package when `prometheus` or `promtool` is missing (True when it was
    installed now). Its init script is kept from starting the package's own server (which would take
    port 9090 with /etc/prometheus's config): a policy-rc.d that refuses every start is put in place
    for the install when the machine has none."""
    if not missing_tools():
        return False
    if shutil.which("apt-get") is None:
        raise ObserveError(f"{' and '.join(missing_tools())} missing and this machine has no apt-get: install "
                           "Prometheus 2.x so that `prometheus` and `promtool` are on the PATH")
    if os.geteuid() != 0:
        raise ObserveError(f"{' and '.join(missing_tools())} missing: as root, run `{APT_INSTALL}` "
                           "(or `make promtool`)")
    guarded = not os.path.exists(policy_file)
    if guarded:
        with open(policy_file, "w") as fh:
            fh.write("#!/bin/sh\n# written by onething's infra/observe.py for one apt-get run\nexit 101\n")
        os.chmod(policy_file, 0o755)
    env = process_environment({"DEBIAN_FRONTEND": "noninteractive"})
    try:
        argv = APT_INSTALL.split()
        done = subprocess.run(argv, env=env, capture_output=True, text=True)
        if done.returncode != 0:  # a fresh machine has no package lists yet
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, text=True)
            done = subprocess.run(argv, env=env, capture_output=True, text=True)
    finally:
        if guarded:
            os.remove(policy_file)
    if done.returncode != 0 or missing_tools():
        raise ObserveError(f"`{APT_INSTALL}` failed: {(done.stderr or done.stdout).strip()[-800:]}")
    return True


def promtool(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`promtool <args>`; ObserveError (with how to install it) when it is missing."""
    if shutil.which("promtool") is None:
        raise ObserveError(f"promtool is missing: as root, run `{APT_INSTALL}` (or `make promtool`)")
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=timeout)


# configuring ----------------------------------------------------------------------------------------
def process_target_files(var_dir: str) -> list[str]:
    """The file_sd patterns of the suite's processes: this suite's and each site's of `make run-sites`."""
    from infra import multisite
    var_dirs = [var_dir] + [os.path.join(var_dir, "sites", region) for region in multisite.REGIONS]
    return [os.path.join(d, "observe", "targets", "*.json") for d in var_dirs]


def config_text(process_files: list[str], broker_files: list[str], rule_files: list[str],
                scrape_interval: str = "10s", evaluation_interval: str = "10s") -> str:
    """prometheus.yml: the suite's processes (job onething) and RabbitMQ per queue (job rabbitmq),
    each from file_sd files, and the alert rules."""
    def job(name: str, files: list[str], path: str = "/metrics") -> dict:
        return {"job_name": name, "metrics_path": path,
                "file_sd_configs": [{"files": files, "refresh_interval": "5s"}]}
    config = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": evaluation_interval,
                   "scrape_timeout": scrape_interval if _seconds(scrape_interval) < 10 else "10s"},
        "rule_files": rule_files,
        "scrape_configs": [job("onething", process_files), job("rabbitmq", broker_files, PER_OBJECT)],
    }
    return "# written by infra/observe.py; `python -m infra.observe up` writes it again\n" + yaml.safe_dump(
        config, sort_keys=False)


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for unit in ("ms", "s", "m", "h"):
        if duration.endswith(unit) and duration[:-len(unit)].isdigit():
            return int(duration[:-len(unit)]) * units[unit]
    raise ValueError(f"{duration!r} is not a duration such as 10s, 1m or 500ms")


def target_entry(address: str, **labels: str) -> list[dict]:
    """One file_sd file's content: `[{"targets": [address], "labels": labels}]`."""
    return [{"targets": [address], "labels": labels}]


def write_target(folder: str, name: str, entry: list[dict]) -> str:
    """Write `<folder>/<name>.json` whole (a temporary file renamed over it: Prometheus never reads
    half a file)."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{name}.json")
    with open(path + ".tmp", "w", encoding="utf-8") as fh:
        json.dump(entry, fh)
    os.replace(path + ".tmp", path)
    return path


def broker_targets() -> dict[str, list[dict]]:
    """{file name: file_sd entry} of the RabbitMQ nodes to scrape: the machine's node, and each site
    node of `make run-sites` that is running."""
    from infra import multisite, sites
    found = {"rabbitmq": target_entry(f"{HOST}:{RABBITMQ_PORT}", process="rabbitmq", role="broker",
                                      site=settings().region)}
    for region in multisite.REGIONS:
        node = multisite.node(region)
        if node.prometheus_port and sites.node_pid(node):
            found[f"rabbitmq-{region}"] = target_entry(f"{HOST}:{node.prometheus_port}", process=f"rabbitmq-{region}",
                                                       role="broker", site=region)
    return found


def refresh_broker_targets(where: Layout) -> list[str]:
    """Write the brokers' target files and remove those of nodes no longer running; their names."""
    wanted = broker_targets()
    for name, entry in wanted.items():
        write_target(where.brokers, name, entry)
    for path in glob.glob(os.path.join(where.brokers, "*.json")):
        if os.path.basename(path)[:-5] not in wanted:
            os.remove(path)
    return sorted(wanted)


def write_config(where: Layout, text: str) -> str:
    """Write prometheus.yml and check it with `promtool check config` (its rule files too)."""
    os.makedirs(where.base, exist_ok=True)
    with open(where.config + ".tmp", "w", encoding="utf-8") as fh:
        fh.write(text)
    checked = promtool("check", "config", where.config + ".tmp")
    if checked.returncode != 0:
        raise ObserveError(f"promtool check config refused the configuration:\n{checked.stdout}{checked.stderr}")
    os.replace(where.config + ".tmp", where.config)
    return where.config


# running --------------------------------------------------------------------------------------------
def pid(where: Layout) -> int | None:
    return procs.read_pid(os.path.join(where.run_dir, f"{NAME}.pid"))


def start(where: Layout, timeout: float = 60) -> int:
    """Start Prometheus on `where` (its config written before) unless it runs; wait until it is ready.
    Returns its PID. A running one reads its configuration again (SIGHUP)."""
    running = pid(where)
    if running:
        os.kill(running, signal.SIGHUP)
        return running
    if procs.port_open(HOST, where.port):
        raise ObserveError(f"{HOST}:{where.port} is held by a process this checkout did not start "
                           f"({where.run_dir}/{NAME}.pid names none): stop it, or choose another port "
                           "with ONETHING_PROMETHEUS_PORT")
    if missing_tools():
        raise ObserveError(f"prometheus is missing: as root, run `{APT_INSTALL}`")
    os.makedirs(where.data, exist_ok=True)
    argv = ["prometheus", f"--config.file={where.config}", f"--storage.tsdb.path={where.data}",
            f"--web.listen-address={HOST}:{where.port}", "--storage.tsdb.retention.time=15d",
            "--web.enable-lifecycle"]
    started, _ = procs.start(NAME, argv, where.run_dir, where.log_dir, cwd=where.base)
    wait_ready(where, started, timeout)
    return started


def wait_ready(where: Layout, started: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not procs._alive(started):
            raise ObserveError(f"Prometheus (pid {started}) stopped while starting:\n{log_tail(where)}")
        try:
            with urllib.request.urlopen(f"{where.url}/-/ready", timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise ObserveError(f"Prometheus (pid {started}) not ready on {where.url} within {timeout:.0f}s:\n{log_tail(where)}")


def stop(where: Layout) -> int | None:
    """Stop Prometheus by its PID file and wait (SIGKILL after 30 s); the PID, or None."""
    return procs.stop(NAME, where.run_dir, timeout=30)


def log_tail(where: Layout, lines: int = 20) -> str:
    try:
        with open(os.path.join(where.log_dir, f"{NAME}.log"), encoding="utf-8", errors="replace") as fh:
            return "".join(fh.readlines()[-lines:])
    except OSError:
        return "(no log)"


def api(where: Layout, path: str, **params: str) -> dict:
    """GET the Prometheus HTTP API (`/api/v1/...`); its `data`."""
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    with urllib.request.urlopen(f"{where.url}{path}{query}", timeout=10) as answer:
        body = json.load(answer)
    if body.get("status") != "success":
        raise ObserveError(f"{path}: {body.get('error', body)}")
    return body["data"]


# the commands ---------------------------------------------------------------------------------------
def up() -> None:
    install()
    from infra import local
    local.ensure_prometheus_plugin()
    where = layout()
    process_files = process_target_files(settings().var_dir)
    for pattern in process_files:  # Prometheus watches each folder, and logs every 5 s one that is missing
        os.makedirs(os.path.dirname(pattern), exist_ok=True)
    brokers = refresh_broker_targets(where)
    write_config(where, config_text(process_files, [os.path.join(where.brokers, "*.json")], [RULES]))
    running = pid(where)
    started = start(where)
    print(f"Prometheus {'reloaded' if running else 'up'} (pid {started}) on {where.url}; "
          f"config {where.config}, log {os.path.join(where.log_dir, NAME + '.log')}; brokers: {', '.join(brokers)}")
    print(f"  targets  {where.url}/targets\n  alerts   {where.url}/alerts\n  rules    {where.url}/rules")
    print("  queries:")
    for expr, meaning in EXAMPLES:
        print(f"    {expr}\n        {meaning}: {where.url}/graph?g0.expr={urllib.parse.quote(expr)}&g0.tab=1")


def down() -> None:
    stopped = stop(layout())
    if stopped:
        print(f"stopped Prometheus (pid {stopped})")


def install_command() -> None:
    print("prometheus and promtool installed" if install() else
          f"prometheus and promtool already here ({shutil.which('promtool')})")


def targets() -> None:
    print(f"broker targets: {', '.join(refresh_broker_targets(layout()))}")


def status() -> None:
    where = layout()
    running = pid(where)
    if not running:
        print(f"Prometheus: stopped (python -m infra.observe up starts it on {where.url})")
        return
    found = api(where, "/api/v1/targets", state="active")["activeTargets"]
    down_ = [f"{t['labels'].get('process', t['scrapeUrl'])}: {t.get('lastError') or t['health']}"
             for t in found if t["health"] != "up"]
    firing = [a for a in api(where, "/api/v1/alerts")["alerts"] if a["state"] == "firing"]
    print(f"Prometheus: running pid {running} on {where.url}; {len(found) - len(down_)}/{len(found)} targets up")
    for line in down_:
        print(f"  down  {line}")
    for alert in firing:
        labels = alert["labels"]
        print(f"  FIRING {labels['alertname']} ({labels.get('severity', '?')}): "
              f"{alert.get('annotations', {}).get('summary', labels)}")


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "status"
    commands = {"up": up, "down": down, "status": status, "targets": targets, "install": install_command}
    if command not in commands:
        print(f"usage: python -m infra.observe {' | '.join(commands)}", file=sys.stderr)
        return 2
    try:
        commands[command]()
    except ObserveError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
