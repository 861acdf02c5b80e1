"""Extra local RabbitMQ nodes, one per site (the province, each city), on loopback beside the
machine's default node, which is never touched.

Each site's node has its own name (`onething-440000@localhost`), AMQP port, Erlang distribution
port, management and Prometheus ports (when given), and its own folder (default
`<infra_dir>/sites/<region>`) holding everything else: data (`data/`), logs (`log/`), the PID file
(`run/node.pid`), its enabled-plugins file, its `rabbitmq.conf`, its own `rabbitmq-env.conf` (so the
machine's /etc/rabbitmq/rabbitmq-env.conf, which names the default node, does not apply) and its own
Erlang cookie (HOME is the site's folder for the server and for every `rabbitmqctl` call; a
`rabbitmqctl` aimed at a site's node therefore cannot reach the default node, whose cookie differs).

The server is started with `rabbitmq-server -detached` and the RABBITMQ_* environment variables.
On Debian the `rabbitmq-server`/`rabbitmqctl` in /usr/sbin are wrappers that switch to the
`rabbitmq` user and its home (the default node's cookie); the scripts behind them
(/usr/lib/rabbitmq/bin) are run directly instead, as the current user.

    python -m infra.sites start 440000 --amqp-port 5781 --dist-port 25781 [--management-port 15781]
                                       [--prometheus-port 15791]
    python -m infra.sites stop 440000 | kill 440000 | stop-app 440000 | start-app 440000 | status [440000]

Measured here (RabbitMQ 3.10.8, Erlang 25, two nodes booting at once): a node with the shovel,
management and Prometheus plugins boots in 8-9 s from `rabbitmq-server -detached` to
`await_startup`, 5-7 s when it starts again on its data (after a stop or a SIGKILL); `rabbitmqctl
stop` takes 4-9 s, `stop_app` about 0.5 s, `start_app` 1.5-2 s.

A killed node's process can stay a zombie for a while (here PID 1 reaps late), so "alive" means a
live process that is not a zombie.
"""
import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from urllib.parse import quote

from infra import procs
from services.common.config import process_environment, settings

# the machine's default node and the CLI tools' own distribution ports: a site never takes them
RESERVED_PORTS = frozenset({5672, 5671, 25672, 15672, 15692, 4369, *range(35672, 35683)})
HOST = "127.0.0.1"
DEBIAN_SCRIPTS = "/usr/lib/rabbitmq/bin"


class SiteError(RuntimeError):
    """A site's node cannot be started, stopped or reached; the message says why."""


@dataclass(frozen=True)
class Site:
    """One site's RabbitMQ node. `base_dir` empty: `<infra_dir>/sites/<region>`; `node` empty:
    `onething-<region>@localhost` (tests name theirs apart from a running `make run-sites`)."""
    region: str
    amqp_port: int
    dist_port: int
    management_port: int | None = None
    prometheus_port: int | None = None
    base_dir: str = ""
    node: str = ""

    def __post_init__(self):
        if not (len(self.region) == 6 and self.region.isdigit()):
            raise ValueError(f"region {self.region!r} is not a six-digit GB/T 2260 code")
        object.__setattr__(self, "base_dir", os.path.abspath(
            self.base_dir or os.path.join(settings().infra_dir, "sites", self.region)))
        if not self.node:
            object.__setattr__(self, "node", f"onething-{self.region}@localhost")
        if "@" not in self.node:
            raise ValueError(f"node {self.node!r} has no @host")
        ports = list(self.ports.values())
        for name, port in self.ports.items():
            if not (1024 <= port <= 65535):
                raise ValueError(f"{name} port {port} is outside 1024-65535")
            if port in RESERVED_PORTS:
                raise ValueError(f"{name} port {port} belongs to the machine's default RabbitMQ node or its tools")
        if len(set(ports)) != len(ports):
            raise ValueError(f"site {self.region} uses one port twice: {self.ports}")

    @property
    def ports(self):
        found = {"amqp": self.amqp_port, "dist": self.dist_port}
        if self.management_port:
            found["management"] = self.management_port
        if self.prometheus_port:
            found["prometheus"] = self.prometheus_port
        return found

    @property
    def plugins(self):
        names = ["rabbitmq_shovel"]
        if self.management_port:
            names += ["rabbitmq_management", "rabbitmq_shovel_management"]
        if self.prometheus_port:
            names.append("rabbitmq_prometheus")
        return names

    @property
    def pid_file(self):
        return os.path.join(self.base_dir, "run", "node.pid")

    @property
    def log_dir(self):
        return os.path.join(self.base_dir, "log")

    @property
    def data_dir(self):
        return os.path.join(self.base_dir, "data")

    def amqp_uri(self, vhost="/", user="guest", password="guest"):
        return f"amqp://{quote(user, safe='')}:{quote(password, safe='')}@{HOST}:{self.amqp_port}/{quote(vhost, safe='')}"

    @property
    def address(self):
        """The broker's address without credentials or vhost, as a link's `receiving_uri` takes it."""
        return f"amqp://{HOST}:{self.amqp_port}"


