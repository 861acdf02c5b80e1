"""infra/supervise.py: a process that dies is started again; stopping the group stops both."""
import os
import signal
import subprocess
import sys
import time

from infra import procs
from services.common.config import ROOT

CHILD = """
import os, sys, time
marker = sys.argv[1]
runs = int(open(marker).read()) if os.path.exists(marker) else 0
open(marker, "w").write(str(runs + 1))
if runs == 0:
    sys.exit(3)          # the first run dies at once
time.sleep(60)
"""


def _wait(predicate, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_a_dead_child_is_started_again_and_stopping_the_group_stops_both(tmp_path):
    marker = tmp_path / "runs"
    sup = subprocess.Popen([sys.executable, "-m", "infra.supervise", "probe", str(tmp_path), "--",
                            sys.executable, "-c", CHILD, str(marker)], cwd=ROOT, start_new_session=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pidfile = tmp_path / "probe.child.pid"
    try:
        _wait(lambda: marker.exists() and marker.read_text() == "2")  # died once, started again
        child = int(_wait(lambda: pidfile.exists() and pidfile.read_text().strip()))
        assert procs._alive(child)
        os.kill(child, signal.SIGKILL)                                 # a crash: started a third time
        _wait(lambda: marker.read_text() == "3", timeout=20)
        third = int(_wait(lambda: pidfile.read_text().strip() != str(child) and pidfile.read_text().strip()))
        os.killpg(sup.pid, signal.SIGTERM)                             # stop: both end, none restarted
        sup.wait(20)
        assert _wait(lambda: not procs._alive(third))
        assert marker.read_text() == "3" and not pidfile.exists()
        out = sup.stdout.read()
        assert "exited with code 3; starting it again in 1 s" in out and "exited with code -9" in out
    finally:
        if sup.poll() is None:
            os.killpg(sup.pid, signal.SIGKILL)


LOUD = """
import sys, time
for i in range(400):
    print(f"line {i:04d} " + "x" * 90, flush=True)   # about 100 bytes a line, 40 KB in all
    if i % 80 == 79:
        time.sleep(0.1)  # five bursts of 8 KB: each one a write of its own past the 4 KB size
sys.stderr.write("the last words\\n")
"""


def test_the_childs_output_goes_to_a_log_that_is_rotated_and_bounded(tmp_path):
    log = tmp_path / "loud.log"
    env = dict(os.environ, ONETHING_LOG_FILE_BYTES="4096", ONETHING_LOG_FILES_KEPT="2")
    sup = subprocess.Popen([sys.executable, "-m", "infra.supervise", "loud", str(tmp_path), "--log", str(log), "--",
                            sys.executable, "-c", LOUD], cwd=ROOT, start_new_session=True, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # the child exits 0 and is started again: wait for its second run's last words, then stop
        _wait(lambda: log.exists() and "exited with code 0" in _all(tmp_path), timeout=30)
        os.killpg(sup.pid, signal.SIGTERM)
        sup.wait(20)
    finally:
        if sup.poll() is None:
            os.killpg(sup.pid, signal.SIGKILL)
    files = sorted(p.name for p in tmp_path.glob("loud.log*"))
    assert files == ["loud.log", "loud.log.1", "loud.log.2"]  # two kept, the older ones gone
    for p in tmp_path.glob("loud.log*"):
        assert p.stat().st_size < 4096 + 65536  # rotated once past the size (a write may overshoot by a chunk)
    assert sum(p.stat().st_size for p in tmp_path.glob("loud.log*")) < 3 * (4096 + 65536)
    text = _all(tmp_path)
    assert "the last words" in text  # stderr too
    assert "line 0399" in text and "supervisor loud:" in text  # the supervisor's own lines in the same log


def _all(folder):
    text = []
    for p in sorted(folder.glob("loud.log*")):
        try:
            text.append(p.read_text(errors="replace"))
        except FileNotFoundError:  # rotated on between the listing and the read, while the child runs
            continue
    return "".join(text)


def test_a_wrong_option_is_refused_with_the_usage():
    out = subprocess.run([sys.executable, "-m", "infra.supervise", "x", "/tmp", "--logs", "f", "--", "true"],
                         cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and "usage: python -m infra.supervise" in out.stderr
