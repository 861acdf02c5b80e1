"""The desk process without a broker: which tasks it takes on, which login it must have, and what
stops it from starting (each with a message that says what to fix)."""
import pytest

from onething.joint_review.v1 import events_pb2
from services.common.events import to_payload
from services.desk import desk, rules

URI = "amqp://desk-gaj-440100:pw@127.0.0.1:5672/onething"


def task(**changes):
    fields = {"case_no": "440100XSECS202403050001", "item_code": "110000000003", "department_code": "gaj",
              "region_code": "440100", "site": "440100", "round": 1, "material_codes": ["M01"]}
    fields.update(changes)
    return to_payload(events_pb2.TaskAssigned(**fields))


@pytest.fixture
def gaj():
    return desk.Desk("gaj", "440100", rules.rule_book(None, rules.MATERIALS_PRESENT), URI)


def test_a_task_is_read_with_every_field_even_those_the_json_left_out(gaj):
    found, why = gaj.task_of(task())
    assert why == "" and found["round"] == 1 and found["site"] == "440100"
    assert found["materials"] == [] and found["licenses"] == [] and found["inspection"] is False


def test_a_field_of_a_newer_platform_is_ignored(gaj):
    found, _ = gaj.task_of(dict(task(), priority="high"))
    assert found is not None and "priority" not in found


@pytest.mark.parametrize("body, words", [
    (["not", "a", "task"], "the body is a list"),
    ({"case_no": 17}, "not a TaskAssigned"),
    (task(case_no=""), "without case_no or item_code"),
    (task(department_code="wsjk"), "is for wsjk in 440100, not this desk"),
    (task(region_code="440300"), "is for gaj in 440300, not this desk"),
    (task(site=""), "names no site to answer to"),
    (task(site="44"), "names no site to answer to"),
])
def test_a_task_the_desk_cannot_answer_is_left_to_officers_saying_why(gaj, body, words):
    found, why = gaj.task_of(body)
    assert found is None and words in why


def test_the_opinion_is_the_desks_own_on_the_tasks_round(gaj):
    found, _ = gaj.task_of(task())
    msg = gaj.opinion_message(found, rules.Opinion(rules.Decision.REJECT, "materials missing: M01"))
    assert to_payload(msg) == {"case_no": "440100XSECS202403050001", "item_code": "110000000003",
                               "department_code": "gaj", "region_code": "440100", "round": 1,
                               "decision": "DECISION_REJECT", "reason": "materials missing: M01"}


def test_the_desk_sends_as_its_login():
    assert desk.broker_login(URI) == "desk-gaj-440100"
    assert desk.broker_login("amqp://desk%2Dgaj%2D440100:pw@h/v") == "desk-gaj-440100"
    assert desk.broker_login("amqp://127.0.0.1/onething") == "guest"
    assert desk.login_problem("gaj", "440100", URI) == ""
    problem = desk.login_problem("gaj", "440100", "amqp://guest:guest@127.0.0.1/onething")
    assert "logs in as 'guest'" in problem and "must log in as 'desk-gaj-440100'" in problem
    assert "must log in as 'desk-gaj-440300'" in desk.login_problem("gaj", "440300", URI)


@pytest.fixture
def env(monkeypatch, tmp_path):
    for name in ("ONETHING_DESK_RULE", "ONETHING_DESK_RULES_FILE", "ONETHING_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ONETHING_DESK_DEPARTMENT", "gaj")
    monkeypatch.setenv("ONETHING_DESK_REGION", "440100")
    monkeypatch.setenv("ONETHING_AMQP_URI", URI)
    return monkeypatch


@pytest.mark.parametrize("change, words", [
    ({"ONETHING_DESK_DEPARTMENT": ""}, "ONETHING_DESK_DEPARTMENT is not set"),
    ({"ONETHING_AMQP_URI": "amqp://guest:guest@127.0.0.1:5672/onething"}, "logs in as 'guest'"),
    ({"ONETHING_DESK_REGION": "440300"}, "must log in as 'desk-gaj-440300'"),
    ({"ONETHING_DESK_REGION": "4403"}, "ONETHING_DESK_REGION: '4403' is not a six-digit"),
    ({"ONETHING_DESK_RULE": "auto"}, "ONETHING_DESK_RULE must be one of"),
    ({"ONETHING_DESK_RULES_FILE": "/nonexistent/rules.yaml"}, "No such file"),
    ({"ONETHING_PROFILE": "production", "ONETHING_AMQP_URI": "amqp://guest:guest@10.0.0.1/onething"},
     "RabbitMQ's default guest user"),
])
def test_a_desk_that_would_not_be_heard_does_not_start(env, change, words):
    for name, value in change.items():
        env.setenv(name, value)
    with pytest.raises(SystemExit) as stopped:
        desk.main()
    assert words in str(stopped.value)


def test_a_rules_file_that_names_no_rule_stops_the_desk_naming_the_place(env, tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("gaj:\n  \"440100\": {\"*\": approve_all}\n", encoding="utf-8")
    env.setenv("ONETHING_DESK_RULES_FILE", str(path))
    with pytest.raises(SystemExit) as stopped:
        desk.main()
    assert f"{path}: gaj.440100.*: 'approve_all' is not one of" in str(stopped.value)


def test_a_production_desk_needs_no_object_store_or_signing_key_settings(env):
    from services.common import config
    env.setenv("ONETHING_PROFILE", "production")
    assert config.production_problems(role="desk") == []  # its own broker user is all it holds
    assert any("S3" in p for p in config.production_problems(role="worker"))