# files ---------------------------------------------------------------------------------------------
def _script(name):
    debian = os.path.join(DEBIAN_SCRIPTS, name)
    if os.access(debian, os.X_OK):
        return debian
    found = shutil.which(name)
    if not found:
        raise SiteError(f"{name} is not installed: apt-get install rabbitmq-server")
    return found


def _write(path, text, mode=0o644):
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(path, mode)


def _prepare(site):
    for sub in ("", "run", "log", "data"):
        os.makedirs(os.path.join(site.base_dir, sub), exist_ok=True)
    cookie = os.path.join(site.base_dir, ".erlang.cookie")
    if not os.path.exists(cookie):
        _write(cookie, secrets.token_hex(20).upper(), 0o400)
    _write(os.path.join(site.base_dir, "enabled_plugins"), "[" + ",".join(site.plugins) + "].\n")
    conf = [f"# site {site.region}, written by infra/sites.py",
            # the node answers on loopback only (RABBITMQ_NODE_IP_ADDRESS does the same for AMQP)
            f"listeners.tcp.default = {HOST}:{site.amqp_port}"]
    if site.management_port:
        conf += [f"management.tcp.ip = {HOST}", f"management.tcp.port = {site.management_port}"]
    if site.prometheus_port:
        conf += [f"prometheus.tcp.ip = {HOST}", f"prometheus.tcp.port = {site.prometheus_port}"]
    _write(os.path.join(site.base_dir, "rabbitmq.conf"), "\n".join(conf) + "\n")
    # replaces /etc/rabbitmq/rabbitmq-env.conf (the default node's name) for this node and its CLI
    _write(os.path.join(site.base_dir, "rabbitmq-env.conf"), "ERL_EPMD_ADDRESS=127.0.0.1\n")
    _write(os.path.join(site.base_dir, "site.json"), json.dumps(asdict(site), indent=2) + "\n")


def _base_env(site):
    """The environment of the site's server and CLI: this process's, without any RABBITMQ_*/ERL_*
    setting meant for another node."""
    env = {k: v for k, v in process_environment().items() if not k.startswith(("RABBITMQ_", "ERL_"))}
    env.update({"HOME": site.base_dir,
                "RABBITMQ_CONF_ENV_FILE": os.path.join(site.base_dir, "rabbitmq-env.conf"),
                # the CLI finds the commands of enabled plugins (shovel_status) through this file
                "RABBITMQ_ENABLED_PLUGINS_FILE": os.path.join(site.base_dir, "enabled_plugins"),
                "ERL_CRASH_DUMP": os.path.join(site.log_dir, "erl_crash.dump")})
    return env


def _server_env(site):
    env = _base_env(site)
    env.update({
        "RABBITMQ_NODENAME": site.node,
        "RABBITMQ_NODE_IP_ADDRESS": HOST,
        "RABBITMQ_NODE_PORT": str(site.amqp_port),
        "RABBITMQ_DIST_PORT": str(site.dist_port),
        "RABBITMQ_MNESIA_BASE": site.data_dir,
        "RABBITMQ_LOG_BASE": site.log_dir,
        "RABBITMQ_CONFIG_FILE": os.path.join(site.base_dir, "rabbitmq.conf"),
        # never the machine's /etc/rabbitmq/advanced.config (a missing file is ignored)
        "RABBITMQ_ADVANCED_CONFIG_FILE": os.path.join(site.base_dir, "advanced.config"),
        "RABBITMQ_PID_FILE": site.pid_file,
        # Erlang distribution on loopback only
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
    })
    return env


