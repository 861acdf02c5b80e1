"""Keeps one process of the suite running: starts it, and when it dies for any reason other than
being asked to stop, starts it again after a growing pause (1 s, 2 s, 4 s … 30 s; back to 1 s
once it has run for a minute). Signal the process group to stop both (infra.procs.stop does); the
supervisor then waits for the child and does not start it again.

    python -m infra.supervise <name> <run_dir> [--log <file>] -- <argv…>

The child's PID is kept in <run_dir>/<name>.child.pid, so a test can kill just the child.

With --log, the child's output (stdout and stderr) goes through the supervisor into <file>, which
is rotated: past ONETHING_LOG_FILE_BYTES (64 MiB) it becomes <file>.1 (the older ones .2, .3 …) and
ONETHING_LOG_FILES_KEPT (3) rotated files are kept, so a process's logs never take more than
(kept + 1) × the size, however long it runs."""
import os
import signal
import subprocess
import sys
import threading
import time

MAX_PAUSE = 30.0
STABLE_SECONDS = 60.0


class RotatingLog:
    """An append-only log file that turns into <path>.1 once it passes `max_bytes` (older ones move
    up to .2 … and the one past `kept` is deleted). Thread-safe; writes whole chunks."""

    def __init__(self, path, max_bytes=None, kept=None):
        self.path = path
        from services.common.config import settings
        self.max_bytes = max_bytes if max_bytes is not None else settings().log_file_bytes
        self.kept = kept if kept is not None else settings().log_files_kept
        if self.max_bytes < 1024 or self.kept < 1:
            raise SystemExit("ONETHING_LOG_FILE_BYTES must be at least 1024 and ONETHING_LOG_FILES_KEPT at least 1")
        self._lock = threading.Lock()
        self._fh = open(path, "ab")

    def write(self, data):
        with self._lock:
            self._fh.write(data)
            self._fh.flush()
            if self._fh.tell() >= self.max_bytes:
                self._rotate()

    def _rotate(self):
        self._fh.close()
        oldest = f"{self.path}.{self.kept}"
        if os.path.exists(oldest):
            os.remove(oldest)
        for n in range(self.kept - 1, 0, -1):
            if os.path.exists(f"{self.path}.{n}"):
                os.replace(f"{self.path}.{n}", f"{self.path}.{n + 1}")
        os.replace(self.path, f"{self.path}.1")
        self._fh = open(self.path, "ab")

    def relay(self, stream):
        """Copy `stream` (a child's output pipe) into the log until it ends."""
        while True:
            chunk = os.read(stream.fileno(), 65536)
            if not chunk:
                break
            self.write(chunk)
        stream.close()


_out = None  # the RotatingLog of --log, where the supervisor's own lines go too


def _log(name, text):
    line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} supervisor {name}: {text}"
    if _out is not None:
        _out.write((line + "\n").encode())
    else:
        print(line, flush=True)


def main(argv):
    global _out
    if "--" not in argv or argv.index("--") < 2 or len(argv) < argv.index("--") + 2:
        raise SystemExit("usage: python -m infra.supervise <name> <run_dir> [--log <file>] -- <argv…>")
    name, run_dir = argv[0], argv[1]
    options = argv[2:argv.index("--")]
    command = argv[argv.index("--") + 1:]
    if options:
        if len(options) != 2 or options[0] != "--log":
            raise SystemExit("usage: python -m infra.supervise <name> <run_dir> [--log <file>] -- <argv…>")
        _out = RotatingLog(options[1])
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
        relay = None
        if _out is not None:
            child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            relay = threading.Thread(target=_out.relay, args=(child.stdout,), daemon=True)
            relay.start()
        else:
            child = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        with open(child_pidfile, "w") as fh:
            fh.write(str(child.pid))
        while True:
            try:
                code = child.wait()
                break
            except InterruptedError:  # pragma: no cover - PEP 475 retries for us
                continue
        if relay is not None:
            relay.join(timeout=5)  # what the child wrote last
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
