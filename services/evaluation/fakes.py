"""The in-memory evaluation store: the same port as store.EvaluationStore (and the same contract
tests, tests/test_evaluation_store_contract.py), for unit tests and tools without MongoDB.

Like the real store it keeps each rating's events in the rating's outbox, publishes them on its
bus right after the save, leaves them pending when the bus fails (their next try pushed back), and
`sweep()` publishes what is due (services.common.memory.MemoryOutbox, the real store's rules)."""
import copy

from services.common.memory import MemoryOutbox
from services.evaluation import domain


class FakeEvaluationStore(MemoryOutbox):
    def __init__(self, bus=None):
        super().__init__(bus)
        self.cases = {}      # case_no -> domain.Rateable
        self.ratings = {}    # key -> {"body", "version", "outbox"}
        self.rolled = {}     # (site, case_no, channel) -> (version, domain.RolledUpRating)
        self._next = 0

    # -- the cases that may be rated ----------------------------------------------------------

    def add_rateable(self, case):
        with self._lock:
            known = self.cases.get(case.case_no)
            self.cases[case.case_no] = domain.Rateable(
                case.case_no, case.applicant_id, case.region_code, case.package_code, case.lead_department,
                withdrawn=bool(known and known.withdrawn))

    def mark_withdrawn(self, case_no):
        with self._lock:
            known = self.cases.get(case_no) or domain.Rateable(case_no)
            self.cases[case_no] = domain.Rateable(
                case_no, known.applicant_id, known.region_code, known.package_code, known.lead_department,
                withdrawn=True)

    def rateable(self, case_no):
        return self.cases.get(case_no)

    # -- ratings ------------------------------------------------------------------------------

    def add_rating(self, body, events):
        with self._lock:
            if any((r["body"]["case_no"], r["body"]["channel"]) == (body["case_no"], body["channel"])
                   for r in self.ratings.values()):
                return None
            self._next += 1
            key = self._next
            self.ratings[key] = {"body": copy.deepcopy(body), "version": 1, "outbox": copy.deepcopy(list(events))}
        self.publish(key, events)
        return key

    def rating(self, case_no):
        return next((copy.deepcopy(r["body"]) for r in self.ratings.values() if r["body"]["case_no"] == case_no),
                    None)

    def rectifications(self, case_no, channel=""):
        return [(domain.Revision(key, r["version"]), copy.deepcopy(r["body"])) for key, r in self.ratings.items()
                if r["body"]["case_no"] == case_no and r["body"].get("bad_review")
                and (not channel or r["body"]["channel"] == channel)]

    def save_rectification(self, revision, expected_status, body, events):
        with self._lock:
            found = self.ratings.get(revision.key)
            if (found is None or found["version"] != revision.version
                    or (found["body"].get("rectification") or {}).get("status") != expected_status):
                return False
            found.update(body=copy.deepcopy(body), version=found["version"] + 1)
            found["outbox"].extend(copy.deepcopy(list(events)))
        self.publish(revision.key, events)
        return True

    def bad_reviews(self, department_code="", region_code="", open_only=False, after="", limit=None):
        found = sorted((b for b in self._bodies()
                        if b.get("bad_review") and (not department_code or b.get("department_code") == department_code)
                        and (not region_code or b.get("region_code") == region_code)
                        and (not open_only or b["rectification"]["status"] == domain.RectificationStatus.OPEN)
                        and domain.bad_review_order(b["rectification"]) > (after or "")),
                       key=lambda b: domain.bad_review_order(b["rectification"]))
        return [copy.deepcopy(b) for b in found[:limit]]

    def statistics(self, field, region_code="", department_code="", package_code="", rated_from="", rated_to=""):
        counted = []
        for b in self._bodies():
            status = (b.get("rectification") or {}).get("status")
            counted.append((b, {"ratings": 1, "satisfied": int(bool(b.get("satisfied"))),
                                "bad": int(bool(b.get("bad_review"))),
                                "closed": int(status == domain.RectificationStatus.CLOSED),
                                "open": int(status == domain.RectificationStatus.OPEN),
                                "on_time": int(bool((b.get("rectification") or {}).get("on_time")))}))
        return _grouped(counted, field, region_code, department_code, package_code, rated_from, rated_to)

    def count_figures(self, limit=1000):
        """The fake's statistics read its ratings themselves: no daily figures to keep."""
        return 0

    # -- the cities' ratings, rolled up -------------------------------------------------------

    def rolled_up(self, site, case_no, channel):
        found = self.rolled.get((site, case_no, channel))
        return None if found is None else (domain.Revision((site, case_no, channel), found[0]), found[1])

    def save_rolled_up(self, revision, rating):
        key = (rating.site, rating.case_no, rating.channel)
        with self._lock:
            found = self.rolled.get(key)
            if (revision is None and found is not None) or (revision is not None and (
                    found is None or revision.key != key or found[0] != revision.version)):
                return False
            self.rolled[key] = (1 if found is None else found[0] + 1, rating)
        return True

    def rolled_up_statistics(self, field, region_code="", department_code="", package_code="", rated_from="",
                             rated_to=""):
        counted = [(vars(r), r.figures()) for _, r in list(self.rolled.values()) if r.rated]
        return _grouped(counted, field, region_code, department_code, package_code, rated_from, rated_to)

    def _bodies(self):
        return [r["body"] for r in list(self.ratings.values())]

    # -- the outbox (services.common.memory.MemoryOutbox) ---------------------------------------

    def _aggregates(self):
        return self.ratings


def _grouped(counted, field, region_code, department_code, package_code, rated_from, rated_to):
    """[(fields, figures)] filtered and summed by `field`, as the store's $match and $group do."""
    rows: dict[str, dict] = {}
    for fields, figures in counted:
        if (region_code and fields.get("region_code") != region_code) or (
                department_code and fields.get("department_code") != department_code) or (
                package_code and fields.get("package_code") != package_code) or (
                rated_from and fields.get("rated_on", "") < rated_from) or (
                rated_to and fields.get("rated_on", "") > rated_to):
            continue
        key = fields.get(field) or ""
        row = rows.setdefault(key, {"key": key, "ratings": 0, "satisfied": 0, "bad": 0, "closed": 0,
                                    "on_time": 0, "open": 0})
        for name, value in figures.items():
            row[name] += value
    return list(rows.values())
