"""Which failures are outages: a store, the object storage or the broker not answering, or a call
that timed out. An outage is retried (with backoff) and never counted against a message or
reported to a caller as its own mistake; anything else is a refusal or a bug."""


def _outage_types():
    import socket

    import urllib3
    from pymongo.errors import AutoReconnect, ConnectionFailure, NetworkTimeout, ServerSelectionTimeoutError
    types = [AutoReconnect, ConnectionFailure, NetworkTimeout, ServerSelectionTimeoutError,
             urllib3.exceptions.HTTPError, ConnectionError, TimeoutError, socket.timeout, socket.gaierror]
    try:
        import amqp.exceptions
        import kombu.exceptions
        types += [kombu.exceptions.OperationalError, amqp.exceptions.ConnectionError,
                  amqp.exceptions.RecoverableConnectionError]
    except ImportError:  # pragma: no cover - the api role has both
        pass
    return tuple(types)


OUTAGE_TYPES = _outage_types()
_REMOTE_OUTAGES = {t.__name__ for t in OUTAGE_TYPES} | {
    "Unavailable", "CallTimedOut", "Timeout", "RpcTimeout", "NotPrimaryError", "ExecutionTimeout",
    "WaitQueueTimeoutError", "ContainerBeingKilled", "MaxRetryError", "ServerError"}


def is_outage(exc):
    """True when `exc` says something the process depends on is away, not that the work is wrong."""
    from services.common.errors import Unavailable
    if isinstance(exc, (Unavailable, *OUTAGE_TYPES)):
        return True
    name = type(exc).__name__
    if name == "RemoteError":  # a bus call whose far side hit an outage is an outage here too
        remote = getattr(exc, "exc_type", "") or ""
        return remote in _REMOTE_OUTAGES
    # eventlet.Timeout and nameko's RpcTimeout / reply-queue losses, without importing eventlet here
    if name in ("Timeout", "RpcTimeout", "UnknownService", "ReplyQueueExpiredWithPendingReplies"):
        return True
    try:
        from minio.error import S3Error, ServerError
        if isinstance(exc, ServerError):
            return True
        if isinstance(exc, S3Error) and exc.code in ("SlowDown", "ServiceUnavailable", "InternalError"):
            return True
    except ImportError:  # pragma: no cover
        pass
    return False
