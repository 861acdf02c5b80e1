"""Builds joint_review's handlers from its adapters, in one place, for the api, worker and desks."""
from services.common import mongo
from services.common.audit import MongoAuditLog
from services.common.blobs import Blobs
from services.common.bus import Bus
from services.common.config import settings
from services.joint_review.handlers import JointReview
from services.joint_review.store import ReviewStore


def build_review(bus=None):
    mongo.connect("joint_review")
    blobs = Blobs()
    blobs.ensure_bucket("results")
    review = JointReview(ReviewStore(), bus or Bus("joint_review"), blobs, audit=MongoAuditLog("joint_review"))
    review.serves = settings().serves
    return review
