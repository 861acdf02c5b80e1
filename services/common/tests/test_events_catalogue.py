"""Nothing stuck: every event type the services publish has a consumer, every consumer listens to
an event that is published, each is a message of the publisher's events.proto, and README's
"Events catalogue" says exactly that (read from the source, no servers)."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[3]
SERVICES = ROOT / "services"
PUBLISH = re.compile(r'outbox_entry\(\s*"([a-z_]+)"')
# a service may name its event types in one table (elicense's codec: {message class: event type})
PUBLISH_TABLE = re.compile(r"EVENT_TYPES\s*=\s*\{([^}]*)\}")
# a consumer may bind a pattern after the event type (elicense: "signing_key_published.*", every site's keys)
CONSUME = re.compile(r'@event_handler\(\s*"([a-z_]+)",\s*(?:"([a-z_]+)(?:\.[a-z0-9_.*#]+)?"|(task_routing_key)\()')


def _source_files():
    return [p for p in SERVICES.glob("*/*.py") if "tests" not in p.parts]


def published():
    """{event type: publishing service}, from the outbox entries in the services' code."""
    found = {}
    for path in _source_files():
        text = path.read_text(encoding="utf-8")
        for event in PUBLISH.findall(text):
            found[event] = path.parent.name
        for table in PUBLISH_TABLE.findall(text):
            for event in re.findall(r'"([a-z_]+)"', table):
                found[event] = path.parent.name
        if "outbox_entry(task_routing_key(" in text:  # task_assigned.<department>.<region>
            found["task_assigned"] = path.parent.name
    return found


def consumed():
    """{(source service, event type): {consuming process}}, from the workers and the desk."""
    found = {}
    for path in SERVICES.glob("*/worker.py"):
        for source, event, _routed in CONSUME.findall(path.read_text(encoding="utf-8")):
            found.setdefault((source, event or "task_assigned"), set()).add(path.parent.name)
    # a department's desk (services/desk) consumes its own queue, which the topology binds to
    # joint_review's task_assigned.<department>.<region>
    if "desk_queue(" in (SERVICES / "desk" / "desk.py").read_text(encoding="utf-8"):
        found.setdefault(("joint_review", "task_assigned"), set()).add("desk")
    return found


def catalogue():
    """{event type: (publisher, {consumers})} from README's table."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Events catalogue", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"\| `([a-z_]+)[^`]*` \| ([a-z_]+)[^|]* \| (.*) \|$", line)
        if m:
            rows[m.group(1)] = (m.group(2), set(re.findall(r"\*\*([a-z_]+)\*\*", m.group(3))))
    return rows


def test_every_published_event_has_a_consumer_and_every_consumer_a_publisher():
    pub, con = published(), consumed()
    assert {(service, event) for event, service in pub.items()} == set(con)
    assert len(pub) >= 19


def test_every_event_is_a_message_of_its_publishers_events_proto():
    for event, service in published().items():
        name = "".join(part.title() for part in event.split("_"))
        proto = (ROOT / "protos" / "onething" / service / "v1" / "events.proto").read_text(encoding="utf-8")
        assert f"message {name} {{" in proto, (event, service)


def test_readme_catalogue_is_the_code():
    pub, con = published(), consumed()
    rows = catalogue()
    assert set(rows) == set(pub), set(rows) ^ set(pub)
    for event, (publisher, consumers) in rows.items():
        assert publisher == pub[event], event
        assert consumers == con[(publisher, event)], event

