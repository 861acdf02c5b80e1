"""`python -m infra.suite` names its commands instead of failing with a traceback."""
from infra import suite


def test_help_names_the_commands(capsys):
    assert suite.main(["--help"]) == 0
    assert "up | down | status" in capsys.readouterr().out


def test_an_unknown_command_is_refused_with_the_usage(capsys, monkeypatch):
    monkeypatch.setattr(suite, "up", lambda: (_ for _ in ()).throw(AssertionError("must not start")))
    assert suite.main(["start"]) == 2
    assert suite.main(["up", "now"]) == 2
    assert "usage: python -m infra.suite" in capsys.readouterr().err
