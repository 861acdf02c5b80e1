"""Fault injection for the tests that prove the guarantees: ONETHING_FAULT names points where the
process exits at once, as a SIGKILL would leave it (no clean-up, nothing flushed). Empty in
production; a point costs one set look-up."""
import logging
import os

from services.common.config import settings

POINTS = frozenset(p.strip() for p in settings().fault.split(",") if p.strip())


def point(name):
    """Exit here if ONETHING_FAULT names this point (e.g. `before_publish:case_submitted`)."""
    if name in POINTS:
        logging.getLogger(__name__).error("fault injected at %s: exiting now", name)
        os._exit(86)
