"""The local servers' launcher refuses a port another process holds (infra/local.py)."""
import pytest

from infra import local, procs


def test_a_server_is_not_started_on_a_port_something_else_holds(monkeypatch):
    monkeypatch.setattr(procs, "read_pid", lambda path: None)       # our PID file names no live process
    monkeypatch.setattr(procs, "port_open", lambda host, port, timeout=0.5: True)  # yet the port answers
    started = []
    monkeypatch.setattr(procs, "start", lambda *a, **k: started.append(a))
    monkeypatch.setattr(local.time, "sleep", lambda s: None)
    clock = iter(range(0, 10_000, 10))
    monkeypatch.setattr(local.time, "time", lambda: next(clock))  # 10 s a look: gives up after 30 s
    with pytest.raises(RuntimeError, match="held by a process this checkout did not start"):
        local.start_mongo()
    assert started == []


def test_a_server_of_ours_or_a_free_port_is_fine(monkeypatch):
    monkeypatch.setattr(procs, "read_pid", lambda path: 4242)
    monkeypatch.setattr(procs, "port_open", lambda host, port, timeout=0.5: True)
    local._ours_or_free("mongo", "127.0.0.1", 27017)
    monkeypatch.setattr(procs, "read_pid", lambda path: None)
    monkeypatch.setattr(procs, "port_open", lambda host, port, timeout=0.5: False)
    local._ours_or_free("mongo", "127.0.0.1", 27017)
