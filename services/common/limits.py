"""How long and how many: the one table of size limits for every request field, and the generic
walk that checks a request message against it before anything else happens.

Every string, bytes, repeated and map field of every request message has a limit. It comes from,
in this order: FIELDS (the proto full field name), BY_NAME (the field's short name, the same in
every service: `case_no`, `region_code`, ...), and DEFAULT (a field nobody listed still has one).
Each names a KIND; KINDS says what the kind allows. The walk also refuses an enum number the
proto does not declare (proto3 enums accept unknown numbers on the wire) and finds the field that
carries invalid UTF-8 when a request cannot be parsed.

Pure Python over protobuf descriptors: no gRPC. The api role's interceptor
(services/common/grpc_server.py) calls `check_message` on every request it parses.
"""
import json
import re
from dataclasses import dataclass

from google.protobuf.descriptor import FieldDescriptor

from services.common.errors import FieldViolation
from services.common.privacy import mask_id

EXCERPT = 32          # at most this many characters of the caller's input are echoed back
MAX_VIOLATIONS = 10   # at most this many are reported for one request


@dataclass(frozen=True)
class Limit:
    """`size`: characters of a string (code points), bytes of a bytes field, per element of a
    repeated field and per value of a map; `count`: elements of a repeated field or entries of a
    map; `key_size`: characters of a map key."""
    size: int | None = None
    count: int | None = None
    key_size: int | None = None
    zh: str = ""          # what the field is, for the Chinese message


KINDS = {
    # identifiers and codes
    "id": Limit(size=64, zh="编号"),                    # upload, licence, key ids
    "case_no": Limit(size=64, zh="办件编号"),
    "code": Limit(size=64, zh="代码"),                  # package, item, material, department, licence type
    "region": Limit(size=12, zh="行政区划代码"),
    "person_id": Limit(size=32, zh="证件号码"),         # citizen ID number or unified social credit code
    "idempotency_key": Limit(size=128, zh="幂等键"),
    "digest": Limit(size=64, zh="文件校验值"),
    "page_token": Limit(size=512, zh="分页标记"),
    "pickup_code": Limit(size=16, zh="取件码"),
    "tracking_number": Limit(size=64, zh="快递单号"),
    "carrier": Limit(size=32, zh="快递公司"),
    "channel": Limit(size=32, zh="评价渠道"),
    "timestamp": Limit(size=40, zh="时间"),
    # people and places
    "name": Limit(size=100, zh="姓名"),
    "phone": Limit(size=32, zh="电话号码"),
    "address_line": Limit(size=200, zh="详细地址"),
    "postcode": Limit(size=16, zh="邮政编码"),
    "place": Limit(size=200, zh="地点"),
    # files
    "file_name": Limit(size=255, zh="文件名"),
    "content_type": Limit(size=128, zh="文件类型"),
    "chunk": Limit(size=4 * 1024 * 1024, zh="文件分片"),
    "licence_document": Limit(size=1024 * 1024, zh="电子证照文件"),  # a licence PDF (elicense's are under 10 KB)
    # free text
    "reason": Limit(size=500, zh="理由"),
    "comment": Limit(size=2000, zh="说明"),             # comments, notes, results, findings
    # collections
    "form": Limit(count=200, key_size=64, size=1000, zh="表单"),
    "situations": Limit(count=50, key_size=64, size=64, zh="情形"),
    "dimensions": Limit(count=20, key_size=64, zh="评价维度"),
    "materials": Limit(count=100, zh="材料"),
    "parties": Limit(count=20, zh="当事人"),
    "role": Limit(size=32, zh="身份"),
    "code_type": Limit(size=8, zh="证件类型"),
    "codes": Limit(count=100, size=64, zh="代码列表"),
    "defects": Limit(count=50, size=500, zh="问题清单"),
}

# a field's short name -> its kind, wherever it appears
BY_NAME = {
    "case_no": "case_no",
    "code": "code", "package_code": "code", "item_code": "code", "material_code": "code",
    "department_code": "code", "type_code": "code",
    "region_code": "region",
    "upload_id": "id", "license_id": "id", "key_id": "id",
    "id_number": "person_id", "holder_code": "person_id",
    "idempotency_key": "idempotency_key",
    "sha256": "digest",
    "page_token": "page_token",
    "pickup_code": "pickup_code",
    "tracking_number": "tracking_number",
    "carrier": "carrier",
    "channel": "channel",
    "at": "timestamp", "rated_from": "timestamp", "rated_to": "timestamp",
    "name": "name", "recipient": "name", "signed_by": "name",
    "phone": "phone",
    "line": "address_line",
    "postcode": "postcode",
    "place": "place",
    "file_name": "file_name",
    "content_type": "content_type",
    "chunk": "chunk",
    "reason": "reason",
    "comment": "comment", "note": "comment", "notes": "comment", "result": "comment",
    "form": "form", "values": "form",
    "situations": "situations",
    "dimensions": "dimensions",
    "materials": "materials",
    "parties": "parties", "role": "role", "code_type": "code_type",
    "material_codes": "codes", "held_license_types": "codes",
    "defects": "defects",
}

