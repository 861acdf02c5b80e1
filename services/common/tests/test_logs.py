"""Log lines: a warning about an outage the process rides out names its error in one line; errors,
and warnings about anything else, keep their traceback."""
import json
import logging
import sys

from services.common.logs import JsonFormatter


def line(level, exc):
    try:
        raise exc
    except Exception:
        record = logging.LogRecord("kombu.mixins", level, __file__, 1, "Connection to broker lost, trying to "
                                   "re-establish connection...", None, sys.exc_info())
    return json.loads(JsonFormatter().format(record))


def test_a_warning_about_a_lost_connection_names_the_error_in_one_line():
    out = line(logging.WARNING, ConnectionResetError(104, "Connection reset by peer"))
    assert out["exception"] == "ConnectionResetError: [Errno 104] Connection reset by peer"
    assert "Traceback" not in out["exception"]


def test_an_error_keeps_its_traceback_even_for_an_outage():
    out = line(logging.ERROR, ConnectionResetError(104, "Connection reset by peer"))
    assert out["exception"].startswith("Traceback") and "ConnectionResetError" in out["exception"]


def test_a_warning_about_anything_but_an_outage_keeps_its_traceback():
    out = line(logging.WARNING, ValueError("bad value"))
    assert out["exception"].startswith("Traceback") and "ValueError: bad value" in out["exception"]
