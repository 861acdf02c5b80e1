"""Event payloads are protobuf messages sent as JSON dicts, so gRPC and AMQP share one schema."""
from google.protobuf import json_format


def to_payload(message):
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def from_payload(message_cls, payload):
    return json_format.ParseDict(payload, message_cls(), ignore_unknown_fields=True)
