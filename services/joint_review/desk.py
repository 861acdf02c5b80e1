"""A department's desk (worker role, `nameko run`): one process per department and region, bound to
its own queue `task_assigned.<department>.<region>`, so it receives only its own tasks.

    ONETHING_DESK_DEPARTMENT=gaj ONETHING_DESK_REGION=440100 nameko run services.joint_review.desk:Desk
"""
import logging
import time

from nameko.rpc import RpcProxy

from services.common.audit import SERVICE, AuditActor
from services.common.config import refuse_defaults_in_production, settings
from services.common.errors import FailedPrecondition
from services.common.worker import Component, Inbox, Tracing, event_handler, with_timeout
from services.joint_review import desk_rules
from services.joint_review.handlers import task_routing_key

refuse_defaults_in_production("worker")  # ONETHING_PROFILE=production: no default credentials or keys

log = logging.getLogger(__name__)
_desk = settings()
DEPARTMENT, REGION, RULE = _desk.desk_department, _desk.desk_region, _desk.desk_rule
# how long the rule takes over one task; 0 in production, set by tests that kill a desk mid-task
DELAY = _desk.desk_delay_seconds


def _build():
    from services.joint_review.wiring import build_review
    return build_review()


def make_desk(department, region, rule):
    if rule not in desk_rules.RULES:
        raise SystemExit(f"ONETHING_DESK_RULE must be one of {', '.join(desk_rules.RULES)}, not {rule!r}")

    # who decides by the rule, for the audit log: the department's own desk process
    actor = AuditActor(f"desk:{department}:{region}", "service", department, region, auth=SERVICE)

    class Desk:
        name = f"desk_{department}_{region}"
        tracing = Tracing()
        inbox = Inbox("joint_review")
        review = Component(_build)
        elicense = RpcProxy("elicense")

        @event_handler("joint_review", task_routing_key(department, region))
        def on_task_assigned(self, payload):
            decision = desk_rules.decide(rule, payload, with_timeout(self.elicense.get_license))
            if decision is None:
                return
            if DELAY:
                time.sleep(DELAY)  # green under nameko's eventlet
            try:
                self.review.record_opinion(payload["case_no"], payload["item_code"], department,
                                           decision[0], decision[1], f"desk:{department}:{region}", actor=actor)
            except FailedPrecondition as exc:  # withdrawn, concluded or decided by a person meanwhile
                log.info("task %s/%s not decided by the rule: %s", payload["case_no"], payload["item_code"], exc)

    Desk.__name__ = f"Desk_{department}_{region}"
    return Desk


if DEPARTMENT:
    Desk = make_desk(DEPARTMENT, REGION, RULE)
