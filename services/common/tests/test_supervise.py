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
