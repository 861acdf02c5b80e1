"""An event another site produced (it came over a link between sites) reaches only the handlers that
take one (`other_sites=True`); every other handler acknowledges it untouched."""
from unittest import mock

import pytest

from services.common.worker import ReliableEventHandler


def _handler(other_sites, site="440100"):
    handler = ReliableEventHandler("joint_review", "task_assigned.#", other_sites=other_sites)
    handler.site = site
    handler.container = mock.Mock(service_name="intake")
    handler.queue_consumer = mock.Mock()
    return handler


def _message(headers):
    return mock.Mock(headers=headers, properties={}, delivery_info={"routing_key": "task_assigned.ybj.440000"})


def test_an_event_of_another_site_is_acknowledged_untouched():
    handler = _handler(other_sites=False)
    message = _message({"site": "440300", "case_no": "C1", "event_id": "e1"})
    with mock.patch("nameko.events.EventHandler.handle_message") as handled:
        handler.handle_message({"case_no": "C1"}, message)
    handled.assert_not_called()
    handler.queue_consumer.ack_message.assert_called_once_with(message)


@pytest.mark.parametrize("headers", [{"site": "440100"}, {}, {"site": ""}], ids=["own", "none", "empty"])
def test_the_sites_own_events_and_events_without_a_site_are_handled(headers):
    handler = _handler(other_sites=False)
    message = _message(headers)
    with mock.patch("nameko.events.EventHandler.handle_message") as handled:
        handler.handle_message({}, message)
    handled.assert_called_once()
    handler.queue_consumer.ack_message.assert_not_called()


def test_a_handler_that_takes_other_sites_events_gets_them():
    handler = _handler(other_sites=True)
    message = _message({"site": "440300"})
    with mock.patch("nameko.events.EventHandler.handle_message") as handled:
        handler.handle_message({}, message)
    handled.assert_called_once()


def test_the_handlers_that_take_other_sites_events_are_the_site_aware_ones():
    from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR

    from services.common.registry import SERVICES
    taking = set()
    for service in SERVICES:
        module, attr = service.worker.split(":")
        cls = getattr(__import__(module, fromlist=[attr]), attr)
        for name in dir(cls):
            for ext in getattr(getattr(cls, name), ENTRYPOINT_EXTENSIONS_ATTR, ()):
                if isinstance(ext, ReliableEventHandler) and ext.other_sites:
                    taking.add((service.name, ext.event_type))
    assert taking == {("catalog", "package_published"), ("elicense", "signing_key_published.*"),
                      ("evaluation", "evaluation_received"), ("evaluation", "bad_review_opened"),
                      ("evaluation", "bad_review_closed")}
