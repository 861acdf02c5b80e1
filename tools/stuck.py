"""Stuck cases: the cases nothing has happened to for a while, oldest first, each with where it
waits (intake, joint review, elicense, delivery) and why, when that can be told.

    python -m tools.stuck [--for 30m] [--site REGION | --sites] [--json]

`--for` is how long a case must have been without progress (s, m, h, d; "1h30m"; default 30m).
Without --site/--sites the tool reads this site (the settings: ONETHING_MONGO_URI, _DB_PREFIX,
_AMQP_URI); `--site 440300` one site of `make run-sites`, `--sites` all three.

For every case that waits, the tool says
- which step: intake (accepted, joint review has not opened the session), joint review (which tasks
  are at which department's desk, in which region, since when, their clock: working days used of
  the limit, due date, overdue and by how much; a task waiting for the applicant's supplement),
  elicense (an approved item whose licence is not issued), delivery (not delivered);
  a delivered case is finished here (a rating that has not come is not a stuck case);
- which queue: the desk queue `desk.<department>.<region>` (or the worker queue of the event the
  step waits on), with its depth and consumers from the RabbitMQ management API, else from
  `rabbitmqctl list_queues` on the broker's own machine, else "queue depth unknown";
- why, when known: a dead letter of the case (peeked at: every message read is put back), a
  pending outbox entry of the case, an overdue clock, a queue nobody consumes or that does not
  exist, a link between sites that nobody shovels or that keeps growing.

Read-only: the stores are only read (find), the broker only listed and peeked at (passive declare,
basic_get without acknowledgement; the messages go back when the channel closes). While the tool
holds the dead letters (a moment) no one else can read them.

Exit status: 0 no stuck case, 1 stuck cases listed, 3 the stores could not be read.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any, Protocol
from urllib.parse import quote, unquote, urlparse

from services.common import china, registry, workdays
from services.common.config import region_prefix, region_within, settings
from services.common.registry import DESK_EXCHANGE, NAMES, desk_queue
from services.delivery import domain as delivery_domain
from services.intake import domain as intake_domain
from services.joint_review import domain as review_domain

STEPS = ("intake", "joint_review", "elicense", "delivery")  # a delivered case is finished here

# intake's stored statuses of a finished case: nothing waits on it unless a dead letter or an
# unpublished event of it says otherwise (a delivered case waiting for its rating is not stuck)
_FINISHED = {intake_domain.STORED_STATUS[s] for s in (intake_domain.DELIVERED, intake_domain.RATED,
                                                       intake_domain.REJECTED, intake_domain.WITHDRAWN)}
_BEFORE_CONCLUSION = (intake_domain.SUBMITTED, intake_domain.IN_REVIEW, intake_domain.RECTIFYING)
_OPEN_SESSION = review_domain.SESSION_STATUS_STORED[review_domain.SessionStatus.OPEN]
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
DEFAULT_MANAGEMENT_URL = "http://127.0.0.1:15672"
# what a task and its opinion cross between sites on: task_assigned.<d>.<r>, opinion.<d>.<r>.<site>
_TASK_EXCHANGES = (registry.service("joint_review").exchange, DESK_EXCHANGE)


# --- durations and moments ----------------------------------------------------------------------

def parse_duration(text: str) -> float:
    """Seconds of "30m", "2h", "1d", "45s" or a combination in that order ("1h30m")."""
    raw = (text or "").strip().lower()
    match = _DURATION.match(raw)
    if not raw or not match or not any(match.groups()):
        raise ValueError(f"{text!r} is not a duration: use a number with s, m, h or d (30m, 2h, 1d, 1h30m)")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return float(days * 86400 + hours * 3600 + minutes * 60 + seconds)


def moment(value: Any) -> datetime.datetime | None:
    """A stored moment (a datetime, an ISO 8601 string, seconds since the epoch) as an aware
    datetime; None for anything else. A moment stored without its offset is UTC."""
    if isinstance(value, datetime.datetime):
        found = value
    elif isinstance(value, str) and value:
        try:
            found = datetime.datetime.fromisoformat(value)
        except ValueError:
            return None
    elif isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return datetime.datetime.fromtimestamp(value, datetime.UTC)
    else:
        return None
    return found if found.tzinfo else found.replace(tzinfo=datetime.UTC)


def how_long(seconds: float) -> str:
    """2d 4h, 3h 12m, 5m 10s."""
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s" if secs else f"{minutes}m"
    return f"{secs}s"


def _shown(at: datetime.datetime | None) -> str:
    return at.astimezone(china.CST).strftime("%Y-%m-%d %H:%M") if at else "-"


# --- what the readers give ------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class QueueState:
    """A queue as the broker lists it; messages/consumers None: not known."""
    name: str
    messages: int | None = None
    consumers: int | None = None
    growing: bool | None = None   # more messages than a moment ago (links only)


@dataclasses.dataclass
class QueueListing:
    """A broker's queues by name, or None with why they are not known."""
    queues: dict[str, QueueState] | None
    source: str = ""              # "management API" or "rabbitmqctl"
    problem: str = ""


class Stores(Protocol):
    """A site's databases, read only. Documents come as stored (the stores' field names)."""

    def waiting_case_numbers(self) -> set[str]: ...
    def cases(self, case_nos: list[str]) -> dict[str, dict]: ...
    def sessions(self, case_nos: list[str]) -> dict[str, dict]: ...
    def licences(self, case_nos: list[str]) -> dict[str, list[dict]]: ...
    def deliveries(self, case_nos: list[str]) -> dict[str, dict]: ...
    def outbox(self) -> list[tuple[str, str, Any, dict]]: ...