# proto full field name -> kind, where one field differs from others of its name
FIELDS = {
    "onething.joint_review.v1.SuspendClockRequest.reason": "code",   # HEARING, TESTING, EXPERT_INSPECTION
    "onething.elicense.v1.VerifyLicenseRequest.token": "id",        # the QR code's verification token
    "onething.elicense.v1.VerifyLicenseDocumentRequest.document": "licence_document",
}

# fields no table names
DEFAULT = {"string": Limit(size=256), "bytes": Limit(size=1024 * 1024),
           "repeated": Limit(count=100), "map": Limit(count=100, key_size=64)}

_ZH_FIELD = {
    "case_no": "办件编号", "package_code": "事项代码", "code": "代码", "region_code": "行政区划代码",
    "id_number": "证件号码", "name": "姓名", "phone": "电话号码",
    "form": "表单", "situations": "情形", "materials": "材料", "idempotency_key": "幂等键",
    "file_name": "文件名", "material_code": "材料代码", "upload_id": "上传编号", "reason": "理由",
    "comment": "评价内容", "note": "回访记录", "result": "整改结果", "notes": "勘验意见",
    "line": "详细地址", "recipient": "收件人", "postcode": "邮政编码", "defects": "问题清单",
    "material_codes": "材料代码", "license_id": "证照标识", "parties": "当事人", "grade": "评价等级", "channel": "渠道",
    "decision": "审查意见", "state": "任务状态", "audience": "服务对象", "group_by": "统计维度",
}


def is_map(field):
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def kind_of(field):
    """The kind of a field descriptor, or None when only DEFAULT applies."""
    return FIELDS.get(field.full_name) or BY_NAME.get(field.name)


def limit_for(field):
    """The limit of a string, bytes, repeated or map field (DEFAULT when no table names it)."""
    kind = kind_of(field)
    if kind is not None:
        return KINDS[kind]
    if is_map(field):
        return DEFAULT["map"]
    if field.is_repeated and field.type not in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES):
        return DEFAULT["repeated"]
    if field.type == FieldDescriptor.TYPE_BYTES:
        return DEFAULT["bytes"]
    if field.type == FieldDescriptor.TYPE_STRING:
        return DEFAULT["string"] if not field.is_repeated else Limit(size=DEFAULT["string"].size,
                                                                     count=DEFAULT["repeated"].count)
    return Limit()


def excerpt(value, n=EXCERPT):
    """At most `n` characters of the caller's input, quoted, '…' when cut."""
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value[:n]).hex()
        return f"0x{value}…"
    # a long run of digits may be (the start of) an identity or phone number: masked, since refusals
    # end up in logs and spans too (services.common.privacy)
    cut = re.sub(r"[0-9]{11,}[0-9Xx]?", lambda m: mask_id(m.group(0)), value[:n])
    return json.dumps(cut, ensure_ascii=False) + ("…" if len(value) > n else "")


def _zh_name(field, path):
    label = _ZH_FIELD.get(field.name) or (KINDS[kind_of(field)].zh if kind_of(field) else "")
    return f"“{label}”（{path}）" if label else f"字段 {path}"


def _count_violation(field, path, n, most):
    return FieldViolation(path, f"{path} has {n} entries; at most {most} are allowed",
                          f"{_zh_name(field, path)}最多 {most} 项，本次提交了 {n} 项。", "TOO_MANY")


def _size_violation(field, path, value, most):
    if isinstance(value, (bytes, bytearray)):
        return FieldViolation(path, f"{path} is {len(value)} bytes long; at most {most} bytes are allowed",
                              f"{_zh_name(field, path)}最多 {most} 字节。", "TOO_LONG")
    return FieldViolation(path, f"{path} is {len(value)} characters long; at most {most} are allowed "
                                f"(it starts {excerpt(value)})",
                          f"{_zh_name(field, path)}最多 {most} 个字符，本次填写了 {len(value)} 个字符。", "TOO_LONG")


def _enum_violation(field, path, number):
    declared = [v.number for v in field.enum_type.values]
    return FieldViolation(path, f"{path} is {number}, which is not a value of {field.enum_type.full_name} "
                                f"(declared: {', '.join(map(str, declared))})",
                          f"{_zh_name(field, path)}的取值 {number} 不在允许范围内。", "UNKNOWN_ENUM_VALUE")


