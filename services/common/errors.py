"""Errors the domain raises; the gRPC layer maps each to its status code.

Messages are written for the person who made the request.
"""


class DomainError(Exception):
    code = "INTERNAL"

    def __init__(self, message):
        super().__init__(message)
        self.message = message


class InvalidArgument(DomainError):
    code = "INVALID_ARGUMENT"


class NotFound(DomainError):
    code = "NOT_FOUND"


class FailedPrecondition(DomainError):
    code = "FAILED_PRECONDITION"


class AlreadyExists(DomainError):
    code = "ALREADY_EXISTS"


class PermissionDenied(DomainError):
    code = "PERMISSION_DENIED"


class Unavailable(DomainError):
    code = "UNAVAILABLE"


class TooLarge(DomainError):
    code = "RESOURCE_EXHAUSTED"


class Unauthenticated(DomainError):
    code = "UNAUTHENTICATED"
