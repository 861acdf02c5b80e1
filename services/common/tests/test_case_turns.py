"""The handlers of one process take turns per case (services.common.worker.CaseTurns): two
messages about the same case are never handled side by side, two about different cases are, and a
case's turn is forgotten once nobody holds or waits for it."""
import subprocess
import sys
import threading
import time

from services.common.worker import CASE_TURNS, CaseTurns, _handled


def _overlaps(turns, keys, hold=0.05):
    """Run one thread per key, each holding its turn for `hold` seconds; the largest number of
    threads that were inside at once."""
    inside, most, lock = [0], [0], threading.Lock()

    def work(key):
        with turns.of(key):
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(hold)
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=work, args=(k,)) for k in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return most[0]


def test_the_same_case_takes_turns():
    turns = CaseTurns()
    assert _overlaps(turns, [("intake", "C1")] * 4) == 1
    assert turns.waiting() == 0  # nothing kept once every handler is done


def test_different_cases_go_side_by_side():
    turns = CaseTurns()
    assert _overlaps(turns, [("intake", f"C{i}") for i in range(4)]) == 4
    assert turns.waiting() == 0


def test_the_same_case_in_two_services_goes_side_by_side():
    assert _overlaps(CaseTurns(), [("intake", "C1"), ("joint_review", "C1")]) == 2


def test_no_key_takes_no_turn():
    assert _overlaps(CaseTurns(), [None, None, ""]) == 3


def test_a_turn_is_given_up_when_the_handler_raises():
    turns = CaseTurns()
    try:
        with turns.of(("intake", "C1")):
            raise ValueError("the handler failed")
    except ValueError:
        pass
    assert turns.waiting() == 0
    assert _overlaps(turns, [("intake", "C1")] * 2) == 1  # and the next one gets it


class _Service:
    name = "svc"

    def __init__(self):
        self.inside, self.most, self.lock = 0, 0, threading.Lock()

    def handle(self, payload):
        with self.lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
        time.sleep(0.03)
        with self.lock:
            self.inside -= 1
        return payload.get("case_no")


def _run_handled(payloads):
    service = _Service()
    run = _handled(("source", "thing event"), _Service.handle)
    threads = [threading.Thread(target=run, args=(service, p)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return service.most


def test_handlers_of_one_case_run_one_after_another():
    assert _run_handled([{"case_no": "C1"}] * 3) == 1
    assert CASE_TURNS.waiting() == 0


def test_handlers_of_other_cases_and_of_messages_without_a_case_overlap():
    assert _run_handled([{"case_no": "C1"}, {"case_no": "C2"}, {}, {"case_no": 7}]) == 4


def test_turns_under_eventlet_green_threads():
    """As nameko runs handlers: green threads of one OS thread, with the module imported before
    the patching (a lock made at import would block the whole process)."""
    program = """
import time
from services.common.worker import CaseTurns
turns = CaseTurns()
import eventlet
eventlet.monkey_patch()
inside, most = [0], [0]
def work(key):
    with turns.of(key):
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        eventlet.sleep(0.02)
        inside[0] -= 1
pool = eventlet.GreenPool()
for key in ["A", "A", "A", "B", "C"]:
    pool.spawn(work, key)
pool.waitall()
print(most[0], turns.waiting())
"""
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    # A's three took turns; B and C went alongside one of them
    assert out.stdout.split() == ["3", "0"]
