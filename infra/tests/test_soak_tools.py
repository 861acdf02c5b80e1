"""tools/soak.py's verdicts and readings, on made-up samples and folders."""
import os

import pytest

from tools import soak

MIB = 1024 * 1024


def test_flatness_leaves_the_warm_up_out_and_compares_the_thirds():
    assert soak.flatness([1.0, 4.0, 4.0, 4.0]) == (4.0, 4.0, 0.0)
    first, last, change = soak.flatness([0.5, 4.0, 4.0, 4.0, 3.0, 3.0, 3.0])
    assert (first, last) == (4.0, 3.0) and change == pytest.approx(-0.25)
    assert soak.flatness([4.0, 4.0, 4.0]) is None  # too short to judge


def test_memory_growth_is_last_minus_first_per_process_and_skips_the_gone():
    samples = [{"rss": {"a": 100 * MIB, "b": None, "c": 50 * MIB}},
               {"rss": {"a": 120 * MIB, "b": 80 * MIB}},
               {"rss": {"a": 110 * MIB, "b": 90 * MIB, "c": None}}]
    assert soak.memory_growth(samples) == {"a": 10 * MIB, "b": 10 * MIB, "c": 0}


def test_the_processes_are_the_supervised_children_and_their_rss_is_read(tmp_path):
    (tmp_path / "intake-api.child.pid").write_text(str(os.getpid()))
    (tmp_path / "intake-api.pid").write_text("1")  # the supervisor's: not counted
    (tmp_path / "broken.child.pid").write_text("x")
    assert soak.processes(str(tmp_path)) == {"intake-api": os.getpid()}
    assert soak.rss_bytes(os.getpid()) > MIB
    assert soak.rss_bytes(2 ** 22 + 12345) is None


def test_the_largest_log_counts_its_rotated_files(tmp_path):
    (tmp_path / "a.log").write_bytes(b"x" * 10)
    (tmp_path / "a.log.1").write_bytes(b"x" * 100)
    (tmp_path / "b.log").write_bytes(b"x" * 50)
    assert soak.largest_log(str(tmp_path)) == ("a", 110)
    assert soak.folder_bytes(str(tmp_path)) == 160
    assert soak.largest_log(str(tmp_path / "none")) == ("-", 0)


def test_bad_options_are_refused(capsys):
    with pytest.raises(SystemExit):
        soak.main(["--minutes", "0"])
    assert "must be positive" in capsys.readouterr().err



def test_the_mongodb_folder_is_read_from_the_servers_command_line():
    assert soak.storage_path(["/v/bin/python3", "/v/bin/secantusd-py", "--port", "1", "--storage-path", "/d/m"]) == "/d/m"
    assert soak.storage_path(["/v/bin/python3", "-c", "x", "--storage-path", "/d/m"]) is None  # not the server
    assert soak.storage_path(["/v/bin/secantusd-py", "--storage-path"]) is None
    assert soak.mongo_data_dir("/nowhere") != ""  # the running server's, or the default
