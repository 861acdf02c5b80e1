"""What the end-to-end tests wait on, and how they name the items they expect.

Waits: on a condition (`wait_until`), on an event of a case reaching the probe (`wait_event`), on a
consumer having handled an event (`wait_handled`, by the consumer's inbox), on a department's desk
having taken every task of its queue (`wait_desk_idle`). Each gives up after
its timeout with a TimeoutError that says what did not happen, instead of a test sleeping for a
while and hoping.

Items: a test names an item by what it is (its department, words of its name, the licence it
issues, a flag such as `inspection`) and the catalog of the running suite says its code, the way
the catalog resolves the package for the region and the situation answers (GetPackage). A test no
longer writes 12-digit basic codes that a catalog change would silently make wrong."""
import time

import grpc

# --- conditions ------------------------------------------------------------------------------


def wait_until(check, timeout=30.0, what="the condition", ignore=(grpc.StatusCode.NOT_FOUND,), interval=0.1):
    """`check()`'s first truthy value, asked every `interval` seconds until `timeout`. An RpcError
    whose code is in `ignore` counts as "not yet" (the thing may not exist yet: a session opens a
    moment after SubmitCase answers); `ignore=None` counts every RpcError so. TimeoutError naming
    `what` (and the last refusal, if any) when it never holds."""
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            value = check()
        except grpc.RpcError as exc:
            if ignore is not None and exc.code() not in ignore:
                raise
            value, last_error = None, exc
        if value:
            return value
        if time.monotonic() >= deadline:
            detail = f" (last answer: {last_error.code().name}: {last_error.details()})" if last_error else ""
            raise TimeoutError(f"{what} not reached within {timeout:g} s{detail}")
        time.sleep(interval)


# --- events ------------------------------------------------------------------------------------


def _matches(routing_key, key):
    """`key` names an event type: "opinion_recorded", or "task_assigned" for every
    "task_assigned.<department>.<region>"; a full routing key matches itself."""
    return routing_key == key or routing_key.startswith(key + ".")


def events_of(probe, case_no, key=None, predicate=None):
    """The case's events that reached the probe, in arrival order, as (routing key, payload,
    headers); only those of `key` (see _matches) and whose payload satisfies `predicate`."""
    with probe._lock:
        seen = list(probe.events)
    return [(k, b, h) for k, b, h in seen
            if (h.get("case_no") == case_no or b.get("case_no") == case_no)
            and (key is None or _matches(k, key)) and (predicate is None or predicate(b))]


def wait_event(probe, case_no, key, timeout=30.0, predicate=None, count=1):
    """Wait until `count` events `key` of the case (payload satisfying `predicate`, if given) have
    reached the probe; returns the `count`-th as (routing key, payload). TimeoutError naming the
    case, the event and what the case's events were meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        found = events_of(probe, case_no, key, predicate)
        if len(found) >= count:
            k, b, _ = found[count - 1]
            return k, b
        if time.monotonic() >= deadline:
            wanted = f"{count} {key!r} events" if count > 1 else f"a {key!r} event"
            which = " satisfying the predicate" if predicate is not None else ""
            arrived = [k for k, _ in probe.for_case(case_no)]
            raise TimeoutError(f"{wanted}{which} of case {case_no} did not arrive within {timeout:g} s "
                               f"({len(found)} did); the case's events meanwhile: {arrived}")
        time.sleep(0.05)


def handled(consumer, event_id):
    """Whether `consumer` ("intake.on_session_withdrawn") has processed the event: its entry in the
    inbox of the consumer's service."""
    import pymongo

    from services.common.config import settings
    s = settings()
    with pymongo.MongoClient(s.mongo_uri) as mc:
        inbox = mc[s.db_name(consumer.split(".", 1)[0])]["inbox"]
        return inbox.find_one({"_id": f"{consumer}:{event_id}"}, {"_id": 1}) is not None


