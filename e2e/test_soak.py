"""A short soak inside `make test` (the 30-minute run is `make soak`): cases driven for half a
minute with a sample every few seconds; every case concludes and every sample reads the throughput,
each process's memory and the span, log and MongoDB folders."""
import glob
import json
import os

import pytest

from services.common.config import settings
from tools import soak

pytestmark = pytest.mark.e2e


def test_a_short_soak_concludes_every_case_and_samples_what_must_stay_flat(suite_running, capsys):
    before = set(glob.glob(os.path.join(settings().var_dir, "soak", "*.jsonl")))
    code = soak.main(["--minutes", "0.5", "--interval", "6", "--concurrency", "4"])
    out = capsys.readouterr().out
    print(out)
    assert code in (0, 1)  # a verdict on half a minute may go either way; the figures are what counts
    assert "; 0 failed" in out
    [path] = set(glob.glob(os.path.join(settings().var_dir, "soak", "*.jsonl"))) - before
    with open(path, encoding="utf-8") as fh:
        samples = [json.loads(line) for line in fh]
    assert len(samples) >= 4 and sum(r["concluded"] for r in samples) >= 4
    last = samples[-1]
    names = set(last["rss"])
    assert {"intake-api", "intake-worker", "joint_review-worker", "elicense-worker"} <= names
    assert any(n.startswith("desk-") for n in names)
    assert all(v and v > 10 * 1024 * 1024 for v in last["rss"].values())  # a Python process's RSS, read
    assert last["spans_bytes"] > 0 and last["logs_bytes"] > 0 and last["mongo_bytes"] > 0
    assert "throughput flat:" in out and "memory bounded:" in out and "files within rotation:" in out
