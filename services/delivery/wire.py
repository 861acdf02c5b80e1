"""The delivery's moments on the wire: the store keeps ISO 8601 strings (datetime.isoformat(), as
it always has); the api and the events carry google.protobuf.Timestamp. Encoded here, once."""
import datetime

from google.protobuf.timestamp_pb2 import Timestamp


def timestamp_of_iso(text):
    """An ISO 8601 moment as a Timestamp; None for "" (unset). A moment without an offset is UTC."""
    if not text:
        return None
    moment = datetime.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    ts = Timestamp()
    ts.FromDatetime(moment)
    return ts


def iso_of_timestamp(message, name):
    """The Timestamp field `name` of `message` as an ISO 8601 string in UTC (as the store writes
    them); "" when the field is not set."""
    if not message.HasField(name):
        return ""
    return getattr(message, name).ToDatetime(tzinfo=datetime.UTC).isoformat()


def rfc3339_of_iso(text):
    """An ISO 8601 moment as the RFC 3339 string json_format reads into a Timestamp; None for ""."""
    ts = timestamp_of_iso(text)
    return None if ts is None else ts.ToJsonString()
