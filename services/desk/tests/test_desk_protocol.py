"""The desk protocol (protos/asyncapi/desk.yaml) is kept in step with the code: every field of the
messages a desk receives and sends is in the document's schema under the name it has in the JSON
(the proto field name: services.common.events.to_payload), with its JSON type, and the schema has
no field the protos do not; the queue, exchange, routing keys and permissions are the ones the code
and the topology use."""
import pathlib

import pytest
import yaml
from google.protobuf import descriptor

from onething.common.v1 import common_pb2
from onething.joint_review.v1 import events_pb2
from services.common import registry
from services.common.events import to_payload

ROOT = pathlib.Path(__file__).resolve().parents[3]
DOCUMENT = ROOT / "protos" / "asyncapi" / "desk.yaml"
FD = descriptor.FieldDescriptor
SCALARS = {FD.TYPE_STRING: ("string", None), FD.TYPE_BOOL: ("boolean", None), FD.TYPE_INT32: ("integer", "int32"),
           FD.TYPE_INT64: ("string", "int64"), FD.TYPE_BYTES: ("string", None), FD.TYPE_ENUM: ("string", None)}
# the messages of the protocol, and those they hold
MESSAGES = {"TaskAssigned": events_pb2.TaskAssigned, "DeskOpinion": events_pb2.DeskOpinion,
            "TaskLicense": events_pb2.TaskLicense, "MaterialRef": common_pb2.MaterialRef}


@pytest.fixture(scope="module")
def doc():
    return yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))


def schema_of(doc, ref):
    assert ref.startswith("#/components/schemas/"), ref
    return doc["components"]["schemas"][ref.rsplit("/", 1)[1]]


def check_message(doc, cls, schema, seen):
    """Every field of `cls` in `schema` with its JSON type and the other way round; nested messages
    by their $ref, each checked once. Returns what is wrong."""
    name = cls.DESCRIPTOR.name
    if name in seen:
        return []
    seen.add(name)
    fields = {f.name: f for f in cls.DESCRIPTOR.fields}
    props = schema.get("properties", {})
    wrong = [f"{name}.{n}: in the protos, not in the document" for n in fields.keys() - props.keys()]
    wrong += [f"{name}.{n}: in the document, not in the protos" for n in props.keys() - fields.keys()]
    for field_name in fields.keys() & props.keys():
        f, prop = fields[field_name], props[field_name]
        if f.is_repeated:
            if prop.get("type") != "array":
                wrong.append(f"{name}.{field_name}: repeated in the protos, not an array in the document")
                continue
            prop = prop["items"]
        if f.type == FD.TYPE_MESSAGE:
            target = MESSAGES.get(f.message_type.name)
            if "$ref" not in prop or target is None or not prop["$ref"].endswith(f"/{f.message_type.name}"):
                wrong.append(f"{name}.{field_name}: should refer to #/components/schemas/{f.message_type.name}")
                continue
            wrong += check_message(doc, target, schema_of(doc, prop["$ref"]), seen)
            continue
        json_type, fmt = SCALARS[f.type]
        if prop.get("type") != json_type or (fmt and prop.get("format") != fmt):
            wrong.append(f"{name}.{field_name}: {json_type}{f' ({fmt})' if fmt else ''} in JSON, "
                         f"the document says {prop.get('type')} {prop.get('format', '')}")
        if f.type == FD.TYPE_ENUM:
            values = [v.name for v in f.enum_type.values if v.number != 0]
            if prop.get("enum") != values:
                wrong.append(f"{name}.{field_name}: the values are {values}, the document says {prop.get('enum')}")
    return wrong


@pytest.mark.parametrize("message, channel, operation", [
    ("TaskAssigned", "taskQueue", "receiveTask"),
    ("DeskOpinion", "opinions", "sendOpinion"),
])
def test_each_message_of_the_protocol_is_its_proto_field_for_field(doc, message, channel, operation):
    [(_, msg)] = doc["channels"][channel]["messages"].items()
    msg = doc["components"]["messages"][msg["$ref"].rsplit("/", 1)[1]]
    assert msg["name"] == message
    assert check_message(doc, MESSAGES[message], schema_of(doc, msg["payload"]["$ref"]), set()) == []
    [ref] = doc["operations"][operation]["messages"]
    assert ref["$ref"].startswith(f"#/channels/{channel}/messages/")


