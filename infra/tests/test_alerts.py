"""The alert rules (infra/prometheus/alerts.yml) pass promtool's checks and their unit tests
(alerts_test.yml), the generated Prometheus configuration passes `promtool check config`, and every
metric and label the rules name is in the catalogue (infra/prometheus/catalogue.yml).

promtool missing is a failure, not a skip: `make test` installs it (`make promtool`)."""
import os
import re
import shutil

import pytest
import yaml

from infra import observe

HERE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "prometheus")
RULES = os.path.join(HERE, "alerts.yml")
RULE_TESTS = os.path.join(HERE, "alerts_test.yml")
CATALOGUE = os.path.join(HERE, "catalogue.yml")

# the alerts operators were promised (README "Runbook" has a subsection for each)
EXPECTED = {"DeskQueueWithoutConsumer", "QueueGrowing", "DeadLettersPresent", "TasksOverdue", "HighErrorRate",
            "SiteLinkDown", "OutboxStuck", "ProcessDown", "DependencyDown"}


def _promtool(*args):
    if shutil.which("promtool") is None:
        pytest.fail(f"promtool is not installed: run `make promtool` (as root: `{observe.APT_INSTALL}`)")
    return observe.promtool(*args)


def _load(path):
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _rules():
    return [rule for group in _load(RULES)["groups"] for rule in group["rules"]]


# promtool ----------------------------------------------------------------------------------------------
def test_promtool_accepts_the_rules():
    done = _promtool("check", "rules", RULES)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in done.stdout


def test_the_rules_pass_their_unit_tests():
    done = _promtool("test", "rules", RULE_TESTS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_catches_a_wrong_expectation(tmp_path):
    """The unit tests can fail: the same tests against a rule whose threshold moved do."""
    text = open(RULES, encoding="utf-8").read().replace("onething_tasks_overdue > 0", "onething_tasks_overdue > 5")
    (tmp_path / "alerts.yml").write_text(text, encoding="utf-8")
    shutil.copy(RULE_TESTS, tmp_path / "alerts_test.yml")
    done = _promtool("test", "rules", str(tmp_path / "alerts_test.yml"))
    assert done.returncode != 0
    assert "alertname: TasksOverdue" in done.stdout + done.stderr


def test_the_generated_configuration_passes_promtool(tmp_path):
    where = observe.Layout(str(tmp_path / "observe"), 23999, str(tmp_path / "run"), str(tmp_path / "log"))
    text = observe.config_text(observe.process_target_files(str(tmp_path)), [os.path.join(where.brokers, "*.json")],
                               [RULES])
    path = observe.write_config(where, text)
    done = _promtool("check", "config", path)
    assert done.returncode == 0, done.stdout + done.stderr
    config = yaml.safe_load(text)
    assert config["rule_files"] == [RULES]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["rabbitmq"]["metrics_path"] == "/metrics/per-object"
    files = jobs["onething"]["file_sd_configs"][0]["files"]
    assert os.path.join(str(tmp_path), "observe", "targets", "*.json") in files
    assert os.path.join(str(tmp_path), "sites", "440300", "observe", "targets", "*.json") in files


def test_a_configuration_promtool_refuses_is_not_written(tmp_path):
    where = observe.Layout(str(tmp_path), 23999, str(tmp_path), str(tmp_path))
    with pytest.raises(observe.ObserveError, match="promtool check config refused"):
        observe.write_config(where, observe.config_text([], [], [str(tmp_path / "no-such-rules.yml")]))
    assert not os.path.exists(where.config)


# the rules' shape --------------------------------------------------------------------------------------
def test_every_promised_alert_is_there_with_for_severity_and_what_to_do():
    rules = _rules()
    assert {rule["alert"] for rule in rules} == EXPECTED
    for rule in rules:
        name = rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "")), f"{name} has no `for`"
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        notes = rule["annotations"]
        assert notes["summary"].strip() and notes["description"].strip(), name
        anchor = f"README.md#{name.lower()}"
        assert notes["runbook_url"] == anchor and anchor in notes["description"], name


def test_every_alert_has_a_unit_test_where_it_fires_and_one_where_it_does_not():
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in _load(RULE_TESTS)["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert fires == EXPECTED
    assert quiet == EXPECTED


# the catalogue -----------------------------------------------------------------------------------------
FUNCTION_OR_KEYWORD = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
                       "bool", "offset", "inf", "nan"}
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
STRINGS = re.compile(r'"(?:\\.|[^"\\])*"|`[^`]*`|\'(?:\\.|[^\'\\])*\'')


