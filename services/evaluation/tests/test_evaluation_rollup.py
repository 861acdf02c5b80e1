"""好差评 statistics roll up (issue 11): a province counts its cities' ratings beside its own, from the
evaluation events that come up the links. Pure rules (which site's events a site counts, the merge of
a rating's events in any order and any number of times, what a report needs) and the use cases over
the in-memory store: the events a city's own use cases publish, decoded as the province's worker
decodes them, give the province the same figures the city shows for itself."""
import datetime as dt
import itertools

import pytest

from services.common.audit import MemoryAuditLog
from services.common.bus import RecordingBus
from services.common.errors import DomainError, InvalidArgument
from services.evaluation import contracts, domain, handlers
from services.evaluation.domain import Grade, Origin, Rateable, RatingReport, ReportKind, StatisticsGroup
from services.evaluation.fakes import FakeEvaluationStore
from services.evaluation.wiring import build_evaluation

APPLICANT = "11010519491231002X"
PROVINCE, GUANGZHOU, SHENZHEN = "440000", "440100", "440300"
REGION, DEPARTMENT, PACKAGE = StatisticsGroup.REGION, StatisticsGroup.DEPARTMENT, StatisticsGroup.PACKAGE
ZERO = {"ratings": 0, "satisfied": 0, "bad": 0, "closed": 0, "on_time": 0, "open": 0}


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


def site(region, clock=None):
    """A site's evaluation: its handlers over the in-memory store, publishing on a RecordingBus."""
    return build_evaluation(store=FakeEvaluationStore(RecordingBus("evaluation")), audit=MemoryAuditLog("evaluation"),
                            bad_review_days=5, site=region,
                            clock=clock or Clock(dt.datetime(2024, 3, 4, 2, 0, tzinfo=dt.UTC)))


def report(kind=ReportKind.RATED, event_id="e1", origin_site=SHENZHEN, case_no="C1", channel="online",
           grade=Grade.VERY_DISSATISFIED, department="gaj", region=SHENZHEN, package="KBQY", rated_on="2024-03-04",
           on_time=False):
    closed = kind is ReportKind.BAD_REVIEW_CLOSED
    return RatingReport(kind=kind, origin=Origin(origin_site, event_id), case_no=case_no, channel=channel,
                        grade=None if closed else grade, department_code=department, region_code=region,
                        package_code=package, rated_on="" if closed else rated_on, on_time=on_time)


def published(evaluation, origin_site):
    """What a site's use cases published, as its province's worker takes each event: the kind, its
    decoded report (the payload through contracts, the `site` and `event_id` headers as the origin)."""
    return [contracts.rating_report(ReportKind(kind), payload, Origin(origin_site, headers["event_id"]))
            for kind, payload, headers in evaluation.store.bus.published]


def rate(evaluation, case_no, grade, channel="online", region=SHENZHEN, package="KBQY", lead="wsjk", department=""):
    evaluation.case_delivered(Rateable(case_no, APPLICANT, region, package, lead))
    return evaluation.submit(case_no, APPLICANT, channel, grade, {}, "等了三次" if grade.bad else "", department)


def row(key, **figures):
    return domain.statistics_row(key, *(dict(ZERO, **figures)[k] for k in ("ratings", "satisfied", "bad", "closed",
                                                                             "on_time", "open")))


# -- whose events a site counts -------------------------------------------------------------------


@pytest.mark.parametrize("event_site, own, counted", [
    (SHENZHEN, PROVINCE, True),     # a city's event at its province
    (GUANGZHOU, PROVINCE, True),
    (PROVINCE, PROVINCE, False),    # the province's own: counted once, as its own rating
    (GUANGZHOU, GUANGZHOU, False),  # a city's own, also when the province sends it back down
    (SHENZHEN, GUANGZHOU, False),   # a sibling city's: not Guangzhou's figures
    (PROVINCE, GUANGZHOU, False),   # the province's: not a city's figures
    ("450100", PROVINCE, False),    # a city of another province
    ("", PROVINCE, False),          # an event without its site
    ("44", PROVINCE, False),
    (None, PROVINCE, False),
])
def test_a_site_counts_the_events_of_the_sites_within_it_only(event_site, own, counted):
    assert domain.rolls_up(event_site, own) is counted


# -- the merge ------------------------------------------------------------------------------------


