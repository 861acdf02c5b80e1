"""joint_review's MongoDB store (database `<prefix>joint_review`), its persistence port: one document
per session, its tasks inside, saved with a version check so concurrent opinions never overwrite each
other, and with the events the change causes in the same atomic write (the outbox). After a committed
write the store publishes those events itself (services.common.mongo.OutboxStore); what a process
that died, or a broker outage, leaves pending is published by the worker's OutboxSweeper.

The session's typed values (domain.TaskState, SessionStatus, Decision) are kept as the strings of
domain.*_STORED: documents written by earlier versions read as they are."""
import mongoengine as me

from services.common.mongo import OutboxStore, fill_missing, find_stored
from services.common.recent import PerStore
from services.joint_review import domain
from services.joint_review.domain import Conflict, StoredSession

ALIAS = "joint_review"


class SessionDoc(me.Document):
    meta = {"db_alias": ALIAS, "collection": "sessions",
            "indexes": [("task_keys", "_id"), "outbox.next_at", ("body.status", "next_clock_check")]}
    # dropped by the worker's first sweep (services.common.mongo.retire_indexes): the compound index
    # above answers a query on the status alone, and each index costs every write of a session;
    # task_keys answers a department's task list, which read every session with one of its tasks
    retired_indexes = ((("body.status", 1),), (("body.tasks.department_code", 1),))
    case_no = me.StringField(primary_key=True)
    version = me.IntField(default=0)
    body = me.DictField()          # the session as the domain sees it, in its stored form
    case = me.DictField()          # applicant, materials, delivery: what tasks and results need
    outbox = me.ListField(me.DictField())
    # the first day a clock of it may be overdue (domain.next_clock_check); "" when none runs
    next_clock_check = me.StringField(default="")
    # "<department>|<region>|<stored task state>" of each of its tasks (domain.task_keys), with the
    # case number the index a department's task list pages through
    task_keys = me.ListField(me.StringField())


class SessionStore(OutboxStore):
    """Sessions by case number. `create` and `save` take the events (outbox entries,
    services.common.bus.outbox_entry) the change causes and publish them once it is committed."""

    document = SessionDoc

    _recent = PerStore(64)  # the sessions this process saved or read last, kept for the next handler of each

    def load(self, case_no):
        """StoredSession(session, case, version); all None when the case has no session."""
        doc = find_stored(SessionDoc, {"_id": case_no})
        if doc is None:
            return domain.NO_SESSION
        self._recent.put(case_no, doc.version or 0, doc.body or {}, doc.case or {})
        return StoredSession(domain.session_from_stored(doc.body or {}), doc.case or {}, doc.version or 0)

    def recent(self, case_no):
        """The session as this process last saved or read it (services/common/recent.py), or None: it
        may be stale, so a save from it may meet a Conflict and a caller must not decide from it
        alone what a fresh read would decide otherwise."""
        found = self._recent.get(case_no)
        return None if found is None else domain.RecentSession(domain.session_from_stored(found[0]), found[1],
                                                                found[2])

    def create(self, session, case, events=()):
        """The session's first version (0) with its events; False when the case has one already
        (nothing is written, nothing published). Written with pymongo alone, as `save`: the fields
        are the domain's plain values already, and mongoengine's validating and converting them
        cost the worker more than the write."""
        from pymongo.errors import DuplicateKeyError
        events = list(events)
        try:
            body = domain.stored_session(session)
            SessionDoc._get_collection().insert_one({
                "_id": session["case_no"], "version": 0, "body": body, "case": dict(case),
                "outbox": events, "next_clock_check": domain.next_clock_check(session),
                "task_keys": domain.task_keys(body["tasks"])})
        except DuplicateKeyError:
            return False
        self._recent.put(session["case_no"], 0, body, case)
        self.publish(session["case_no"], events)
        return True

    def save(self, session, expected_version, events=(), case=None):
        """The session (and the case, when given) as version `expected_version` + 1, with its
        events; Conflict when the stored version is not `expected_version` any more (someone else
        saved first: nothing is written, nothing published)."""
        events = list(events)
        body = domain.stored_session(session)
        changes = {"body": body, "version": expected_version + 1,
                   "next_clock_check": domain.next_clock_check(session), "task_keys": domain.task_keys(body["tasks"])}
        if case is not None:
            changes["case"] = dict(case)
        update: dict = {"$set": changes}
        if events:
            update["$push"] = {"outbox": {"$each": events}}
        written = SessionDoc._get_collection().update_one({"_id": session["case_no"], "version": expected_version},
                                                          update)
        if written.matched_count != 1:
            self._recent.drop(session["case_no"])
            raise Conflict(session["case_no"])
        self._recent.saved(session["case_no"], expected_version + 1, body, case)
        self.publish(session["case_no"], events)
        return expected_version + 1

    def open_case_numbers(self, clocks_due_by=None):
        """The open sessions' case numbers; with `clocks_due_by` (a date), only those where a clock
        may have gone past its limit by then (by the indexed day, not by reading every session)."""
        stored_open = domain.SESSION_STATUS_STORED[domain.SessionStatus.OPEN]
        coll = SessionDoc._get_collection()
        if clocks_due_by is None:
            return [d["_id"] for d in coll.find({"body.status": stored_open}, {"_id": 1})]
        # two queries, not one $or, which the local server answers by reading every session: the
        # indexed day, and a session stored before the day was kept (looked at until it is saved)
        found = [d["_id"] for query in (
            {"body.status": stored_open, "next_clock_check": {"$gt": "", "$lte": clocks_due_by.isoformat()}},
            {"body.status": stored_open, "next_clock_check": {"$exists": False}}) for d in coll.find(query, {"_id": 1})]
        return list(dict.fromkeys(found))

    def tasks(self, department_code, region_code, state=None, after="", sessions=None):
        """A department's tasks in a region (each with its case_no), of one TaskState or all: those
        of the sessions after case number `after`, in case-number order, from at most `sessions`
        sessions (None: all). Found through the task keys' index: what an officer's list costs grows
        with the sessions that hold a task of theirs in that state, not with every session."""
        states = [state] if state else list(domain.TaskState)
        keys = [domain.task_key(department_code, region_code, domain.TASK_STATE_STORED[domain.TaskState(s)])
                for s in states]
        cursor = SessionDoc._get_collection().find({"task_keys": {"$in": keys}, "_id": {"$gt": after or ""}})
        cursor = cursor.sort("_id", 1)
        if sessions is not None:
            cursor = cursor.limit(sessions)
        found: list = []
        for doc in cursor:
            found.extend(dict(task, case_no=doc["_id"]) for task in domain.session_from_stored(doc.get("body") or {})[
                "tasks"] if domain.listed(task, department_code, region_code, state))
        return found

    # the task keys of sessions stored before they were kept ------------------------------------
    backfills = (("give_task_keys", "stored sessions their task keys"),)

    def give_task_keys(self):
        """Sessions stored without task keys (by an earlier version) get them, under the version
        check (a session saved meanwhile has them already); True once none is left (noted in
        `outbox_checks`). Without them a session's tasks are in no department's list."""
        return fill_missing(SessionDoc._get_collection(), "sessions.task_keys", {"task_keys": {"$exists": False}},
                            lambda doc: {"task_keys": domain.task_keys((doc.get("body") or {}).get("tasks") or [])},
                            projection={"version": 1, "body.tasks": 1},
                            guard=lambda doc: {"version": doc.get("version", 0)})
