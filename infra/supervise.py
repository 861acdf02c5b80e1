"""Keeps one process of the suite running: starts it, and when it dies for any reason other than
being asked to stop, starts it again after a growing pause (1 s, 2 s, 4 s … 30 s; back to 1 s
once it has run for a minute). Signal the process group to stop both (infra.procs.stop does); the
supervisor then waits for the child and does not start it again.

    python -m infra.supervise <name> <run_dir> -- <argv…>

The child's PID is kept in <run_dir>/<name>.child.pid, so a test can kill just the child."""
import os
import signal
import subprocess
import sys
import time

MAX_PAUSE = 30.0
STABLE_SECONDS = 60.0


def _log(name, text):
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} supervisor {name}: {text}", flush=True)


def main(argv):
    if "--" not in argv or len(argv) < 4:
        raise SystemExit("usage: python -m infra.supervise <name> <run_dir> -- <argv…>")
    name, run_dir = argv[0], argv[1]
    command = argv[argv.index("--") + 1:]
    child_pidfile = os.path.join(run_dir, f"{name}.child.pid")
    stopping = []
    child = None

    def stop(signum, frame):
        # the child shares this process group: whoever stops the group (infra.procs.stop) signals
        # both, so the signal is not forwarded (nameko fails on a second SIGTERM)
        stopping.append(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    pause = 1.0
    while not stopping:
        started = time.time()
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        with open(child_pidfile, "w") as fh:
            fh.write(str(child.pid))
        while True:
            try:
                code = child.wait()
                break
            except InterruptedError:  # pragma: no cover - PEP 475 retries for us
                continue
        if stopping:
            break
        if time.time() - started > STABLE_SECONDS:
            pause = 1.0
        _log(name, f"pid {child.pid} exited with code {code}; starting it again in {pause:.0f} s")
        deadline = time.time() + pause
        while not stopping and time.time() < deadline:
            time.sleep(0.1)
        pause = min(pause * 2, MAX_PAUSE)
    try:
        os.remove(child_pidfile)
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
