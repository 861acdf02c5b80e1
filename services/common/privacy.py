"""Personal data kept small: identity numbers and phones masked wherever text leaves a handler for
a log line, a span or a message a person reads.

    mask_id("44010619900101123X")   -> "4401**********123X"
    mask_phone("13812340000")       -> "138****0000"
    mask_text("ID 44010619900101123X, tel 13812340000") -> "ID 4401**********123X, tel 138****0000"

Code should not put personal data into logs, span attributes or error messages in the first place
(name the field, not its value). `install_log_masking()` is the safety net behind that rule: every
log record of the process (message, arguments and traceback) goes through `mask_text`, and the
span exporter masks span attributes and status descriptions the same way."""
import logging
import re
import traceback

from services.common.china import MOBILE_PATTERN

# 17 digits and a digit or X (GB 11643), not inside a longer run of letters and digits
CITIZEN_ID_RE = re.compile(r"(?<![0-9A-Za-z])[0-9]{17}[0-9Xx](?![0-9A-Za-z])")
# a mainland mobile number, 11 digits starting 13-19, not inside a longer run
PHONE_RE = re.compile(rf"(?<![0-9A-Za-z]){MOBILE_PATTERN}(?![0-9A-Za-z])")


def mask_id(value):
    """A citizen ID number (or any identifier) with its middle hidden: 4401**********123X."""
    value = "" if value is None else str(value)
    if len(value) <= 8:
        return "*" * len(value)
    return value[:4] + "*" * (len(value) - 8) + value[-4:]


def mask_phone(value):
    """A phone number with its middle hidden: 138****0000."""
    value = "" if value is None else str(value)
    if len(value) <= 7:
        return "*" * len(value)
    return value[:3] + "*" * (len(value) - 7) + value[-4:]


# both an ID number and a mobile number hold eleven digits in a row: text without such a run (most
# log lines and span attributes) is given back as it is, the same object, without the substitutions
_DIGIT_RUN_RE = re.compile(r"[0-9]{11}")


def mask_text(text):
    """Free text with every citizen ID number and mobile number in it masked (the same object when
    there is nothing to mask)."""
    if not isinstance(text, str) or not text or not _DIGIT_RUN_RE.search(text):
        return text
    text = CITIZEN_ID_RE.sub(lambda m: mask_id(m.group(0)), text)
    return PHONE_RE.sub(lambda m: mask_phone(m.group(0)), text)


def contains_personal_data(text):
    """True when `text` holds a full citizen ID number or mobile number (for tests and checks)."""
    return bool(isinstance(text, str) and (CITIZEN_ID_RE.search(text) or PHONE_RE.search(text)))


_installed = False


def install_log_masking():
    """Mask identity numbers and phones in every log record this process makes, whichever logger
    and handler it goes to: the message is formatted and masked when the record is made, and so is
    the traceback of a record with exc_info. Idempotent."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs):
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:
            return record
        masked = mask_text(message)
        if masked != message or record.args:
            record.msg, record.args = masked, ()
        if record.exc_info and not record.exc_text:
            try:
                record.exc_text = mask_text("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
            except Exception:
                pass
        return record

    logging.setLogRecordFactory(factory)
    _installed = True