def _key_path(path, key):
    return f"{path}[{excerpt(key) if isinstance(key, str) else key}]"


def check_message(message, prefix=""):
    """Every violation of the limits and enum ranges in `message` and the messages inside it
    (repeated, map values), at most MAX_VIOLATIONS, in field order. Empty when all is well."""
    out: list = []
    _walk(message, prefix, out)
    return out[:MAX_VIOLATIONS]


def _walk(message, prefix, out):
    for field, value in message.ListFields():
        if len(out) >= MAX_VIOLATIONS:
            return
        path = f"{prefix}{field.name}"
        if is_map(field):
            _check_map(field, value, path, out)
        elif field.is_repeated:
            limit = limit_for(field)
            if limit.count is not None and len(value) > limit.count:
                out.append(_count_violation(field, path, len(value), limit.count))
                continue  # its elements are not looked at: there are too many of them
            for i, element in enumerate(value):
                _check_value(field, element, f"{path}[{i}]", limit, out)
        else:
            _check_value(field, value, path, limit_for(field), out)


def _check_value(field, value, path, limit, out):
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        _walk(value, f"{path}.", out)
    elif field.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES):
        if limit.size is not None and len(value) > limit.size:
            out.append(_size_violation(field, path, value, limit.size))
    elif field.type == FieldDescriptor.TYPE_ENUM:
        if field.enum_type.values_by_number.get(value) is None:
            out.append(_enum_violation(field, path, value))


def _check_map(field, mapping, path, out):
    limit = limit_for(field)
    if limit.count is not None and len(mapping) > limit.count:
        out.append(_count_violation(field, path, len(mapping), limit.count))
        return
    value_field = field.message_type.fields_by_name["value"]
    for key in sorted(mapping):
        if len(out) >= MAX_VIOLATIONS:
            return
        entry = _key_path(path, key)
        if isinstance(key, str) and limit.key_size is not None and len(key) > limit.key_size:
            out.append(FieldViolation(entry, f"a key of {path} is {len(key)} characters long; at most "
                                             f"{limit.key_size} are allowed",
                                      f"{_zh_name(field, path)}的名称最多 {limit.key_size} 个字符。", "KEY_TOO_LONG"))
            continue
        value = mapping[key]
        if value_field.type == FieldDescriptor.TYPE_ENUM:
            _check_value(value_field, value, entry, limit, out)
        elif value_field.type == FieldDescriptor.TYPE_MESSAGE:
            _walk(value, f"{entry}.", out)
        elif value_field.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES):
            if limit.size is not None and len(value) > limit.size:
                out.append(_size_violation(field, entry, value, limit.size))


# --- requests that cannot be parsed ------------------------------------------------------------

class _Malformed(Exception):
    pass


def _varint(data, pos):
    result, shift = 0, 0
    while True:
        if pos >= len(data) or shift > 63:
            raise _Malformed()
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def invalid_utf8_path(descriptor, data, prefix="", depth=0):
    """The path of the first string field in the wire bytes `data` of a `descriptor` message whose
    bytes are not valid UTF-8 (`applicant.name`, `materials[?].upload_id`), or None when there is
    none or the bytes are not protobuf at all."""
    if depth > 32:
        return None
    pos, counts = 0, dict[str, int]()
    try:
        while pos < len(data):
            tag, pos = _varint(data, pos)
            number, wire = tag >> 3, tag & 7
            if wire == 0:
                _, pos = _varint(data, pos)
            elif wire == 1:
                pos += 8
            elif wire == 5:
                pos += 4
            elif wire == 2:
                size, pos = _varint(data, pos)
                chunk, pos = data[pos:pos + size], pos + size
                if pos > len(data):
                    return None
                field = descriptor.fields_by_number.get(number)
                if field is None:
                    continue
                index = counts.get(number, 0)
                counts[number] = index + 1
                path = f"{prefix}{field.name}" + (f"[{index}]" if field.is_repeated and not is_map(field) else "")
                if field.type == FieldDescriptor.TYPE_STRING:
                    try:
                        bytes(chunk).decode("utf-8")
                    except UnicodeDecodeError:
                        return path
                elif field.type == FieldDescriptor.TYPE_MESSAGE:
                    if is_map(field):
                        path = f"{prefix}{field.name}[…]"
                    found = invalid_utf8_path(field.message_type, chunk, f"{path}.", depth + 1)
                    if found:
                        return found.replace("[…].key", "[…] (a key)").replace("[…].value", "[…]")
            else:
                return None
    except _Malformed:
        return None
    return None