def _bad_review_events():
    return [report(ReportKind.RATED, "r"), report(ReportKind.BAD_REVIEW_OPENED, "o"),
            report(ReportKind.BAD_REVIEW_CLOSED, "c", on_time=True)]


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_a_ratings_events_merge_to_the_same_figures_in_any_order(order):
    events = _bad_review_events()
    merged = None
    for i in order:
        merged = domain.roll_up(merged, events[i])
    assert merged == domain.RolledUpRating(
        site=SHENZHEN, case_no="C1", channel="online", grade=Grade.VERY_DISSATISFIED, department_code="gaj",
        region_code=SHENZHEN, package_code="KBQY", rated_on="2024-03-04", rated=True, bad_review=True, closed=True,
        on_time=True, events=("c", "o", "r"))
    assert merged.figures() == dict(ZERO, ratings=1, bad=1, closed=1, on_time=1)


def test_an_event_merged_before_changes_nothing():
    first = domain.roll_up(None, report(event_id="e1"))
    assert domain.roll_up(first, report(event_id="e1")) is None
    assert domain.roll_up(first, report(ReportKind.BAD_REVIEW_CLOSED, event_id="e1")) is None  # the id decides


def test_a_rating_counts_for_nothing_until_it_is_known():
    closing = domain.roll_up(None, report(ReportKind.BAD_REVIEW_CLOSED, "c", on_time=True))
    assert closing.closed and not closing.rated and closing.figures() == ZERO
    opened = domain.roll_up(closing, report(ReportKind.BAD_REVIEW_OPENED, "o"))
    assert opened.figures() == dict(ZERO, ratings=1, bad=1, closed=1, on_time=1)


@pytest.mark.parametrize("grade, figures", [
    (Grade.VERY_SATISFIED, dict(ratings=1, satisfied=1)),
    (Grade.BASICALLY_SATISFIED, dict(ratings=1, satisfied=1)),
    (Grade.DISSATISFIED, dict(ratings=1, bad=1, open=1)),
])
def test_a_rating_adds_what_a_rating_of_ones_own_adds(grade, figures):
    assert domain.roll_up(None, report(grade=grade)).figures() == dict(ZERO, **figures)


def test_a_late_closing_is_closed_but_not_on_time():
    merged = domain.roll_up(domain.roll_up(None, report()), report(ReportKind.BAD_REVIEW_CLOSED, "c", on_time=False))
    assert merged.figures() == dict(ZERO, ratings=1, bad=1, closed=1)


def test_the_ratings_own_facts_win_over_what_its_closing_repeats():
    closing = report(ReportKind.BAD_REVIEW_CLOSED, "c", department="wsjk", region="440305", package="OTHER")
    merged = domain.roll_up(domain.roll_up(None, report()), closing)
    assert (merged.department_code, merged.region_code, merged.package_code) == ("gaj", SHENZHEN, "KBQY")
    merged = domain.roll_up(domain.roll_up(None, closing), report())
    assert (merged.department_code, merged.region_code, merged.package_code) == ("gaj", SHENZHEN, "KBQY")


@pytest.mark.parametrize("change, says", [
    (dict(case_no=""), "names no case"),
    (dict(channel=""), "names no rating channel"),
    (dict(channel="phone"), "names no rating channel"),
    (dict(event_id=""), "no event id"),
    (dict(grade=None), "no grade"),
    (dict(region=""), "no region"),
    (dict(rated_on=""), "no moment of rating"),
    (dict(rated_on="2024-02-30"), "not a real date"),
    (dict(rated_on="4 March"), "must be a date"),
])
def test_a_report_that_cannot_be_rolled_up_is_refused(change, says):
    with pytest.raises(InvalidArgument, match=says):
        domain.check_report(report(**change))


@pytest.mark.parametrize("kind", [ReportKind.RATED, ReportKind.BAD_REVIEW_OPENED])
def test_a_rating_or_its_opening_is_rolled_up_with_its_facts(kind):
    assert domain.check_report(report(kind)) == report(kind)


def test_a_closing_needs_no_grade_region_or_day():
    assert domain.check_report(report(ReportKind.BAD_REVIEW_CLOSED, region=""))


def test_rows_are_summed_by_key():
    own = [{"key": PROVINCE, **dict(ZERO, ratings=2, satisfied=1)}, {"key": "gaj", **dict(ZERO, ratings=1, bad=1)}]
    cities = [{"key": "gaj", **dict(ZERO, ratings=3, bad=2, closed=1, on_time=1, open=1)}]
    assert sorted(domain.add_rows(own, cities), key=lambda r: r["key"]) == [
        {"key": PROVINCE, **dict(ZERO, ratings=2, satisfied=1)},
        {"key": "gaj", **dict(ZERO, ratings=4, bad=3, closed=1, on_time=1, open=1)}]
    assert domain.add_rows([], []) == []


# -- the use cases ----------------------------------------------------------------------------------