def load(region, base_dir=""):
    """The site a previous `start` wrote to `<base_dir>/site.json`."""
    base_dir = base_dir or os.path.join(settings().infra_dir, "sites", region)
    path = os.path.join(base_dir, "site.json")
    try:
        with open(path, encoding="utf-8") as fh:
            return Site(**json.load(fh))
    except FileNotFoundError:
        raise SiteError(f"site {region} was never started here (no {path})") from None


# the CLI -------------------------------------------------------------------------------------------
def ctl(site, *args, timeout=120.0, check=True):
    """`rabbitmqctl -n <site's node> ...` with the site's cookie; returns the CompletedProcess."""
    try:
        done = subprocess.run([_script("rabbitmqctl"), "-q", "-n", site.node, *args], env=_base_env(site),
                              cwd=site.base_dir, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SiteError(f"rabbitmqctl {' '.join(args)} on {site.node} did not finish within {timeout:.0f}s") from None
    if check and done.returncode != 0:
        raise SiteError(f"rabbitmqctl {' '.join(args)} on {site.node} failed ({done.returncode}): "
                        f"{(done.stderr or done.stdout).strip()[-800:]}")
    return done


# start and stop -----------------------------------------------------------------------------------
def node_pid(site):
    """The PID of the site's node when it is alive (not a zombie waiting to be reaped) and is this
    site's Erlang VM (its `-home` is the site's folder: a PID the system reused after a crash, or the
    default node, is never taken for it), else None."""
    pid = procs.read_pid(site.pid_file)
    return pid if pid and procs._alive(pid) and _runs_from(pid, site.base_dir) else None


def _runs_from(pid, home):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().decode(errors="replace").split("\0")
    except OSError:
        return True  # no /proc: the PID file is all there is
    return any(i + 1 < len(argv) and arg == "-home" and argv[i + 1] == home for i, arg in enumerate(argv))


def _log_tail(site, lines=25):
    path = os.path.join(site.log_dir, f"{site.node}.log")
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return "".join(fh.readlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait(condition, timeout, what, site=None, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(step)
    detail = f"\n--- {site.node} log ---\n{_log_tail(site)}" if site else ""
    raise SiteError(f"{what} within {timeout:.0f}s{detail}")


def start(site, timeout=90.0):
    """Start the site's node (`rabbitmq-server -detached`) and wait until it has booted. Returns the
    seconds it took (0 when it was already running)."""
    if node_pid(site):
        if procs.port_open(HOST, site.amqp_port):
            return 0.0
        raise SiteError(f"{site.node} is running (pid {node_pid(site)}) but its application is stopped: use start_app")
    busy = {name: port for name, port in site.ports.items() if procs.port_open(HOST, port)}
    if busy:
        raise SiteError(f"cannot start {site.node}: ports in use by something else: {busy}")
    _prepare(site)
    if os.path.exists(site.pid_file):  # a killed node's
        os.remove(site.pid_file)
    began = time.monotonic()
    try:
        launched = subprocess.run([_script("rabbitmq-server"), "-detached"], env=_server_env(site), cwd=site.base_dir,
                                  capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise SiteError(f"rabbitmq-server -detached for {site.node} did not return within 60s") from None
    if launched.returncode != 0:
        raise SiteError(f"rabbitmq-server -detached for {site.node} failed: {launched.stderr.strip()[-800:]}")
    # the node writes its PID file early in its boot and dies if it cannot boot (a port taken meanwhile)
    _wait(lambda: node_pid(site) is not None, timeout, f"{site.node} wrote no PID file", site)
    pid = node_pid(site)

    def booted():
        if not procs._alive(pid):
            raise SiteError(f"{site.node} (pid {pid}) died while booting\n--- log ---\n{_log_tail(site)}")
        return procs.port_open(HOST, site.amqp_port)

    _wait(booted, timeout - (time.monotonic() - began), f"{site.node} did not open AMQP port {site.amqp_port}", site)
    ctl(site, "await_startup", "--timeout", str(max(5, int(timeout - (time.monotonic() - began)))))
    return time.monotonic() - began


def stop(site, timeout=60.0):
    """Stop the node gracefully (`rabbitmqctl stop <pid file>`, which waits for the process to end);
    SIGKILL if it is still there after `timeout`. Returns the PID it stopped, or None."""
    pid = node_pid(site)
    if not pid:
        return None
    try:
        ctl(site, "stop", site.pid_file, timeout=timeout)
    except SiteError:
        pass  # not reachable over the CLI: the wait below decides
    try:  # `stop <pid file>` returns when the process has ended; a node the CLI could not reach gets 10 s more
        _wait(lambda: not procs._alive(pid), 10, f"{site.node} (pid {pid}) did not stop")
    except SiteError:
        kill(site)
    _forget_pid(site)
    return pid


def kill(site, timeout=30.0):
    """SIGKILL the node by its PID (a crash: nothing is flushed or closed cleanly) and wait until it
    is gone and its AMQP port is closed. Returns the PID, or None when it was not running."""
    pid = node_pid(site)
    if not pid:
        return None
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _wait(lambda: not procs._alive(pid), timeout, f"{site.node} (pid {pid}) survived SIGKILL")
    _wait(lambda: not procs.port_open(HOST, site.amqp_port), timeout, f"port {site.amqp_port} stayed open")
    _forget_pid(site)
    return pid


def _forget_pid(site):
    if os.path.exists(site.pid_file) and not node_pid(site):
        os.remove(site.pid_file)


def stop_app(site, timeout=60.0):
    """A planned restart's first half: the RabbitMQ application stops (every connection closes,
    durable queues and persistent messages stay on disk), the Erlang node stays up."""
    ctl(site, "stop_app", timeout=timeout)
    _wait(lambda: not procs.port_open(HOST, site.amqp_port), timeout, f"port {site.amqp_port} stayed open")


def start_app(site, timeout=90.0):
    """The second half: the application starts again on the same data; returns the seconds it took."""
    began = time.monotonic()
    ctl(site, "start_app", timeout=timeout)
    ctl(site, "await_startup", "--timeout", str(int(timeout)), timeout=timeout + 10)
    return time.monotonic() - began


def status(site):
    """{"node", "pid", "state": "running" | "app stopped" | "stopped", "ports"}."""
    pid = node_pid(site)
    if not pid:
        state = "stopped"
    elif procs.port_open(HOST, site.amqp_port):
        state = "running"
    else:
        state = "app stopped"
    return {"region": site.region, "node": site.node, "pid": pid, "state": state, "ports": site.ports,
            "base_dir": site.base_dir}


def known_sites(base=None):
    """Every site started under `<infra_dir>/sites` (or `base`)."""
    base = base or os.path.join(settings().infra_dir, "sites")
    found = []
    if os.path.isdir(base):
        for region in sorted(os.listdir(base)):
            if os.path.exists(os.path.join(base, region, "site.json")):
                found.append(load(region, os.path.join(base, region)))
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m infra.sites", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["start", "stop", "kill", "stop-app", "start-app", "status"])
    parser.add_argument("region", nargs="?")
    parser.add_argument("--amqp-port", type=int)
    parser.add_argument("--dist-port", type=int)
    parser.add_argument("--management-port", type=int)
    parser.add_argument("--prometheus-port", type=int)
    args = parser.parse_args(argv)
    if args.command == "status":
        targets = [load(args.region)] if args.region else known_sites()
        for site in targets:
            print(json.dumps(status(site), ensure_ascii=False))
        return 0
    if not args.region:
        parser.error(f"{args.command} needs a region")
    if args.command == "start":
        if not (args.amqp_port and args.dist_port):
            parser.error("start needs --amqp-port and --dist-port")
        site = Site(args.region, args.amqp_port, args.dist_port, args.management_port, args.prometheus_port)
        took = start(site)
        print(f"{site.node} up on {site.address} ({took:.1f}s)")
        return 0
    site = load(args.region)
    if args.command == "stop":
        print(f"stopped {site.node} (pid {stop(site)})")
    elif args.command == "kill":
        print(f"killed {site.node} (pid {kill(site)})")
    elif args.command == "stop-app":
        stop_app(site)
        print(f"{site.node}: application stopped")
    else:
        print(f"{site.node}: application started ({start_app(site):.1f}s)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (SiteError, ValueError) as exc:
        sys.exit(f"error: {exc}")
