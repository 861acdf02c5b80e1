"""evaluation use cases: one rating per case and channel, by the case's applicant, after delivery;
a 差评 opens a rectification for the responsible department, due in N working days, which is
closed with a result after a call-back to the applicant; statistics by region, department, package.
At a province, its cities' ratings count in its statistics beside its own: their evaluation events
come up the links and are rolled up here (city_report).

The use cases take and return domain values (grades and states are domain enums, a rating is a
plain dict); the store (the port: store.EvaluationStore, fakes.FakeEvaluationStore) saves a rating
with the events its change causes and publishes them itself."""
import datetime

from onething.evaluation.v1 import evaluation_pb2, events_pb2
from services.common import paging, telemetry
from services.common.audit import MemoryAuditLog, as_actor
from services.common.bus import outbox_entry
from services.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from services.common.privacy import mask_id
from services.evaluation import contracts, domain

OPEN, CLOSED = domain.RectificationStatus.OPEN, domain.RectificationStatus.CLOSED


def _now():
    return datetime.datetime.now(datetime.UTC)


def _proto_grade(grade):
    """A grade as the events carry it (domain.GRADE_PROTO)."""
    return evaluation_pb2.Grade.Name(domain.GRADE_PROTO[grade])


# how often a rolled-up rating is read and merged again when another event of it was saved meanwhile
ROLL_UP_TRIES = 10


class RollUpContention(Exception):
    """A city's rating changed on every try of a merge: not a refusal, the event is tried again."""


