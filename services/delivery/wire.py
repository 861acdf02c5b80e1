"""The delivery's moments on the wire: the store keeps ISO 8601 strings (datetime.isoformat(), as
it always has); the api and the events carry google.protobuf.Timestamp. The conversions are
services.common.wire's (a moment without an offset is UTC; "" is unset and back); these are the
names delivery's code calls them by."""
from services.common import wire

# an ISO 8601 moment as a Timestamp; None for "" (unset)
timestamp_of_iso = wire.timestamp
# an ISO 8601 moment as the RFC 3339 string json_format reads into a Timestamp; None for ""
rfc3339_of_iso = wire.rfc3339


def iso_of_timestamp(message, name):
    """The Timestamp field `name` of `message` as an ISO 8601 string in UTC (as the store writes
    them); "" when the field is not set."""
    return wire.iso(wire.field(message, name))
