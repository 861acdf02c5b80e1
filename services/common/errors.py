"""Errors the domain raises; the gRPC layer maps each to its status code.

Messages are written for the person who made the request. A refusal may also carry the fields it
is about (`violations`, sent as google.rpc.BadRequest) and a message in Chinese for the person at
the window (`zh`, sent as google.rpc.LocalizedMessage, locale zh-CN); without one the gRPC layer
sends the fallback of the status code (`ZH_FALLBACK`). Nothing here knows gRPC.
"""
from dataclasses import dataclass

# the message for the person at the window when a refusal brings none of its own
ZH_FALLBACK = {
    "OK": "办理成功。",
    "CANCELLED": "操作已取消。",
    "UNKNOWN": "系统出现未知错误，请稍后再试或联系窗口工作人员。",
    "INVALID_ARGUMENT": "提交的内容有误，请按提示核对后重新提交。",
    "DEADLINE_EXCEEDED": "办理超时，请重新操作。",
    "NOT_FOUND": "未找到相关记录，请核对编号后再试。",
    "ALREADY_EXISTS": "该事项已经办理过，请勿重复提交。",
    "PERMISSION_DENIED": "您无权办理此项业务。",
    "RESOURCE_EXHAUSTED": "当前办理人数较多或文件过大，请稍后再试。",
    "FAILED_PRECONDITION": "当前状态下不能办理此项业务，请按提示补齐条件后再试。",
    "ABORTED": "办理被中断，请重新操作。",
    "OUT_OF_RANGE": "填写的数值超出允许范围，请核对后重新提交。",
    "UNIMPLEMENTED": "暂不支持此项业务。",
    "INTERNAL": "系统出现错误，请联系窗口工作人员处理。",
    "UNAVAILABLE": "系统暂时无法办理，请稍后再试。",
    "DATA_LOSS": "数据出现异常，请联系窗口工作人员处理。",
    "UNAUTHENTICATED": "请先登录后再办理。",
}


@dataclass(frozen=True)
class FieldViolation:
    """One field of the request that is wrong, and why: `field` is its path in the request
    (`applicant.name`, `materials[2].upload_id`, `form["birth_date"]`), `description` says why in
    English, `zh` in Chinese, `reason` is a short UPPER_SNAKE_CASE word for programs."""
    field: str
    description: str
    zh: str = ""
    reason: str = ""


class DomainError(Exception):
    code = "INTERNAL"

    def __init__(self, message, violations=(), zh=None, retry_after_s=None):
        super().__init__(message)
        self.message = message
        self.violations = tuple(v if isinstance(v, FieldViolation) else FieldViolation(*v) for v in violations or ())
        self.zh = zh or (self.violations[0].zh if len(self.violations) == 1 and self.violations[0].zh else None)
        self.retry_after_s = retry_after_s

    @property
    def zh_message(self):
        """The Chinese message for the person at the window: the error's own or its code's fallback."""
        return self.zh or ZH_FALLBACK.get(self.code, ZH_FALLBACK["INTERNAL"])


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


class Busy(DomainError):
    """Capacity is taken (too many streams at once): RESOURCE_EXHAUSTED, worth a retry later."""
    code = "RESOURCE_EXHAUSTED"


class DeadlineExceeded(DomainError):
    """A stream sent nothing for too long, or lasted longer than the server allows."""
    code = "DEADLINE_EXCEEDED"


class Unauthenticated(DomainError):
    code = "UNAUTHENTICATED"