class Evaluation:
    def __init__(self, store, bad_review_days=domain.DEFAULT_BAD_REVIEW_DAYS, clock=_now, audit=None, site=""):
        if int(bad_review_days) < 1:
            raise ValueError("ONETHING_BAD_REVIEW_DAYS must be at least 1")
        self.store = store
        # this site's region code: the events of the sites within it are its cities' figures
        self.site = site
        # the audit log (services.common.audit): call-backs, closings and staff reads
        self.audit = audit or MemoryAuditLog("evaluation")
        self.bad_review_days = int(bad_review_days)
        self.clock = clock

    def case_delivered(self, case):
        """A case's results were delivered (a domain.Rateable): its applicant may rate it now."""
        self.store.add_rateable(case)

    def case_withdrawn(self, case_no, after_conclusion):
        """A case withdrawn after its conclusion is not delivered (its licences are revoked), so it is
        not rated either, even if its delivery completed before the withdrawal reached delivery."""
        if not after_conclusion or not case_no:
            return False
        telemetry.mark_case(case_no)
        self.store.mark_withdrawn(case_no)
        return True

    def submit(self, case_no, applicant_id, channel, grade, dimensions, comment, department_code="", allow=None,
               acted_by=""):
        """A rating by the case's applicant. `allow(rateable)`: the api's access rule; a case the caller
        may not rate is answered exactly as a case not yet delivered (existence does not leak)."""
        if not case_no or not applicant_id:
            raise InvalidArgument("a rating names the case (case_no) and the applicant (applicant_id)")
        channel = channel or "online"
        telemetry.mark_case(case_no)
        bad = domain.check(grade, channel, dimensions, comment)
        case = self.store.rateable(case_no)
        if case is None or (allow is not None and not allow(case)):
            # the rating service hears of a delivery on its own queue, a moment after the case shows it
            raise FailedPrecondition(f"case {case_no} can be rated once its results have been delivered; if it "
                                     "shows DELIVERED already, try again in a few seconds")
        if case.withdrawn:
            raise FailedPrecondition(f"case {case_no} was withdrawn after its conclusion: nothing was delivered "
                                     "to rate")
        if case.applicant_id != applicant_id:
            raise PermissionDenied(f"only the applicant of case {case_no} may rate it")
        department = domain.responsible_department(department_code, case.lead_department)
        if bad and not department:
            raise InvalidArgument(f"the department case {case_no} is rated for is not known; "
                                  "name it (department_code) so the 差评 reaches it")
        now = self.clock()
        body = {"case_no": case_no, "applicant_id": applicant_id, "channel": channel, "grade": grade,
                "dimensions": dict(dimensions or {}), "comment": comment or "", "bad_review": bad,
                "satisfied": domain.is_satisfied(grade), "rated_at": now.isoformat(),
                "rated_on": domain.local_date(now).isoformat(), "department_code": department,
                "region_code": case.region_code or "", "package_code": case.package_code or ""}
        received = events_pb2.EvaluationReceived(
            case_no=case_no, grade=_proto_grade(grade), bad_review=bad, acted_by=acted_by or "applicant",
            channel=contracts.channel_to_proto(channel), department_code=department, region_code=body["region_code"],
            package_code=body["package_code"], rated_at=contracts.timestamp_of(now))
        outbox = [outbox_entry("evaluation_received", received, case_no)]
        if bad:
            deadline, known = domain.rectification_deadline(now, self.bad_review_days)
            body["rectification"] = {
                "case_no": case_no, "channel": channel, "department_code": department,
                "region_code": body["region_code"], "package_code": body["package_code"], "grade": grade,
                "comment": body["comment"], "opened_at": now.isoformat(), "deadline": deadline.isoformat(),
                "deadline_provisional": not known, "status": OPEN, "callbacks": []}
            outbox.append(outbox_entry("bad_review_opened", events_pb2.BadReviewOpened(
                case_no=case_no, channel=contracts.channel_to_proto(channel), grade=_proto_grade(grade),
                department_code=department, region_code=body["region_code"], package_code=body["package_code"],
                deadline=contracts.date_of(deadline), opened_at=contracts.timestamp_of(now)), case_no))
        if self.store.add_rating(body, outbox) is None:
            raise AlreadyExists(f"case {case_no} has already been rated on the {channel} channel")
        return body

    def get(self, case_no, actor=None, allow=None):
        """A rating; read by a member of staff (`actor`), the read is audited. `allow(body)`: the api's
        access rule; a rating the caller may not read is answered as one that does not exist."""
        with self.audit.read(actor, "evaluation.read", case_no):
            body = self.store.rating(case_no)
            if body is None or (allow is not None and not allow(body)):
                raise NotFound(f"case {case_no} has not been rated")
        if actor is not None and as_actor(actor).is_staff and body.get("applicant_id"):
            body = dict(body, applicant_id=mask_id(body["applicant_id"]))  # staff do not need it in full
        return body

    # -- rectification -------------------------------------------------------------------------

    def _rectification(self, case_no, channel, allow=None):
        """The case's open or closed 差评 rectification; `allow(rectification)` is the api's access rule
        (raises when the caller's department is not the one concerned)."""
        if not case_no:
            raise InvalidArgument("name the case (case_no)")
        telemetry.mark_case(case_no)
        found = self.store.rectifications(case_no, channel or "")
        if allow is not None:
            for _, body in found:
                allow(body["rectification"])
        if not found:
            raise NotFound(f"case {case_no} has no 差评 to put right"
                           + (f" on the {channel} channel" if channel else ""))
        if len(found) > 1:
            raise InvalidArgument(f"case {case_no} has a 差评 on more than one channel; name the channel "
                                  f"({', '.join(sorted(b['channel'] for _, b in found))})")
        return found[0]

    def _save(self, revision, expected, body, events):
        if not self.store.save_rectification(revision, expected, body, events):
            raise FailedPrecondition(f"the rectification of case {body['case_no']} changed meanwhile; look again")
        return body["rectification"]

    def record_callback(self, case_no, note, by, channel="", actor=None, allow=None):
        """The department called the applicant back (`actor`: who, for the audit log; not the note)."""
        with self.audit.attempt(actor, "bad_review.callback", case_no, channel=channel or ""):
            return self._record_callback(case_no, note, by, channel, allow)

    def _record_callback(self, case_no, note, by, channel="", allow=None):
        note, by = domain.check_text(note, "the call-back note"), domain.check_text(by, "who called back (by)")
        revision, body = self._rectification(case_no, channel, allow)
        rect = body["rectification"]
        if rect["status"] != OPEN:
            raise FailedPrecondition(f"the rectification of case {case_no} is already closed")
        rect["callbacks"] = [*(rect.get("callbacks") or []), {"at": self.clock().isoformat(), "by": by, "note": note}]
        return self._save(revision, OPEN, body, [])

    def close(self, case_no, result, by, channel="", actor=None, allow=None):
        with self.audit.attempt(actor, "bad_review.close", case_no, channel=channel or "") as details:
            rect = self._close(case_no, result, by, channel, allow)
            details["on_time"] = bool(rect.get("on_time"))
        return rect

    def _close(self, case_no, result, by, channel="", allow=None):
        result, by = domain.check_text(result, "the result of the rectification"), domain.check_text(
            by, "who closes it (by)")
        revision, body = self._rectification(case_no, channel, allow)
        rect = body["rectification"]
        if rect["status"] != OPEN:
            raise FailedPrecondition(f"the rectification of case {case_no} is already closed")
        if not rect.get("callbacks"):
            raise FailedPrecondition(f"call the applicant of case {case_no} back (RecordCallback) before closing")
        now = self.clock()
        on_time = domain.closed_on_time(now, rect["deadline"])
        rect.update(status=CLOSED, closed_at=now.isoformat(), closed_by=by, result=result, on_time=on_time)
        event = events_pb2.BadReviewClosed(
            case_no=case_no, channel=contracts.channel_to_proto(rect["channel"]),
            department_code=rect["department_code"], region_code=rect["region_code"],
            package_code=rect["package_code"], deadline=contracts.date_of(rect["deadline"]),
            closed_at=contracts.timestamp_of(rect["closed_at"]), closed_by=by, on_time=on_time, result=result)
        return self._save(revision, OPEN, body, [outbox_entry("bad_review_closed", event, case_no)])

    def bad_reviews(self, department_code="", region_code="", open_only=False, actor=None, allow=None, page_size=0,
                    page_token=""):
        """(rectifications, next_page_token): a page of the 差评 rectifications, by deadline, then
        case number and channel (domain.bad_review_order), at most `page_size` (domain.
        bad_reviews_page_size); the token ("" on the last page) asks for the next. `allow(rectification)`:
        the api's access rule, those the caller may see (a page may hold fewer than it might)."""
        size = domain.bad_reviews_page_size(page_size)
        after = paging.read_after(page_token, 200)
        with self.audit.read(actor, "bad_reviews.list", "", department_code=department_code,
                             region_code=region_code) as details:
            found = self.store.bad_reviews(department_code, region_code, open_only, after=after, limit=size + 1)
            page, more = found[:size], len(found) > size
            shown = [b["rectification"] for b in page if allow is None or allow(b["rectification"])]
            details["case_nos"] = sorted({r["case_no"] for r in shown})
        token = paging.after_token(domain.bad_review_order(page[-1]["rectification"])) if more else ""
        return shown, token

    def statistics(self, group_by, region_code="", department_code="", package_code="", rated_from="",
                   rated_to=""):
        field = domain.group_field(group_by)
        rated_from = domain.check_date(rated_from, "rated_from")
        rated_to = domain.check_date(rated_to, "rated_to")
        if rated_from and rated_to and rated_from > rated_to:
            raise InvalidArgument(f"rated_from {rated_from} is after rated_to {rated_to}")
        filters = {"region_code": region_code, "department_code": department_code, "package_code": package_code,
                   "rated_from": rated_from, "rated_to": rated_to}
        # its own ratings and its cities' (rolled up from their events: a city keeps none)
        rows = domain.add_rows(self.store.statistics(field, **filters), self.store.rolled_up_statistics(field, **filters))
        return [domain.statistics_row(r["key"], r["ratings"], r["satisfied"], r["bad"], r["closed"], r["on_time"],
                                      r["open"]) for r in sorted(rows, key=lambda r: r["key"])]

    # -- figures rolled up from the cities -----------------------------------------------------

    def city_report(self, report):
        """One of a city's evaluation events (a domain.RatingReport) as the province counts it: merged
        into its rolled-up rating, once per event id, whatever order its events come in. An event of
        this site's own, or of a site not within it, is not counted (False); so is one merged before."""
        if not domain.rolls_up(report.origin.site, self.site):
            return False
        domain.check_report(report)
        telemetry.mark_case(report.case_no)
        for _ in range(ROLL_UP_TRIES):
            found = self.store.rolled_up(report.origin.site, report.case_no, report.channel)
            revision, current = found if found is not None else (None, None)
            merged = domain.roll_up(current, report)
            if merged is None:
                return False
            if self.store.save_rolled_up(revision, merged):
                return True
        raise RollUpContention(f"the rolled-up rating of case {report.case_no} ({report.channel}) from site "
                               f"{report.origin.site} changed on each of {ROLL_UP_TRIES} tries")

