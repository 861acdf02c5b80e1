"""Personal data kept small: masks, the log-record and span safety nets, and the refusals that used
to repeat identity numbers, phones and form values back (into logs and spans)."""
import json
import logging

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from services.common import ids, privacy, telemetry
from services.common.address import check_address
from services.common.errors import InvalidArgument
from services.intake import domain as intake_domain

CITIZEN = "11010519491231002X"
PHONE = "13812340000"


def test_masks():
    assert privacy.mask_id("44010619900101123X") == "4401**********123X"
    assert privacy.mask_phone("13800000000") == "138****0000"
    assert privacy.mask_id("") == "" and privacy.mask_id("abc") == "***"
    text = f"身份证{CITIZEN}，电话 {PHONE}; case 440100XSECS202611260001 trace 0af7651916cd43dd8448eb211c80319c"
    assert privacy.mask_text(text) == ("身份证1101**********002X，电话 138****0000; case 440100XSECS202611260001 "
                                       "trace 0af7651916cd43dd8448eb211c80319c")
    # longer digit runs (timestamps in ns, licence serials inside identifiers) are left alone
    assert privacy.mask_text("1732612345678901234 1.2.156.3005.2.CSYXZM.440100WSJK.202400000001.1.K") == \
        "1732612345678901234 1.2.156.3005.2.CSYXZM.440100WSJK.202400000001.1.K"
    assert privacy.contains_personal_data(CITIZEN) and not privacy.contains_personal_data(privacy.mask_id(CITIZEN))


@pytest.mark.parametrize("text", ["case 440100XSECS202611260001 done", "1381234000 (ten digits)", "", "纯中文"])
def test_text_with_nothing_to_mask_is_given_back_as_it_is(text):
    assert privacy.mask_text(text) is text


def test_a_span_with_nothing_to_mask_is_exported_as_it_is_and_one_with_something_as_a_masked_copy():
    from opentelemetry.sdk.trace import Event, ReadableSpan

    def span(value, note):
        return ReadableSpan(name="GetCase", attributes={"onething.case_no": value, "n": 3},
                            events=[Event("note", {"text": note}, 1)])

    clean, with_id, with_phone = span("440100XSECS202611260001", "case 1"), span(CITIZEN, "1"), span("x", f"tel {PHONE}")
    assert telemetry.masked(clean) is clean  # nothing to mask: no copy
    copy = telemetry.masked(with_id)
    assert copy is not with_id and copy.attributes == {"onething.case_no": "1101**********002X", "n": 3}
    assert with_id.attributes["onething.case_no"] == CITIZEN  # the span itself is not changed
    copy = telemetry.masked(with_phone)
    assert copy.events[0].attributes["text"] == "tel 138****0000" and copy.attributes["onething.case_no"] == "x"


def test_log_records_are_masked_whatever_logger_or_handler(caplog):
    privacy.install_log_masking()
    caplog.set_level(logging.INFO)
    log = logging.getLogger("onething.test.privacy")
    log.info("applicant %s phone %s", CITIZEN, PHONE)
    try:
        raise ValueError(f"bad applicant {CITIZEN}")
    except ValueError:
        log.exception("failed for %s", {"id_number": CITIZEN})
    text = caplog.text
    assert "1101**********002X" in text and "138****0000" in text
    assert not privacy.contains_personal_data(text)
    formatted = logging.Formatter().format(caplog.records[-1])  # traceback included
    assert "ValueError: bad applicant 1101**********002X" in formatted
    assert not privacy.contains_personal_data(formatted)


def test_span_files_are_masked(tmp_path):
    exporter = telemetry.MaskingExporter(telemetry.OtlpJsonLinesExporter(str(tmp_path), "t-1", 1 << 20, 1 << 30), "t")
    provider = telemetry.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("SubmitCase") as span:
        span.set_attribute("onething.applicant", CITIZEN)
        span.set_attribute("onething.count", 3)
        span.add_event("checked", {"phone": PHONE})
        span.set_status(telemetry.trace.Status(telemetry.trace.StatusCode.ERROR, f"phone {PHONE} refused"))
    text = (tmp_path / "t-1-000001.jsonl").read_text(encoding="utf-8")
    assert not privacy.contains_personal_data(text)
    out = json.loads(text)["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert {"key": "onething.applicant", "value": {"stringValue": "1101**********002X"}} in out["attributes"]
    assert {"key": "onething.count", "value": {"intValue": "3"}} in out["attributes"]
    assert out["status"] == {"code": 2, "message": "phone 138****0000 refused"}
    assert out["events"][0]["attributes"] == [{"key": "phone", "value": {"stringValue": "138****0000"}}]


def test_refusals_do_not_repeat_identity_numbers_phones_or_form_values():
    messages = [ids.citizen_id_problem("110105194912310021")]
    with pytest.raises(InvalidArgument) as err:
        check_address({"recipient": "李华", "phone": "1381234000", "region_code": "440106", "line": "天河路100号",
                       "postcode": "510620"})
    messages.append(err.value.message)
    with pytest.raises(InvalidArgument) as err:
        intake_domain.check_applicant_id("110105194912310021")
    messages.append(err.value.message)
    fields = [{"key": "birth_date", "label": "出生日期", "type": "date", "required": True},
              {"key": "mother_id", "label": "母亲身份证号", "validator": "citizen_id"},
              {"key": "father_phone", "label": "父亲电话", "validator": "phone"}]
    for form in ({"birth_date": "2024-13-45 秘密值"}, {"birth_date": "2024-01-01", "mother_id": "110105194912310021"},
                 {"birth_date": "2024-01-01", "father_phone": "1381234000"}):
        with pytest.raises(InvalidArgument) as err:
            intake_domain.check_form(fields, form)
        messages.append(err.value.message)
        messages += [v.description for v in err.value.violations]
    text = " | ".join(messages)
    assert "110105194912310021" not in text and "1381234000" not in text and "秘密值" not in text
    assert "1101**********0021" in text  # still says which number, masked
    assert not privacy.contains_personal_data(text)
