"""Builds evaluation's handlers from its adapters, in one place, for both roles.

ONETHING_BAD_REVIEW_DAYS (default 5): working days a department has to put a 差评 right (set
locally; 5 and 15 are both seen). Read here because services/common/config.py is not this
service's to change; it belongs in Settings and should move there."""
import os

from services.common import mongo
from services.common.audit import MongoAuditLog
from services.common.bus import Bus
from services.evaluation.domain import DEFAULT_BAD_REVIEW_DAYS
from services.evaluation.handlers import Evaluation
from services.evaluation.store import EvaluationStore


def bad_review_days(environ=None):
    raw = (environ if environ is not None else os.environ).get("ONETHING_BAD_REVIEW_DAYS", "")
    if raw.strip() == "":
        return DEFAULT_BAD_REVIEW_DAYS
    try:
        days = int(raw)
    except ValueError:
        raise ValueError(f"ONETHING_BAD_REVIEW_DAYS must be a whole number of working days, not {raw!r}") from None
    if days < 1:
        raise ValueError(f"ONETHING_BAD_REVIEW_DAYS must be at least 1, not {days}")
    return days


def build_evaluation(bus=None):
    mongo.connect("evaluation")
    return Evaluation(EvaluationStore(), bus or Bus("evaluation"), bad_review_days=bad_review_days(),
                      audit=MongoAuditLog("evaluation"))