def shenzhen_ratings():
    """Shenzhen's evaluation with a good rating, a 差评 put right on time and one still open."""
    clock = Clock(dt.datetime(2024, 3, 4, 2, 0, tzinfo=dt.UTC))
    city = site(SHENZHEN, clock)
    rate(city, "S1", Grade.SATISFIED, package="XSECS")
    rate(city, "S2", Grade.VERY_DISSATISFIED, lead="gaj")
    rate(city, "S3", Grade.DISSATISFIED, channel="window", department="wsjk")
    clock.now = dt.datetime(2024, 3, 5, 2, 0, tzinfo=dt.UTC)
    city.record_callback("S2", "已回访", "staff-1")
    city.close("S2", "已改进", "chief-1")
    return city


def test_the_province_counts_a_citys_ratings_as_the_city_counts_them():
    city = shenzhen_ratings()
    province = site(PROVINCE)
    for each in published(city, SHENZHEN):
        assert province.city_report(each) is True
    for group in (REGION, DEPARTMENT, PACKAGE):
        assert province.statistics(group) == city.statistics(group), group
    assert province.statistics(REGION) == [row(SHENZHEN, ratings=3, satisfied=1, bad=2, closed=1, on_time=1, open=1)]
    assert province.statistics(DEPARTMENT, rated_from="2024-03-05") == []  # the day is the rating's


def test_the_province_shows_its_cities_beside_its_own_and_a_city_only_its_own():
    city = shenzhen_ratings()
    guangzhou, province = site(GUANGZHOU), site(PROVINCE)
    rate(guangzhou, "G1", Grade.VERY_SATISFIED, region=GUANGZHOU)
    rate(province, "P1", Grade.BASICALLY_SATISFIED, region=PROVINCE, lead="sjyj")
    for each in [*published(city, SHENZHEN), *published(guangzhou, GUANGZHOU)]:
        assert province.city_report(each) is True
    assert province.statistics(REGION) == [
        row(PROVINCE, ratings=1, satisfied=1), row(GUANGZHOU, ratings=1, satisfied=1),
        row(SHENZHEN, ratings=3, satisfied=1, bad=2, closed=1, on_time=1, open=1)]
    assert province.statistics(REGION, region_code=SHENZHEN) == city.statistics(REGION)
    assert province.statistics(DEPARTMENT, region_code=SHENZHEN, package_code="KBQY") == [
        row("gaj", ratings=1, bad=1, closed=1, on_time=1), row("wsjk", ratings=1, bad=1, open=1)]
    assert province.statistics(REGION, region_code=PROVINCE) == [row(PROVINCE, ratings=1, satisfied=1)]
    # Guangzhou counts none of what it is sent: its own (back down from the province), a sibling's, the province's
    before = guangzhou.statistics(REGION)
    for each in [*published(guangzhou, GUANGZHOU), *published(city, SHENZHEN), *published(province, PROVINCE)]:
        assert guangzhou.city_report(each) is False
    assert guangzhou.statistics(REGION) == before == [row(GUANGZHOU, ratings=1, satisfied=1)]
    assert guangzhou.store.rolled == {}


def test_the_provinces_own_events_are_not_counted_twice():
    province = site(PROVINCE)
    rate(province, "P1", Grade.VERY_DISSATISFIED, region=PROVINCE)
    for each in published(province, PROVINCE):
        assert province.city_report(each) is False
    assert province.statistics(REGION) == [row(PROVINCE, ratings=1, bad=1, open=1)]
    assert province.store.rolled == {}


def test_duplicates_are_absorbed():
    city, province = shenzhen_ratings(), site(PROVINCE)
    events = published(city, SHENZHEN)
    assert [province.city_report(e) for e in events] == [True] * len(events)
    assert [province.city_report(e) for e in reversed(events)] == [False] * len(events)  # redelivered
    assert province.statistics(REGION) == city.statistics(REGION)


def test_a_report_that_cannot_be_rolled_up_changes_nothing():
    province = site(PROVINCE)
    with pytest.raises(InvalidArgument, match="rating channel"):
        province.city_report(report(channel=""))
    assert province.store.rolled == {} and province.statistics(REGION) == []


class EverChanging(FakeEvaluationStore):
    """A store whose rolled-up rating another save always changed first."""

    def save_rolled_up(self, revision, rating):
        return False


def test_a_rating_that_changes_on_every_try_is_not_dropped_but_tried_again():
    province = build_evaluation(store=EverChanging(RecordingBus("evaluation")), audit=MemoryAuditLog("evaluation"),
                                bad_review_days=5, site=PROVINCE)
    with pytest.raises(handlers.RollUpContention, match=f"{handlers.ROLL_UP_TRIES} tries"):
        province.city_report(report())
    assert not issubclass(handlers.RollUpContention, DomainError)  # not a refusal: the event is tried again