class Broker(Protocol):
    """A site's broker, looked at only."""

    def queues(self) -> QueueListing: ...
    def dead_letters(self) -> list[dict] | None: ...


@dataclasses.dataclass
class Site:
    """One site: its region, the regions it serves, its stores and its broker."""
    region: str
    served: tuple[str, ...]
    stores: Stores
    broker: Broker
    _queues: QueueListing | None = dataclasses.field(default=None, repr=False)
    _letters: list[dict] | None = dataclasses.field(default=None, repr=False)
    _letters_read: bool = dataclasses.field(default=False, repr=False)
    letters_problem: str = dataclasses.field(default="", repr=False)

    def listing(self) -> QueueListing:
        if self._queues is None:
            try:
                self._queues = self.broker.queues()
            except Exception as exc:  # the broker away: the queues are not known, the rest still is
                self._queues = QueueListing(None, problem=f"{type(exc).__name__}: {exc}")
        return self._queues

    def letters(self) -> list[dict] | None:
        if not self._letters_read:
            self._letters_read = True
            try:
                self._letters = self.broker.dead_letters()
            except Exception as exc:  # the broker away: the dead letters are not known
                self._letters, self.letters_problem = None, f"{type(exc).__name__}: {exc}"
        return self._letters

    def serves(self, region: str) -> bool:
        return any(region_within(region, r) for r in self.served)


# --- what the tool finds ----------------------------------------------------------------------------

@dataclasses.dataclass
class Reason:
    """Why a case (or one of its waits) does not move: `kind` is one of dead_letter, outbox,
    overdue, no_consumer, no_queue, link_down, link_growing, out_of_order, elsewhere."""
    kind: str
    text: str


@dataclasses.dataclass
class Wait:
    """One place a case waits."""
    step: str                       # one of STEPS
    what: str                       # what it waits for, in a sentence
    since: datetime.datetime | None = None
    waits_on: str = ""              # who must act: desk, applicant, clerk, worker, carrier, inspection
    department: str = ""
    region: str = ""
    item_code: str = ""
    item_name: str = ""
    clock: dict | None = None
    queue: QueueState | None = None
    queue_site: str = ""
    queue_note: str = ""            # "queue depth unknown", "not declared", …
    event: str = ""                 # the event this step waits on (matched with outbox entries)
    reasons: list[Reason] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class StuckCase:
    case_no: str
    site: str
    package_code: str
    region_code: str
    status: str
    idle_since: datetime.datetime | None
    idle_seconds: float
    waits: list[Wait]
    reasons: list[Reason]           # about the case, not one wait (what no wait claimed)


@dataclasses.dataclass
class LinkState:
    site: str
    queue: QueueState
    sending: str
    receiving: str
    exchange: str

    @property
    def problem(self) -> str:
        if self.queue.consumers == 0:
            return (f"link {self.queue.name} is down: nothing shovels it to {self.receiving}"
                    + (f" ({self.queue.messages} waiting)" if self.queue.messages else ""))
        if self.queue.growing:
            return f"link {self.queue.name} keeps growing ({self.queue.messages} waiting)"
        return ""


@dataclasses.dataclass
class Report:
    now: datetime.datetime
    min_idle: float
    sites: list[str]
    stuck: list[StuckCase]
    links: list[LinkState]
    notes: list[str]


@dataclasses.dataclass(frozen=True)
class _WorkerNames:
    desk_opinions: str
    dead_letters: str
    describe: Callable[[Any], dict]


