"""Builds evaluation's handlers from its adapters, in one place, for both roles."""
from services.common import mongo
from services.common.bus import Bus
from services.evaluation.handlers import Evaluation
from services.evaluation.store import EvaluationStore


def build_evaluation(bus=None):
    mongo.connect("evaluation")
    return Evaluation(EvaluationStore(), bus or Bus("evaluation"))
