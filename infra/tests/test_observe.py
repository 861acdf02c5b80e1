"""infra/observe.py without a Prometheus: the targets it writes, the configuration, a held port."""
import json
import os
import socket

import pytest
import yaml

from infra import multisite, observe, sites


def test_a_target_file_is_the_file_sd_shape_and_written_whole(tmp_path):
    path = observe.write_target(str(tmp_path / "targets"), "intake-api", observe.target_entry(
        "127.0.0.1:40001", process="intake-api", service="intake", role="api", site="440100"))
    assert json.loads(open(path).read()) == [{"targets": ["127.0.0.1:40001"], "labels": {
        "process": "intake-api", "service": "intake", "role": "api", "site": "440100"}}]
    assert os.listdir(tmp_path / "targets") == ["intake-api.json"]  # no temporary file left


def test_broker_targets_are_the_machines_node_and_the_running_site_nodes(monkeypatch, tmp_path):
    running = {multisite.node("440300").node}
    monkeypatch.setattr(sites, "node_pid", lambda site: 4242 if site.node in running else None)
    where = observe.Layout(str(tmp_path), 23999, str(tmp_path), str(tmp_path))
    observe.write_target(where.brokers, "rabbitmq-440000", observe.target_entry("127.0.0.1:15711"))  # stopped since
    assert observe.refresh_broker_targets(where) == ["rabbitmq", "rabbitmq-440300"]
    assert sorted(os.listdir(where.brokers)) == ["rabbitmq-440300.json", "rabbitmq.json"]
    [entry] = json.loads(open(os.path.join(where.brokers, "rabbitmq-440300.json")).read())
    assert entry == {"targets": [f"127.0.0.1:{multisite.node('440300').prometheus_port}"],
                     "labels": {"process": "rabbitmq-440300", "role": "broker", "site": "440300"}}
    [default] = json.loads(open(os.path.join(where.brokers, "rabbitmq.json")).read())
    assert default["targets"] == ["127.0.0.1:15692"] and default["labels"]["role"] == "broker"


def test_the_sites_nodes_have_prometheus_ports_of_their_own():
    ports = [multisite.node(region).prometheus_port for region in multisite.REGIONS]
    assert len(set(ports)) == len(ports) and observe.RABBITMQ_PORT not in ports
    assert all("rabbitmq_prometheus" in multisite.node(region).plugins for region in multisite.REGIONS)


def test_the_configuration_scrapes_both_jobs_and_never_times_out_after_its_interval():
    config = yaml.safe_load(observe.config_text(["/p/*.json"], ["/b/*.json"], ["/r.yml"], scrape_interval="1s",
                                                evaluation_interval="1s"))
    assert config["global"] == {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"}
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["onething"]["file_sd_configs"][0]["files"] == ["/p/*.json"]
    assert jobs["rabbitmq"]["file_sd_configs"][0]["files"] == ["/b/*.json"]
    assert yaml.safe_load(observe.config_text([], [], []))["global"]["scrape_timeout"] == "10s"


def test_a_duration_prometheus_would_not_read_is_refused():
    with pytest.raises(ValueError, match="is not a duration"):
        observe.config_text([], [], [], scrape_interval="ten seconds")


def test_a_port_held_by_another_process_is_refused(tmp_path):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        where = observe.Layout(str(tmp_path), held.getsockname()[1], str(tmp_path / "run"), str(tmp_path / "log"))
        with pytest.raises(observe.ObserveError, match="held by a process this checkout did not start"):
            observe.start(where)
    assert observe.pid(where) is None


def test_an_unknown_command_is_refused(capsys):
    assert observe.main(["launch"]) == 2
    assert "usage: python -m infra.observe up | down | status | targets | install" in capsys.readouterr().err