def wait_handled(probe, case_no, key, consumer, timeout=30.0, predicate=None):
    """Wait until every event `key` of the case that has reached the probe (at least one) has been
    processed by `consumer` (see `handled`); returns their (routing key, payload)s."""
    deadline = time.monotonic() + timeout
    wait_event(probe, case_no, key, timeout, predicate)
    while True:
        found = events_of(probe, case_no, key, predicate)
        pending = [k for k, _, h in found if not handled(consumer, h.get("event_id", ""))]
        if not pending:
            return [(k, b) for k, b, _ in found]
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{consumer} did not process {pending} of case {case_no} within {timeout:g} s")
        time.sleep(0.1)


def desk_queue_depth(department, region):
    """The messages in a desk's queue, ready or in the desk's hands (the broker's count)."""
    import subprocess

    from services.common.config import settings
    from services.common.registry import desk_queue
    vhost = settings().amqp_uri.rsplit("/", 1)[1]
    out = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "messages"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == desk_queue(department, region) and parts[1].isdigit():
            return int(parts[1])
    raise LookupError(f"there is no queue {desk_queue(department, region)} in {vhost}")


def wait_desk_idle(probe, case_no, department, region, timeout=30.0, predicate=None):
    """Wait until the case's task for `department` has reached the probe (and so the desk's queue)
    and the desk has acknowledged everything in its queue: it has decided it, or left it to an
    officer. A desk keeps no inbox of its own; its queue is the record."""
    wait_event(probe, case_no, f"task_assigned.{department}.{region}", timeout, predicate)
    return wait_until(lambda: desk_queue_depth(department, region) == 0, timeout,
                      f"the {department} desk taking every task of its queue")


# --- items, as the catalog resolves them -------------------------------------------------------


def _describe(item):
    return f"{item.code} {item.name} ({item.department_code})"


def find_items(package, department=None, name_contains=None, issues=None, **fields):
    """The items of a resolved Package (catalog_pb2.Package) that are of `department`, whose name
    holds `name_contains`, whose result is the licence type `issues`, and whose other Item fields
    equal `fields` (inspection=True, optional=True, ...)."""
    out = []
    for item in package.items:
        if department is not None and item.department_code != department:
            continue
        if name_contains is not None and name_contains not in item.name:
            continue
        if issues is not None and item.result.license_type_code != issues:
            continue
        if any(getattr(item, name) != value for name, value in fields.items()):
            continue
        out.append(item)
    return out


def find_item(package, **criteria):
    """The one item of `package` that fits `criteria` (see find_items); LookupError naming the
    package's items when none or several do."""
    found = find_items(package, **criteria)
    if len(found) != 1:
        listed = "; ".join(_describe(i) for i in package.items)
        raise LookupError(f"{len(found)} items of {package.code} in {package.region_code} fit {criteria} "
                          f"(one expected); its items: {listed}")
    return found[0]


def items_of(client, package_code, region="440100", situations=None, **criteria):
    """The Items of the package as the running suite's catalog resolves it for `region` and the
    situation answers, that fit `criteria` (see find_items)."""
    return find_items(client.package(package_code, region, situations), **criteria)


def item_of(client, package_code, region="440100", situations=None, **criteria):
    """The code of the one item of the package (as the catalog resolves it for `region` and
    `situations`) that fits `criteria`: item_of(client, "XSECS", department="gaj") is 出生登记."""
    return find_item(client.package(package_code, region, situations), **criteria).code


def rate_when_rateable(client, case_no, applicant_id, **kwargs):
    """Rate as soon as evaluation has heard of the delivery (its worker takes delivery_completed, on
    its own, perhaps after intake did): FAILED_PRECONDITION until then; any other refusal is the answer."""
    return wait_until(lambda: client.rate(case_no, applicant_id, **kwargs), 20, f"a rating of {case_no} accepted",
                      ignore=(grpc.StatusCode.FAILED_PRECONDITION,))