def _from_workers() -> _WorkerNames:
    """The queue names the workers use and tools.dead_letters' reading of a dead letter, imported
    when needed (they bring nameko, whose import warns about eventlet: not news to an operator)."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from services.common.worker import DEAD_LETTER_QUEUE
        from services.joint_review.worker import DESK_OPINIONS
        from tools.dead_letters import describe
    return _WorkerNames(DESK_OPINIONS, DEAD_LETTER_QUEUE, describe)


# --- the reasoning ----------------------------------------------------------------------------------

def _last_activity(case: dict | None, body: dict | None, licences: list[dict], delivery: dict | None,
                   entries: list[tuple[str, dict]], now: datetime.datetime) -> datetime.datetime | None:
    """The latest moment something was recorded about the case in any store (moments after `now`,
    an inspection's appointment say, are not activity)."""
    found: list[Any] = []
    if case:
        found.append(case.get("submitted_at"))
        found += [h.get("at") for h in case.get("history") or []]
    if body:
        found += [body.get("opened_at"), body.get("concluded_at"), body.get("withdrawn_at")]
        for t in body.get("tasks") or []:
            found += [t.get("assigned_at"), t.get("decided_at")]
            rect = t.get("rectification") or {}
            found += [rect.get("requested_at"), rect.get("supplied_at")]
        insp = body.get("inspection") or {}
        found += [insp.get("scheduled_at"), insp.get("completed_at")]
        found += [f.get("at") for f in (insp.get("findings") or {}).values() if isinstance(f, dict)]
    for lic in licences:
        found += [lic.get("issued_at"), lic.get("revoked_at"), lic.get("superseded_at")]
    if delivery:
        found += [h.get("at") for h in delivery.get("history") or []]
    found += [e.get("at") for _, e in entries]
    moments = [m for m in (moment(v) for v in found) if m is not None and m <= now]
    return max(moments) if moments else None


def _clock(task: dict, now: datetime.datetime) -> dict | None:
    """What the task's clock says today (China time): working days used of its limit, the due
    date, paused, overdue and by how many working days."""
    c = task.get("clock")
    if not c:
        return None
    try:
        view = review_domain.clock_view(c, now.astimezone(china.CST).date(), task.get("statutory_limit_days") or 0)
        view["overdue_days"] = max(0, -view["remaining_days"])
        view["overdue"] = view["overdue_days"] > 0
        if view["overdue"]:  # the day it ran out (clock_view's date of an overdue clock is today)
            start = datetime.date.fromisoformat(c["started_on"])
            view["due_date"] = workdays.add_workdays(start, c["limit_days"] + c.get("paused_days", 0))[0].isoformat()
    except (KeyError, TypeError, ValueError) as exc:
        return {"error": f"clock unreadable: {exc}"}
    view["paused_for"] = c.get("paused_for") or ""
    return view


def _status_of(case: dict | None) -> intake_domain.CaseStatus | None:
    return intake_domain.STATUS_OF_STORED.get((case or {}).get("status", ""))


def _worker_queue(source: str, event: str, consumer: str) -> str:
    """The prefix of the nameko queue of `consumer`'s handler of `source`'s `event`."""
    return f"evt-{source}-{event}--{consumer}."


class _Diagnosis:
    """The waits of one case at one site (see diagnose)."""

    def __init__(self, site: Site, sites: dict[str, Site], now: datetime.datetime):
        self.site, self.sites, self.now = site, sites, now

    # where a queue is, and what the broker says of it
    def desk_site(self, region: str) -> Site | None:
        """The site whose broker holds the desk queue of `region`: the most specific known site that
        serves it (a city before its province; this site on a tie)."""
        def closeness(site: Site) -> tuple[int, bool]:
            return (max(len(region_prefix(r) or "") for r in site.served if region_within(region, r)),
                    site is self.site)

        serving = [s for s in {id(s): s for s in [self.site, *self.sites.values()]}.values() if s.serves(region)]
        return max(serving, key=closeness) if serving else None

    def place(self, wait: Wait, site: Site, name: str = "", prefix: str = "") -> None:
        """Put the queue `name` (or the first whose name starts with `prefix`) of `site` on `wait`."""
        listing = site.listing()
        wait.queue_site = site.region
        shown = name or prefix + "*"
        if listing.queues is None:
            wait.queue = QueueState(name or shown)
            wait.queue_note = "queue depth unknown" + (f" ({listing.problem})" if listing.problem else "")
            return
        if name:
            found = listing.queues.get(name)
        else:
            found = next((q for n, q in sorted(listing.queues.items())
                          if n.startswith(prefix) and not n.endswith(".retry")), None)
        if found is None:
            wait.queue = QueueState(shown, None, None)
            wait.queue_note = f"not on the broker of site {site.region}"
            wait.reasons.append(Reason("no_queue", f"queue {shown} does not exist on the broker of site {site.region}: "
                                       "its consumer has never been started there"))
            return
        wait.queue = found
        if found.consumers == 0:
            wait.reasons.append(Reason("no_consumer", f"nobody consumes {found.name}"
                                       + (f" ({found.messages} waiting)" if found.messages else "")))

    def links(self, wait: Wait, sites: Iterable[Site], exchanges: tuple[str, ...]) -> None:
        for site in sites:
            for link in site_links(site):
                if link.exchange in exchanges and link.problem:
                    wait.reasons.append(Reason("link_down" if link.queue.consumers == 0 else "link_growing",
                                               f"site {site.region}: {link.problem}"))

    # the steps
    def intake_step(self, case: dict) -> Wait:
        wait = Wait("intake", "accepted; joint review has not opened the session (case_submitted not taken)",
                    since=moment(case.get("submitted_at")), waits_on="joint_review worker", event="case_submitted")
        self.place(wait, self.site, prefix=_worker_queue("intake", "case_submitted", "joint_review"))
        return wait

    def desk_step(self, task: dict) -> Wait:
        dept, region = task.get("department_code", ""), task.get("region_code", "")
        wait = Wait("joint_review", f"at the desk of {dept} ({region}) for item {task.get('item_code', '')} "
                    f"{task.get('item_name', '')}".rstrip(), since=moment(task.get("assigned_at")),
                    waits_on="desk", department=dept, region=region, item_code=task.get("item_code", ""),
                    item_name=task.get("item_name", ""), clock=_clock(task, self.now), event=f"task_assigned.{dept}.{region}")
        clock = wait.clock or {}
        if clock.get("overdue"):
            wait.reasons.append(Reason("overdue", f"past its limit of {clock['limit_days']} working days by "
                                       f"{clock['overdue_days']} (due {clock['due_date']})"))
        where = self.desk_site(region)
        if where is None:
            wait.queue = QueueState(desk_queue(dept, region))
            wait.queue_note = "queue depth unknown: no known site serves region " + region
            wait.reasons.append(Reason("elsewhere", f"region {region} is served by another site; its desk queue "
                                       "is on that site's broker (use --sites)"))
            self.links(wait, [self.site], _TASK_EXCHANGES)
            return wait
        self.place(wait, where, name=desk_queue(dept, region))
        if where is not self.site:
            involved = [self.site, where] + [s for s in self.sites.values()
                                             if s not in (self.site, where) and s.region.endswith("0000")
                                             and s.serves(self.site.region) and s.serves(where.region)]
            self.links(wait, involved, _TASK_EXCHANGES)
        self.opinions_taken(wait)
        return wait

    def opinions_taken(self, wait: Wait) -> None:
        """A desk that answered is heard only while joint_review consumes the desks' opinions."""
        opinions = _from_workers().desk_opinions
        listing = self.site.listing()
        q = (listing.queues or {}).get(opinions)
        if q is not None and q.consumers == 0:
            wait.reasons.append(Reason("no_consumer", f"joint_review does not take the desks' opinions: nobody "
                                       f"consumes {opinions}" + (f" ({q.messages} waiting)" if q.messages else "")))

    def supplement_step(self, task: dict) -> Wait:
        rect = task.get("rectification") or {}
        codes = ", ".join(rect.get("material_codes") or []) or "named materials"
        wait = Wait("joint_review", f"department {task.get('department_code', '')} asked the applicant for "
                    f"{codes} (补正) for item {task.get('item_code', '')}; waits for the supplement",
                    since=moment(rect.get("requested_at") or task.get("decided_at")), waits_on="applicant",
                    department=task.get("department_code", ""), region=task.get("region_code", ""),
                    item_code=task.get("item_code", ""), item_name=task.get("item_name", ""),
                    clock=_clock(task, self.now), event="case_supplemented")
        return wait

    def licence_step(self, task: dict, licences: list[dict]) -> Wait:
        issued = next((lic for lic in licences if lic.get("item_code") == task.get("item_code")), None)
        base = dict(department=task.get("department_code", ""), region=task.get("region_code", ""),
                    item_code=task.get("item_code", ""), item_name=task.get("item_name", ""))
        if issued is None:
            wait = Wait("elicense", f"item {task.get('item_code', '')} approved; licence not yet issued",
                        since=moment(task.get("decided_at")), waits_on="elicense worker", event="opinion_recorded",
                        **base)
            self.place(wait, self.site, prefix=_worker_queue("joint_review", "opinion_recorded", "elicense"))
        else:
            wait = Wait("elicense", f"licence {issued.get('license_id', '')} for item {task.get('item_code', '')} "
                        f"issued {_shown(moment(issued.get('issued_at')))}; joint review has not recorded it",
                        since=moment(issued.get("issued_at")), waits_on="joint_review worker",
                        event="license_issued", **base)
            self.place(wait, self.site, prefix=_worker_queue("elicense", "license_issued", "joint_review"))
        return wait

    def inspection_step(self, body: dict) -> Wait | None:
        insp = body.get("inspection") or {}
        if insp.get("status") != "SCHEDULED":
            return None
        missing = [d for d in insp.get("participants") or [] if d not in (insp.get("findings") or {})]
        return Wait("joint_review", f"joint site inspection on {insp.get('at', '?')} at {insp.get('place', '?')}; "
                    f"findings not yet recorded by {', '.join(missing) or 'its departments'}",
                    since=moment(insp.get("scheduled_at")), waits_on="inspection")

    def delivery_steps(self, status: intake_domain.CaseStatus | None, body: dict,
                       delivery: dict | None) -> list[Wait]:
        waits: list[Wait] = []
        concluded = moment(body.get("concluded_at"))
        if status in _BEFORE_CONCLUSION:
            wait = Wait("intake", f"joint review concluded the case {_shown(concluded)}; intake has not recorded it",
                        since=concluded, waits_on="intake worker", event="case_concluded")
            self.place(wait, self.site, prefix=_worker_queue("joint_review", "case_concluded", "intake"))
            waits.append(wait)
        if delivery is None:
            wait = Wait("delivery", "concluded; delivery has not taken the case (case_concluded)", since=concluded,
                        waits_on="delivery worker", event="case_concluded")
            self.place(wait, self.site, prefix=_worker_queue("joint_review", "case_concluded", "delivery"))
            return [*waits, wait]
        try:
            state = delivery_domain.status_of_stored(delivery.get("status", ""))
        except ValueError:
            return [*waits, Wait("delivery", f"delivery in an unknown status {delivery.get('status')!r}")]
        history = delivery.get("history") or []
        since = moment(history[-1].get("at")) if history else concluded
        channel = str(delivery.get("channel", "")).replace("DELIVERY_CHANNEL_", "").lower()
        if state == delivery_domain.COMPLETED:
            if status not in (intake_domain.DELIVERED, intake_domain.RATED):
                wait = Wait("delivery", f"delivered {_shown(since)}; intake has not recorded it", since=since,
                            waits_on="intake worker", event="delivery_completed")
                self.place(wait, self.site, prefix=_worker_queue("delivery", "delivery_completed", "intake"))
                waits.append(wait)
            return waits
        if state == delivery_domain.CANCELLED:
            return waits
        what, who = {
            delivery_domain.PREPARED: (f"results prepared ({channel}), not yet dispatched", "clerk"),
            delivery_domain.DISPATCHED: (f"dispatched ({channel}); waits for the carrier's report", "carrier"),
            delivery_domain.READY_FOR_PICKUP: ("results wait at the window for the applicant", "applicant"),
            delivery_domain.FAILED: (f"delivery failed: {delivery.get('failure_reason') or 'no reason kept'}; "
                                     "waits for a clerk to send it again", "clerk"),
        }.get(state, (f"delivery {state}", ""))
        return [*waits, Wait("delivery", what, since=since, waits_on=who)]


def diagnose(case_no: str, site: Site, sites: dict[str, Site], case: dict | None, body: dict | None,
             licences: list[dict], delivery: dict | None, now: datetime.datetime) -> list[Wait]:
    """Where a case waits, step by step (empty: nothing waits on it). `case` is intake's stored
    case, `body` joint review's stored session, `licences` elicense's stored licence fields,
    `delivery` delivery's stored body; any may be missing."""
    d = _Diagnosis(site, sites, now)
    status = _status_of(case)
    if body is None:
        if case is None or status not in _BEFORE_CONCLUSION:
            return []
        return [d.intake_step(case)]
    try:
        session = review_domain.session_from_stored(body)
    except (KeyError, ValueError) as exc:
        return [Wait("joint_review", f"the stored session cannot be read: {exc}")]
    if session["status"] == review_domain.OPEN:
        if status == intake_domain.WITHDRAWN:
            wait = Wait("joint_review", "withdrawn by the applicant; joint review has not closed the session",
                        waits_on="joint_review worker", event="case_withdrawn")
            d.place(wait, site, prefix=_worker_queue("intake", "case_withdrawn", "joint_review"))
            return [wait]
        waits: list[Wait] = []
        for task in session["tasks"]:
            if task["state"] == review_domain.ASSIGNED:
                waits.append(d.desk_step(task))
            elif task["state"] == review_domain.RECTIFYING:
                waits.append(d.supplement_step(task))
            elif task["state"] == review_domain.APPROVED:
                waits.append(d.licence_step(task, licences))
        inspection = d.inspection_step(body)
        if inspection is not None:
            waits.append(inspection)
        if not waits:
            pending = [t["item_code"] for t in session["tasks"] if t["state"] == review_domain.PENDING]
            waits.append(Wait("joint_review", "session open but no task is at a desk"
                              + (f" (pending: {', '.join(pending)})" if pending else " and every task is finished"),
                              since=moment(body.get("opened_at")), waits_on="joint_review worker"))
        return waits
    if session["status"] == review_domain.S_APPROVED:
        if status in (intake_domain.DELIVERED, intake_domain.RATED, intake_domain.WITHDRAWN):
            return []
        return d.delivery_steps(status, body, delivery)
    if session["status"] == review_domain.S_REJECTED and status in _BEFORE_CONCLUSION:
        concluded = moment(body.get("concluded_at"))
        wait = Wait("intake", f"joint review refused the case {_shown(concluded)}; intake has not recorded it",
                    since=concluded, waits_on="intake worker", event="case_concluded")
        d.place(wait, site, prefix=_worker_queue("joint_review", "case_concluded", "intake"))
        return [wait]
    return []


def _attach(waits: list[Wait], letters: list[tuple[str, dict]], entries: list[tuple[str, dict]]) -> list[Reason]:
    """Dead letters and pending outbox entries as reasons: on the wait whose queue (or event) they
    concern, the rest about the case."""
    loose: list[Reason] = []
    for where, letter in letters:
        text = (f"dead letter {letter.get('message_id', '')} on site {where}: {letter.get('event') or '?'} "
                f"failed {letter.get('attempts', 0)} times in {letter.get('queue') or '?'} "
                f"({letter.get('failed_at') or '?'}): {letter.get('error') or 'no error kept'}")
        target = next((w for w in waits if w.queue and letter.get("queue") == w.queue.name), None)
        (target.reasons if target else loose).append(Reason("dead_letter", text))
    for service, entry in entries:
        event_type = str(entry.get("event_type", ""))
        at = moment(entry.get("at"))
        text = (f"{service} has not published {event_type} (written {_shown(at)}, {entry.get('attempts', 0)} "
                "failed attempts" + (f", last error: {entry['last_error']}" if entry.get("last_error") else "") + ")")
        target = next((w for w in waits if w.event and (event_type == w.event or event_type.startswith(w.event + "."))),
                      None)
        (target.reasons if target else loose).append(Reason("outbox", text))
    return loose


def site_links(site: Site) -> list[LinkState]:
    """The link queues (`link.<from>.<to>.<exchange>`, infra/links.py) on a site's broker."""
    listing = site.listing()
    found = []
    for name, q in sorted((listing.queues or {}).items()):
        parts = name.split(".", 3)
        if parts[0] == "link" and len(parts) == 4:
            found.append(LinkState(site.region, q, parts[1], parts[2], parts[3]))
    return found


def _chunks(items: list[str], size: int = 500) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def find_stuck(sites: dict[str, Site], inspected: list[str], min_idle: float,
               now: datetime.datetime | None = None) -> Report:
    """The stuck cases of the `inspected` sites (regions of `sites`, which also says where other
    regions' desk queues are), idle at least `min_idle` seconds, oldest first."""
    now = now or datetime.datetime.now(datetime.UTC)
    notes: list[str] = []
    letters: dict[str, list[tuple[str, dict]]] = {}
    for region in inspected:
        found = sites[region].letters()
        if found is None:
            problem = sites[region].letters_problem
            notes.append(f"site {region}: the dead letters could not be read" + (f" ({problem})" if problem else ""))
        for letter in found or []:
            if letter.get("case_no"):
                letters.setdefault(letter["case_no"], []).append((region, letter))
    stuck: list[StuckCase] = []
    for region in inspected:
        site = sites[region]
        pending: dict[str, list[tuple[str, dict]]] = {}
        for service, _coll, _doc_id, entry in site.stores.outbox():
            if entry.get("case_no"):  # every event about a case names it (services.common.bus.outbox_entry)
                pending.setdefault(entry["case_no"], []).append((service, entry))
        numbers = site.stores.waiting_case_numbers() | set(pending)
        numbers |= {n for n, ls in letters.items() for where, _ in ls if where == region}
        wanted = sorted(numbers)
        cases: dict[str, dict] = {}
        sessions: dict[str, dict] = {}
        licences: dict[str, list[dict]] = {}
        deliveries: dict[str, dict] = {}
        for part in _chunks(wanted):
            cases.update(site.stores.cases(part))
            sessions.update(site.stores.sessions(part))
            licences.update(site.stores.licences(part))
            deliveries.update(site.stores.deliveries(part))
        for case_no in wanted:
            case, body = cases.get(case_no), sessions.get(case_no)
            if case is None and body is None and case_no not in letters and case_no not in pending:
                continue
            last = _last_activity(case, body, licences.get(case_no, []), deliveries.get(case_no),
                                  pending.get(case_no, []), now)
            idle = (now - last).total_seconds() if last else float("inf")
            if idle < min_idle:
                continue
            waits = diagnose(case_no, site, sites, case, body, licences.get(case_no, []), deliveries.get(case_no), now)
            loose = _attach(waits, letters.get(case_no, []), pending.get(case_no, []))
            if not waits and not loose:
                continue
            status = _status_of(case)
            stuck.append(StuckCase(
                case_no=case_no, site=region, package_code=(case or {}).get("package_code") or (body or {}).get(
                    "package_code", ""), region_code=(case or {}).get("region_code") or (body or {}).get("region_code", ""),
                status=str(status) if status else ("unknown to intake" if case is None else str(case.get("status"))),
                idle_since=last, idle_seconds=idle, waits=waits, reasons=loose))
    links = [link for region in inspected for link in site_links(sites[region])]
    for region in inspected:
        listing = sites[region].listing()
        if listing.queues is None:
            notes.append(f"site {region}: queue depth unknown ({listing.problem or 'no management API, no rabbitmqctl'})")
    stuck.sort(key=lambda c: (c.idle_since or datetime.datetime.min.replace(tzinfo=datetime.UTC), c.case_no))
    return Report(now, min_idle, list(inspected), stuck, links, notes)


# --- the readers ----------------------------------------------------------------------------------

def _direct(uri: str) -> dict:
    """One server and no replica set named: talk to it directly (as services.common.mongo does)."""
    if "replicaSet=" not in uri and "directConnection=" not in uri and "," not in uri.split("@")[-1]:
        return {"directConnection": True}
    return {}


class MongoStores:
    """A site's databases (`<prefix><service>`), read with the operator's credentials."""

    def __init__(self, uri: str, db_prefix: str, timeout_ms: int = 5000):
        import pymongo
        self.prefix = db_prefix
        self.client: Any = pymongo.MongoClient(uri, serverSelectionTimeoutMS=timeout_ms, tz_aware=True,
                                               document_class=dict, **_direct(uri))

    def _db(self, service: str) -> Any:
        return self.client[f"{self.prefix}{service}"]

    def close(self) -> None:
        self.client.close()

    def waiting_case_numbers(self) -> set[str]:
        """Cases intake has not finished, and cases whose session is open."""
        found = {d["_id"] for d in self._db("intake")["cases"].find({"status": {"$nin": sorted(_FINISHED)}}, {"_id": 1})}
        found |= {d["_id"] for d in self._db("joint_review")["sessions"].find({"body.status": _OPEN_SESSION}, {"_id": 1})}
        return found

    def cases(self, case_nos: list[str]) -> dict[str, dict]:
        fields = {"package_code": 1, "package_version": 1, "region_code": 1, "status": 1, "submitted_at": 1,
                  "history": 1, "rectification": 1}
        return {d["_id"]: d for d in self._db("intake")["cases"].find({"_id": {"$in": case_nos}}, fields)}

    def sessions(self, case_nos: list[str]) -> dict[str, dict]:
        return {d["_id"]: d.get("body") or {}
                for d in self._db("joint_review")["sessions"].find({"_id": {"$in": case_nos}}, {"body": 1})}

    def licences(self, case_nos: list[str]) -> dict[str, list[dict]]:
        found: dict[str, list[dict]] = {}
        for d in self._db("elicense")["licenses"].find({"fields.case_no": {"$in": case_nos}}, {"fields": 1}):
            fields = d.get("fields") or {}
            found.setdefault(fields.get("case_no", ""), []).append(dict(fields, license_id=d["_id"]))
        return found

    def deliveries(self, case_nos: list[str]) -> dict[str, dict]:
        return {d["_id"]: d.get("body") or {}
                for d in self._db("delivery")["deliveries"].find({"_id": {"$in": case_nos}}, {"body": 1})}

    def outbox(self) -> list[tuple[str, str, Any, dict]]:
        """(service, collection, document id, entry) of every pending outbox entry (as tools/outbox.py)."""
        found = []
        for service in NAMES:
            db = self._db(service)
            for coll in db.list_collection_names():
                for doc in db[coll].find({"outbox.0": {"$exists": True}}, {"outbox": 1}):
                    found += [(service, coll, doc["_id"], e) for e in doc.get("outbox") or [] if isinstance(e, dict)]
        return found


def parse_list_queues(text: str) -> dict[str, QueueState]:
    """`rabbitmqctl list_queues name messages consumers` output (tab-separated; a header line, if
    any, is skipped)."""
    found = {}
    for line in text.splitlines():
        parts = line.strip().split("\t")
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
            continue
        found[parts[0]] = QueueState(parts[0], int(parts[1]), int(parts[2]))
    return found


class RabbitBroker:
    """A site's broker: queues from the management API, else `rabbitmqctl` (`ctl`, run on the
    broker's own machine only); dead letters peeked at over AMQP."""

    def __init__(self, amqp_uri: str, management_url: str = DEFAULT_MANAGEMENT_URL,
                 ctl: Callable[[list[str]], str] | None = None, link_sample_seconds: float = 2.0,
                 timeout: float = 5.0):
        self.amqp_uri, self.management_url, self.ctl = amqp_uri, management_url.rstrip("/"), ctl
        self.link_sample_seconds, self.timeout = link_sample_seconds, timeout
        u = urlparse(amqp_uri)
        self.vhost = unquote(u.path[1:]) if u.path and u.path != "/" else "/"
        self.user, self.password = unquote(u.username or "guest"), unquote(u.password or "guest")

    def _management(self) -> dict[str, QueueState]:
        import base64
        url = f"{self.management_url}/api/queues/{quote(self.vhost, safe='')}"
        request = urllib.request.Request(url, headers={"Authorization": "Basic " + base64.b64encode(
            f"{self.user}:{self.password}".encode()).decode()})
        with urllib.request.urlopen(request, timeout=self.timeout) as answer:
            rows = json.loads(answer.read())
        found = {}
        for row in rows:
            rate = (row.get("messages_details") or {}).get("rate")
            messages = row.get("messages")
            found[row["name"]] = QueueState(row["name"], messages, row.get("consumers"),
                                            growing=bool(rate and rate > 0 and messages) if rate is not None else None)
        return found

    def _rabbitmqctl(self) -> dict[str, QueueState]:
        assert self.ctl is not None
        return parse_list_queues(self.ctl(["list_queues", "-p", self.vhost, "name", "messages", "consumers"]))

    def queues(self) -> QueueListing:
        problems = []
        try:
            return QueueListing(self._management(), "management API")
        except (OSError, ValueError, urllib.error.URLError) as exc:
            problems.append(f"management API at {self.management_url}: {exc}")
        if self.ctl is None:
            return QueueListing(None, problem="; ".join([*problems, "no rabbitmqctl for this broker"]))
        try:
            # list_queues answers a vhost that does not exist with no queues: ask first
            if self.vhost not in {line.strip() for line in self.ctl(["list_vhosts", "name"]).splitlines()}:
                raise RuntimeError(f"there is no vhost {self.vhost!r} on this broker")
            first = self._rabbitmqctl()
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            return QueueListing(None, problem="; ".join([*problems, f"rabbitmqctl: {exc}"]))
        backed_up = [n for n, q in first.items() if n.startswith("link.") and q.messages]
        if backed_up and self.link_sample_seconds > 0:
            # is a link's backlog growing? a second look a moment later says
            time.sleep(self.link_sample_seconds)
            try:
                second = self._rabbitmqctl()
            except (OSError, RuntimeError, subprocess.SubprocessError):
                second = {}
            for name in backed_up:
                if name in second:
                    first[name] = dataclasses.replace(second[name], growing=(second[name].messages or 0) >
                                                      (first[name].messages or 0))
        return QueueListing(first, "rabbitmqctl")

    def dead_letters(self) -> list[dict] | None:
        """Every dead letter (as tools.dead_letters.describe gives it), read without acknowledgement:
        closing the channel puts them all back. A vhost without the queue has none; a broker that
        cannot be reached raises."""
        from amqp.exceptions import NotFound
        names = _from_workers()  # imports tools.dead_letters quietly (nameko's eventlet warning)

        from tools.dead_letters import _reading
        try:
            with _reading(self.amqp_uri, declare=False, limit=100_000, timeout=self.timeout) as (_, messages):
                return [names.describe(m) for m in messages]
        except NotFound:
            return []


def _loopback(uri: str) -> bool:
    return (urlparse(uri).hostname or "127.0.0.1") in ("127.0.0.1", "localhost", "::1")


def _local_ctl(args: list[str]) -> str:
    done = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError((done.stderr or done.stdout).strip()[-300:] or f"exit status {done.returncode}")
    return done.stdout


def this_site(link_sample_seconds: float = 2.0) -> dict[str, Site]:
    """The site the settings name (ONETHING_REGION, _MONGO_URI, _DB_PREFIX, _AMQP_URI)."""
    s = settings()
    broker = RabbitBroker(s.amqp_uri, s.broker_management_url or DEFAULT_MANAGEMENT_URL,
                          ctl=_local_ctl if _loopback(s.amqp_uri) else None, link_sample_seconds=link_sample_seconds)
    return {s.region: Site(s.region, tuple(s.served_regions), MongoStores(s.mongo_uri, s.db_prefix), broker)}


def run_sites(link_sample_seconds: float = 2.0) -> dict[str, Site]:
    """The three sites of `make run-sites` (infra/multisite.py): each its database prefix, its own
    RabbitMQ node (management API, else rabbitmqctl with the node's cookie)."""
    from infra import multisite
    from infra import sites as nodes
    found = {}
    for region in multisite.REGIONS:
        env = multisite.site_env(region)
        node = multisite.node(region)

        def ctl(args: list[str], node: Any = node) -> str:
            return nodes.ctl(node, *args, timeout=60).stdout

        broker = RabbitBroker(env["ONETHING_AMQP_URI"], f"http://127.0.0.1:{node.management_port}", ctl=ctl,
                              link_sample_seconds=link_sample_seconds)
        found[region] = Site(region, (region,), MongoStores(settings().mongo_uri, env["ONETHING_DB_PREFIX"]), broker)
    return found


# --- the output -----------------------------------------------------------------------------------

def _iso(at: datetime.datetime | None) -> str:
    return at.astimezone(china.CST).isoformat() if at else ""


def as_json(report: Report) -> dict:
    def queue(w: Wait) -> dict | None:
        if w.queue is None:
            return None
        return {"name": w.queue.name, "site": w.queue_site, "messages": w.queue.messages,
                "consumers": w.queue.consumers, "note": w.queue_note}

    def reasons(rs: list[Reason]) -> list[dict]:
        return [{"kind": r.kind, "text": r.text} for r in rs]

    return {
        "now": _iso(report.now), "for_seconds": report.min_idle, "sites": report.sites,
        "stuck": [{"case_no": c.case_no, "site": c.site, "package_code": c.package_code, "region_code": c.region_code,
                   "status": c.status, "idle_since": _iso(c.idle_since),
                   "idle_seconds": None if c.idle_seconds == float("inf") else round(c.idle_seconds),
                   "waits": [{"step": w.step, "what": w.what, "waits_on": w.waits_on, "since": _iso(w.since),
                              "department": w.department, "region": w.region, "item_code": w.item_code,
                              "item_name": w.item_name, "clock": w.clock, "queue": queue(w),
                              "reasons": reasons(w.reasons)} for w in c.waits],
                   "reasons": reasons(c.reasons)} for c in report.stuck],
        "links": [{"site": link.site, "queue": link.queue.name, "from": link.sending, "to": link.receiving,
                   "exchange": link.exchange, "messages": link.queue.messages, "consumers": link.queue.consumers,
                   "growing": link.queue.growing, "problem": link.problem} for link in report.links],
        "notes": report.notes}


def _queue_text(w: Wait) -> str:
    if w.queue is None:
        return ""
    q = w.queue
    where = f" (site {w.queue_site})" if w.queue_site else ""
    if q.messages is None:
        return f"queue {q.name}{where}: {w.queue_note or 'queue depth unknown'}"
    return f"queue {q.name}{where}: {q.messages} waiting, {q.consumers} consumer(s)"


def _clock_text(c: dict | None) -> str:
    if not c:
        return ""
    if "error" in c:
        return c["error"]
    text = f"clock: {c['elapsed_days']} of {c['limit_days']} working days, due {c['due_date']}"
    if c.get("paused"):
        text += f", paused ({c.get('paused_for') or 'stopped'})"
    if c.get("overdue"):
        text += f"; OVERDUE by {c['overdue_days']} working day(s)"
    if c.get("statutory_overdue"):
        text += f"; past the statutory limit of {c['statutory_limit_days']}"
    return text


def as_text(report: Report) -> str:
    lines = []
    limit = how_long(report.min_idle)
    if not report.stuck:
        lines.append(f"no stuck cases (none without progress for {limit} or more; sites {', '.join(report.sites)})")
    else:
        lines.append(f"{len(report.stuck)} stuck case(s) without progress for {limit} or more, oldest first "
                     f"(sites {', '.join(report.sites)}; times in China time)")
        for c in report.stuck:
            idle = "never" if c.idle_seconds == float("inf") else f"{how_long(c.idle_seconds)} ago"
            lines += ["", f"{c.case_no}  package {c.package_code or '-'}  status {c.status}  region {c.region_code or '-'}"
                          f"  site {c.site}",
                      f"  nothing happened since {_shown(c.idle_since)} ({idle})"]
            for w in c.waits:
                lines.append(f"  - {w.step}: {w.what}" + (f"  [since {_shown(w.since)}]" if w.since else "")
                             + (f"  (waits on: {w.waits_on})" if w.waits_on else ""))
                lines += [f"      {t}" for t in (_clock_text(w.clock), _queue_text(w)) if t]
                if w.reasons:
                    lines += [f"      why: {r.text}" for r in w.reasons]
                elif w.waits_on not in ("applicant", "carrier", "inspection", "clerk"):
                    lines.append("      why: not known (no dead letter, pending event, overdue clock or idle queue found)")
            lines += [f"  why (case): {r.text}" for r in c.reasons]
    troubled = [link for link in report.links if link.problem]
    if troubled:
        lines += ["", "links between sites:"] + [f"  site {link.site}: {link.problem}" for link in troubled]
    if report.notes:
        lines += ["", *[f"note: {n}" for n in report.notes]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.stuck", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--for", dest="duration", default="30m",
                        help="how long a case must have been without progress (s, m, h, d; default 30m)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--site", metavar="REGION", help="one site of `make run-sites` (440000, 440100, 440300)")
    where.add_argument("--sites", action="store_true", help="every site of `make run-sites`")
    parser.add_argument("--json", action="store_true", help="the findings as JSON")
    parser.add_argument("--link-sample", type=float, default=2.0, metavar="SECONDS",
                        help="without the management API: how long to wait between two looks at a link's backlog")
    args = parser.parse_args(argv)
    try:
        min_idle = parse_duration(args.duration)
    except ValueError as exc:
        parser.error(f"--for: {exc}")
    if args.site or args.sites:
        from infra import multisite
        if args.site and args.site not in multisite.REGIONS:
            parser.error(f"--site: {args.site!r} is not a site of `make run-sites` ({', '.join(multisite.REGIONS)})")
        sites = run_sites(args.link_sample)
        inspected = [args.site] if args.site else list(multisite.REGIONS)
    else:
        sites = this_site(args.link_sample)
        inspected = list(sites)
    try:
        report = find_stuck(sites, inspected, min_idle)
    except Exception as exc:
        import pymongo.errors
        if isinstance(exc, pymongo.errors.PyMongoError):
            print(f"cannot read the stores: {exc}", file=sys.stderr)
            return 3
        raise
    finally:
        for site in sites.values():
            close = getattr(site.stores, "close", None)
            if close:
                close()
    if args.json:
        print(json.dumps(as_json(report), ensure_ascii=False, indent=2))
    else:
        print(as_text(report))
    return 1 if report.stuck else 0


if __name__ == "__main__":
    sys.exit(main())