def test_a_save_that_lost_a_race_is_merged_again():
    class LosesOnce(FakeEvaluationStore):
        lost = False

        def save_rolled_up(self, revision, rating):
            if not self.lost:  # another event of the rating was saved meanwhile
                self.lost = True
                super().save_rolled_up(None, domain.roll_up(None, report(ReportKind.BAD_REVIEW_CLOSED, "c",
                                                                         on_time=True)))
                return False
            return super().save_rolled_up(revision, rating)

    province = build_evaluation(store=LosesOnce(RecordingBus("evaluation")), audit=MemoryAuditLog("evaluation"),
                                bad_review_days=5, site=PROVINCE)
    assert province.city_report(report(event_id="r")) is True
    [(_, merged)] = province.store.rolled.values()
    assert merged.events == ("c", "r") and merged.figures() == dict(ZERO, ratings=1, bad=1, closed=1, on_time=1)


# -- the events as the province's worker decodes them ---------------------------------------------


def test_each_event_carries_what_the_statistics_group_by():
    city = shenzhen_ratings()
    reports = published(city, SHENZHEN)
    assert [(r.kind, r.case_no) for r in reports] == [
        (ReportKind.RATED, "S1"), (ReportKind.RATED, "S2"), (ReportKind.BAD_REVIEW_OPENED, "S2"),
        (ReportKind.RATED, "S3"), (ReportKind.BAD_REVIEW_OPENED, "S3"), (ReportKind.BAD_REVIEW_CLOSED, "S2")]
    by_case = {(r.kind, r.case_no): r for r in reports}
    received = by_case[(ReportKind.RATED, "S3")]
    assert (received.channel, received.grade, received.department_code, received.region_code,
            received.package_code, received.rated_on) == ("window", Grade.DISSATISFIED, "wsjk", SHENZHEN, "KBQY",
                                                          "2024-03-04")
    opened = by_case[(ReportKind.BAD_REVIEW_OPENED, "S2")]
    assert (opened.channel, opened.grade, opened.department_code, opened.rated_on) == (
        "online", Grade.VERY_DISSATISFIED, "gaj", "2024-03-04")
    closed = by_case[(ReportKind.BAD_REVIEW_CLOSED, "S2")]
    assert (closed.on_time, closed.grade, closed.department_code, closed.region_code) == (True, None, "gaj", SHENZHEN)
    assert all(r.origin.site == SHENZHEN and r.origin.event_id for r in reports)


def test_the_day_of_a_rating_is_its_day_in_shanghai():
    clock = Clock(dt.datetime(2024, 3, 4, 17, 0, tzinfo=dt.UTC))  # 01:00 on 5 March in Shanghai
    city = site(SHENZHEN, clock)
    rate(city, "S1", Grade.SATISFIED)
    [received] = published(city, SHENZHEN)
    assert received.rated_on == "2024-03-05" == city.get("S1")["rated_on"]


def test_a_channel_the_proto_does_not_declare_is_refused():
    with pytest.raises(InvalidArgument, match="channel must be one of"):
        contracts.rating_report(ReportKind.RATED, {"case_no": "C1", "channel": 7}, Origin(SHENZHEN, "e1"))


@pytest.mark.parametrize("kind, payload", [
    (ReportKind.RATED, {"case_no": "C1", "rated_at": "10000-01-01T00:00:00Z"}),
    (ReportKind.BAD_REVIEW_OPENED, {"case_no": "C1", "opened_at": "4 March"}),
    (ReportKind.BAD_REVIEW_CLOSED, {"case_no": "C1", "on_time": "maybe"}),
])
def test_a_payload_that_is_not_the_events_json_is_not_a_refusal(kind, payload):
    """Not absorbed as a refusal: the worker's failure rules try it again and then dead-letter it."""
    from google.protobuf import json_format
    with pytest.raises(json_format.ParseError):
        contracts.rating_report(kind, payload, Origin(SHENZHEN, "e1"))


def test_an_event_from_before_sites_is_refused_not_counted():
    """An evaluation_received sent before the event carried its channel and region."""
    old = contracts.rating_report(ReportKind.RATED, {"case_no": "C1", "grade": "GRADE_SATISFIED", "bad_review": False,
                                                     "acted_by": "applicant"}, Origin(SHENZHEN, "e1"))
    assert (old.channel, old.region_code, old.rated_on) == ("", "", "")
    province = site(PROVINCE)
    with pytest.raises(InvalidArgument, match="before sites"):
        province.city_report(old)
    assert province.statistics(REGION) == []