def metric_names(expr):
    """The metric names a PromQL expression selects (a name not followed by `(`, outside strings,
    label matchers, ranges and grouping clauses)."""
    text = STRINGS.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = GROUPING.sub(" ", text)
    found = re.findall(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", text)
    return {name for name in found if name.lower() not in FUNCTION_OR_KEYWORD}


def label_names(expr):
    """{metric: label names in its matchers}, and the label names of grouping clauses."""
    text = STRINGS.sub('""', expr)
    matched: dict[str, set] = {}
    for metric, matchers in SELECTOR.findall(text):
        names = re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", matchers)
        matched.setdefault(metric, set()).update(names)
    grouped = {name.strip() for _, names in GROUPING.findall(text) for name in names.split(",") if name.strip()}
    return matched, grouped


def _series_names(catalogue):
    names = set()
    for name, meta in catalogue["metrics"].items():
        names.add(name)
        if meta["type"] == "histogram":
            names.update({f"{name}_bucket", f"{name}_sum", f"{name}_count"})
    return names


def test_the_expression_reader_finds_metrics_and_labels():
    expr = ('sum by (site, grpc_service) (rate(grpc_server_handled_total{grpc_code=~"A|B"}[5m])) '
            '/ on(site) group_left bar_total > 0.05 and deriv(baz{queue!=`x{y}`}[10m]) > 0 or up == 0')
    assert metric_names(expr) == {"grpc_server_handled_total", "bar_total", "baz", "up"}
    matched, grouped = label_names(expr)
    assert matched == {"grpc_server_handled_total": {"grpc_code"}, "baz": {"queue"}}
    assert grouped == {"site", "grpc_service"}


def test_the_rules_name_only_catalogued_metrics_and_labels():
    catalogue = _load(CATALOGUE)
    known = _series_names(catalogue)
    target = set(catalogue["target_labels"])
    for rule in _rules():
        expr = rule["expr"]
        used = metric_names(expr)
        assert used, f"{rule['alert']}: no metric found in {expr!r}"
        assert used <= known, f"{rule['alert']} uses metrics outside the catalogue: {sorted(used - known)}"
        matched, grouped = label_names(expr)
        labels_of_used = set(target)
        for metric in used:
            base = re.sub(r"_(bucket|sum|count)$", "", metric) if metric not in catalogue["metrics"] else metric
            labels_of_used |= set(catalogue["metrics"][base]["labels"])
        for metric, names in matched.items():
            base = metric if metric in catalogue["metrics"] else re.sub(r"_(bucket|sum|count)$", "", metric)
            allowed = set(catalogue["metrics"][base]["labels"]) | target
            assert names <= allowed, f"{rule['alert']}: {metric} has no label(s) {sorted(names - allowed)}"
        assert grouped <= labels_of_used, f"{rule['alert']} groups by unknown label(s) {sorted(grouped - labels_of_used)}"


def test_the_catalogue_holds_the_metrics_every_process_shares():
    metrics = _load(CATALOGUE)["metrics"]
    assert metrics["onething_handler_messages_total"]["labels"] == ["service", "handler", "outcome"]
    assert metrics["grpc_server_handled_total"]["labels"] == ["grpc_service", "grpc_method", "grpc_code"]
    assert metrics["onething_dependency_up"]["labels"] == ["dependency"]
    assert {"rabbitmq_queue_messages_ready", "rabbitmq_queue_messages", "rabbitmq_queue_consumers"} <= set(metrics)


# installing ------------------------------------------------------------------------------------------
def test_install_without_root_says_how(monkeypatch):
    monkeypatch.setattr(observe.shutil, "which", lambda tool: "/usr/bin/apt-get" if tool == "apt-get" else None)
    monkeypatch.setattr(observe.os, "geteuid", lambda: 1000)
    with pytest.raises(observe.ObserveError, match=re.escape(observe.APT_INSTALL)):
        observe.install()


def test_install_keeps_the_package_service_from_starting_and_cleans_up(monkeypatch, tmp_path):
    installed = []
    policy = tmp_path / "policy-rc.d"

    def run(argv, **kwargs):
        installed.append((argv, policy.read_text(), kwargs["env"]["DEBIAN_FRONTEND"]))
        return observe.subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(observe.shutil, "which",
                        lambda tool: f"/usr/bin/{tool}" if tool == "apt-get" or installed else None)
    monkeypatch.setattr(observe.os, "geteuid", lambda: 0)
    monkeypatch.setattr(observe.subprocess, "run", run)
    assert observe.install(policy_file=str(policy)) is True
    (argv, guard, frontend), = installed
    assert argv[:2] == ["apt-get", "install"] and "prometheus" in argv and "--no-install-recommends" in argv
    assert "exit 101" in guard and frontend == "noninteractive"
    assert not policy.exists()  # the machine had none: none is left


def test_install_does_nothing_when_both_tools_are_there(monkeypatch):
    monkeypatch.setattr(observe.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    monkeypatch.setattr(observe.subprocess, "run", lambda *a, **k: pytest.fail("apt-get ran"))
    assert observe.install() is False
