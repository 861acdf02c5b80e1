"""Builds joint_review's handlers from its adapters, in one place, for the api, worker and desks."""
from services.common import mongo
from services.common.bus import Bus
from services.joint_review.handlers import JointReview
from services.joint_review.store import ReviewStore


def build_review(bus=None):
    mongo.connect("joint_review")
    return JointReview(ReviewStore(), bus or Bus("joint_review"))
