"""joint_review's MongoDB store (database `<prefix>joint_review`): one document per session, its
tasks inside, saved with a version check so concurrent opinions never overwrite each other."""
import mongoengine as me

from services.common.mongo import plain

ALIAS = "joint_review"


class SessionDoc(me.Document):
    meta = {"db_alias": ALIAS, "collection": "sessions",
            "indexes": ["body.tasks.department_code", "body.status", "outbox.at", "outbox.next_at"]}
    case_no = me.StringField(primary_key=True)
    version = me.IntField(default=0)
    body = me.DictField()          # the session as the domain sees it
    case = me.DictField()          # applicant, materials, delivery: what tasks and results need
    outbox = me.ListField(me.DictField())


class Conflict(Exception):
    """Someone else saved the session first; load it again and retry."""


class ReviewStore:
    def load(self, case_no):
        doc = SessionDoc.objects(case_no=case_no).first()
        return (plain(doc.body), plain(doc.case), doc.version) if doc else (None, None, None)

    def create(self, body, case, outbox):
        try:
            SessionDoc(case_no=body["case_no"], version=0, body=body, case=case, outbox=outbox).save(force_insert=True)
        except me.NotUniqueError:
            return False
        return True

    def save(self, body, version, outbox, case=None):
        changes = {"set__body": body, "set__version": version + 1, "push_all__outbox": outbox}
        if case is not None:
            changes["set__case"] = case
        updated = SessionDoc.objects(case_no=body["case_no"], version=version).update_one(**changes)
        if updated != 1:
            raise Conflict(body["case_no"])

    def open_case_numbers(self):
        return [d.case_no for d in SessionDoc.objects(body__status="SESSION_STATUS_OPEN").only("case_no")]

    def tasks(self, department_code, region_code, state=None):
        found = []
        for doc in SessionDoc.objects(body__tasks__department_code=department_code).only("body"):
            for task in plain(doc.body)["tasks"]:
                if task["department_code"] == department_code and task["region_code"] == region_code and (
                        not state or task["state"] == state):
                    found.append(dict(task, case_no=doc.case_no))
        return found
