"""Start processes in the background with a PID file and a log, stop them by PID and wait."""
import os
import signal
import socket
import subprocess
import time

from services.common.config import process_environment


def port_open(host, port, timeout=0.5):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host, port, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if port_open(host, port):
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not open {host}:{port} within {timeout:.0f}s")


def read_pid(pidfile):
    try:
        with open(pidfile) as fh:
            pid = int(fh.read().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def start(name, argv, run_dir, log_dir, env=None, cwd=None):
    """Start `argv` in its own process group unless its PID file names a live process."""
    os.makedirs(run_dir, exist_ok=True)
    os.makedirs(log_dir, exist_ok=True)
    pidfile = os.path.join(run_dir, f"{name}.pid")
    pid = read_pid(pidfile)
    if pid:
        return pid, False
    log = open(os.path.join(log_dir, f"{name}.log"), "ab")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=process_environment(env), cwd=cwd, start_new_session=True)
    with open(pidfile, "w") as fh:
        fh.write(str(proc.pid))
    return proc.pid, True


def stop(name, run_dir, timeout=30.0, sig=signal.SIGTERM):
    """Signal the process named by the PID file and wait; SIGKILL after `timeout`."""
    return stop_many([name], run_dir, timeout, sig).get(name)


def _alive(pid):
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
        if finished == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return False


def stop_many(names, run_dir, timeout=30.0, sig=signal.SIGTERM):
    """Stop several processes at once: signal every one, then wait for all (SIGKILL whoever is
    still there after `timeout`). Returns {name: pid} of those that were running."""
    pids = {}
    for name in names:
        pid = read_pid(os.path.join(run_dir, f"{name}.pid"))
        if pid:
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                pass
            pids[name] = pid
    deadline = time.time() + timeout
    while time.time() < deadline and any(_alive(p) for p in pids.values()):
        time.sleep(0.1)
    for pid in pids.values():
        if _alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            while _alive(pid):
                time.sleep(0.05)
    for name in names:
        pidfile = os.path.join(run_dir, f"{name}.pid")
        if os.path.exists(pidfile):
            os.remove(pidfile)
    return pids


def end(process, timeout=30.0):
    """Stop a child process (a subprocess.Popen) gracefully: SIGTERM, then SIGKILL after `timeout`."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