def test_the_check_itself_notices_a_field_missing_or_left_over_or_mistyped(doc):
    schema = yaml.safe_load(yaml.safe_dump(schema_of(doc, "#/components/schemas/DeskOpinion")))
    del schema["properties"]["round"]
    schema["properties"]["decided_by"] = {"type": "string"}
    schema["properties"]["defects"] = {"type": "string"}
    assert sorted(check_message(doc, events_pb2.DeskOpinion, schema, set())) == [
        "DeskOpinion.decided_by: in the document, not in the protos",
        "DeskOpinion.defects: repeated in the protos, not an array in the document",
        "DeskOpinion.round: in the protos, not in the document"]


def full(cls, depth=0):
    """A message of `cls` with every field set (each repeated field twice, nested ones filled)."""
    msg = cls()
    for f in cls.DESCRIPTOR.fields:
        if f.type == FD.TYPE_MESSAGE:
            values = [full(MESSAGES[f.message_type.name], depth + 1) for _ in range(2 if f.is_repeated else 1)]
        elif f.type == FD.TYPE_ENUM:
            values = [f.enum_type.values[-1].number]
        elif f.type == FD.TYPE_BOOL:
            values = [True]
        elif f.type in (FD.TYPE_INT32, FD.TYPE_INT64):
            values = [7]
        else:
            values = [f"{f.name}-value"]
        if f.is_repeated:
            getattr(msg, f.name).extend(values * (1 if f.type == FD.TYPE_MESSAGE else 2))
        elif f.type == FD.TYPE_MESSAGE:
            getattr(msg, f.name).CopyFrom(values[0])
        else:
            setattr(msg, f.name, values[0])
    return msg


@pytest.mark.parametrize("message", ["TaskAssigned", "DeskOpinion"])
def test_a_message_as_the_platform_sends_it_is_valid_under_the_documents_schema(doc, message):
    import jsonschema
    payload = to_payload(full(MESSAGES[message]))
    schema = {"$ref": f"#/components/schemas/{message}", "components": doc["components"]}
    jsonschema.Draft202012Validator(schema).validate(payload)
    assert set(payload) == set(doc["components"]["schemas"][message]["properties"])  # every field, as JSON names it
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(dict(payload, case_no=17))


def test_the_names_are_the_ones_the_code_uses(doc):
    from services.joint_review.handlers import task_routing_key
    queue = doc["channels"]["taskQueue"]
    assert queue["address"] == registry.desk_queue("{department}", "{region}")
    assert queue["bindings"]["amqp"]["queue"]["name"] == queue["address"] and queue["bindings"]["amqp"]["queue"]["durable"]
    assert queue["x-bound-to"]["exchange"] == registry.service("joint_review").exchange
    assert queue["x-bound-to"]["routingKey"] == task_routing_key("{department}", "{region}")
    opinions = doc["channels"]["opinions"]
    assert opinions["address"] == registry.opinion_routing_key("{department}", "{region}", "{site}")
    assert opinions["bindings"]["amqp"]["exchange"]["name"] == registry.DESK_EXCHANGE
    assert doc["operations"]["sendOpinion"]["bindings"]["amqp"]["userId"] == registry.desk_broker_user(
        "{department}", "{region}")
    assert doc["operations"]["sendOpinion"]["bindings"]["amqp"]["deliveryMode"] == 2


def test_the_credentials_are_the_ones_the_topology_grants(doc):
    topology = yaml.safe_load((ROOT / "infra" / "topology.yaml").read_text(encoding="utf-8"))["desk"]
    scheme = doc["components"]["securitySchemes"]["deskUser"]
    assert scheme["x-rabbitmq-permissions"] == topology["permissions"]
    [granted] = topology["topic_permissions"]
    [documented] = scheme["x-rabbitmq-topic-permissions"]
    # the topology's patterns are templates ({{6}} is a literal {6} once filled in)
    assert documented == {**granted, "write": granted["write"].replace("{{", "{").replace("}}", "}")}
    assert topology["queue"] == doc["channels"]["taskQueue"]["address"]
    assert topology["bind"] == {"exchange": doc["channels"]["taskQueue"]["x-bound-to"]["exchange"],
                                "key": doc["channels"]["taskQueue"]["x-bound-to"]["routingKey"]}
