"""A small chaos run inside `make test` (the full run is `make chaos`): cases driven through the
suite while random processes are killed with SIGKILL and the broker, MongoDB and S3 servers are
restarted; afterwards nothing is lost, doubled or left behind."""

import pytest

from services.common.config import settings
from tools.chaos import Chaos

pytestmark = pytest.mark.e2e


def test_nothing_lost_doubled_or_stuck_while_processes_die_and_servers_restart(suite_running):
    restarts = settings().chaos_restarts
    report = Chaos(cases=24, in_flight=4, kill_every=2.5, restarts=restarts, seed=7, settle=240, log=print).run()
    print(report)
    assert report["kills"] >= 5 and len(report["server_restarts"]) == len(restarts)
    assert report["cases_accepted"] == 24, report
    assert report["lost_or_stuck"] == 0, report
    assert report["duplicated_cases"] == 0 and report["items_with_two_licences"] == 0, report
    assert report["outbox_left"] == {} and report["dead_letters"] == 0, report
    assert report["ok"], report
