"""intake's elicense adapter and the handler parts that need no server, with fakes."""
import dataclasses
import datetime

import grpc
import pytest
from google.type import date_pb2

from onething.elicense.v1 import elicense_pb2
from services.common.errors import InvalidArgument, NotFound, Unavailable
from services.intake import domain
from services.intake.elicense_client import ElicenseClient
from services.intake.fakes import FakeIntakeStore
from services.intake.handlers import Intake


class _RpcError(grpc.RpcError):
    def __init__(self, code):
        self._code = code

    def code(self):
        return self._code

    def details(self):
        return f"details of {self._code.name}"


def SERVICE():
    return (("authorization", "Bearer service-token"),)


class FakeStub:
    def __init__(self, result):
        self.result, self.calls = result, []

    def ListLicenses(self, request, timeout, metadata=None):
        self.calls.append((request.holder_code, timeout))
        assert metadata == (("authorization", "Bearer service-token"),)  # intake asks as a service
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


def test_licences_of_asks_elicense_by_holder_and_returns_dicts():
    stub = FakeStub(elicense_pb2.ListLicensesResponse(licenses=[elicense_pb2.License(
        license_id="L1", type_code="CSYXZM", status=elicense_pb2.LICENSE_STATUS_VALID,
        valid_from=date_pb2.Date(year=2026, month=1, day=1))]))
    got = ElicenseClient("unused", stub=stub, metadata=SERVICE).licences_of("H1")
    assert stub.calls == [("H1", 3.0)]
    assert got == [{"license_id": "L1", "type_code": "CSYXZM", "status": "LICENSE_STATUS_VALID",
                    "valid_from": "2026-01-01"}]


@pytest.mark.parametrize("code, error", [
    (grpc.StatusCode.UNAVAILABLE, Unavailable), (grpc.StatusCode.DEADLINE_EXCEEDED, Unavailable),
    (grpc.StatusCode.INTERNAL, Unavailable), (grpc.StatusCode.INVALID_ARGUMENT, InvalidArgument)])
def test_elicense_errors_become_domain_errors(code, error):
    with pytest.raises(error):
        ElicenseClient("unused", stub=FakeStub(_RpcError(code)), metadata=SERVICE).licences_of("H1")


class FailingLicences:
    def licences_of(self, holder):
        raise Unavailable("down")


class Licences:
    def __init__(self, licences):
        self.licences = licences

    def licences_of(self, holder):
        return self.licences


def _intake(licences=None, store=None):
    return Intake(store, None, None, 1024, licences=licences, watch_limit_s=5, watch_poll_s=0.001)


def test_unreachable_elicense_means_every_material_is_asked_for(caplog):
    assert _intake(FailingLicences())._licences("H1") == []
    assert "elicense unavailable" in caplog.text


def test_no_licence_source_means_no_licences():
    assert _intake(None)._licences("H1") == []


def test_only_valid_licences_are_used():
    got = _intake(Licences([{"license_id": "A", "type_code": "X", "status": "LICENSE_STATUS_VALID"},
                            {"license_id": "B", "type_code": "X", "status": "LICENSE_STATUS_REVOKED"}]))._licences("H")
    assert [l["license_id"] for l in got] == ["A"]


class ChangingStore(FakeIntakeStore):
    """The shared fake store, with a case that changes between two looks: before its n-th read the
    case's history is taken to the n-th of `states` (the last one for ever), each new entry saved
    as a change of the case. A state is the case's history: a list of statuses, a ("note",
    status) pair for a note that keeps the status; None: there is no such case."""

    def __init__(self, states):
        super().__init__()
        self.states, self.reads = list(states), 0
        if self.states[0] is not None:
            self.insert_case(domain.Case(case_no=CASE_NO, package_code="XSECS", package_version=1,
                                         region_code="440100", applicant={"id_number": "X"}, status=SUB,
                                         submitted_at=datetime.datetime(2026, 11, 26, tzinfo=datetime.UTC),
                                         history=[domain.HistoryEntry(SUB, "t0", "submitted")]))

    def case(self, case_no):
        self.reads += 1
        state = self.states[min(self.reads - 1, len(self.states) - 1)]
        case = super().case(case_no)
        for change in (state or [])[len(case.history) if case else 0:]:
            note_only = isinstance(change, tuple)
            status = change[1] if note_only else change
            assert self.save(case.changed(status, "a note" if note_only else "", "t", note_only=note_only),
                             case.version)
            case = super().case(case_no)
        return case


CASE_NO = "440100XSECS202611260001"
SUB, REV, RECT, APP, FAIL, DEL, REJ, RATED = (
    domain.SUBMITTED, domain.IN_REVIEW, domain.RECTIFYING, domain.APPROVED, domain.DELIVERY_FAILED, domain.DELIVERED,
    domain.REJECTED, domain.RATED)


def test_watch_sends_the_case_then_each_change_and_ends_at_a_final_status():
    store = ChangingStore([[SUB], [SUB], [SUB, RECT], [SUB, RECT], [SUB, RECT, SUB], [SUB, RECT, SUB, REJ],
                           [SUB, RECT, SUB, REJ, DEL]])
    got = [d.status for d in _intake(store=store).watch(CASE_NO)]
    assert got == [SUB, RECT, SUB, REJ]


def test_watch_sends_every_change_that_happened_between_two_looks_in_order():
    """Polling the status alone would jump from SUBMITTED to DELIVERED here; the history has them all."""
    store = ChangingStore([[SUB], [SUB, REV, APP, FAIL, APP, DEL], [SUB, REV, APP, FAIL, APP, DEL, RATED]])
    got = list(_intake(store=store).watch(CASE_NO))
    assert [d.status for d in got] == [SUB, REV, APP, FAIL, APP, DEL, RATED]
    # each message is the case as of its change: its history ends with that change
    assert [len(d.history) for d in got] == [1, 2, 3, 4, 5, 6, 7]
    assert got[3].history[-1].status == FAIL and got[3].case_no == CASE_NO and got[3].applicant == {"id_number": "X"}


def test_watch_sends_no_message_for_a_note_and_none_twice():
    store = ChangingStore([[SUB], [SUB, ("note", SUB)], [SUB, ("note", SUB), REV, ("note", REV)],
                           [SUB, ("note", SUB), REV, ("note", REV)], [SUB, ("note", SUB), REV, ("note", REV), REJ]])
    got = [d.status for d in _intake(store=store).watch(CASE_NO)]
    assert got == [SUB, REV, REJ]


def test_watch_stops_at_the_first_final_status_even_if_more_follows_in_the_same_look():
    store = ChangingStore([[SUB], [SUB, REJ, ("note", REJ)]])
    assert [d.status for d in _intake(store=store).watch(CASE_NO)] == [SUB, REJ]


def test_watch_ends_when_the_caller_goes_away():
    store = ChangingStore([[SUB]])
    active = iter([True, True, False])
    got = list(_intake(store=store).watch(CASE_NO, lambda: next(active)))
    assert len(got) == 1 and store.reads == 3


def test_watch_ends_after_the_time_limit():
    intake = _intake(store=ChangingStore([[SUB]]))
    intake.watch_limit_s = 0.05
    assert len(list(intake.watch(CASE_NO))) == 1


def test_watch_of_an_unknown_or_malformed_case_fails_before_sending_anything():
    with pytest.raises(NotFound):
        next(_intake(store=ChangingStore([None])).watch(CASE_NO))
    with pytest.raises(InvalidArgument):
        next(_intake(store=ChangingStore([None])).watch("nope"))


def test_the_api_sends_a_case_with_its_statuses_as_the_protos_numbers():
    from onething.intake.v1 import intake_pb2
    from services.intake.api import case_to_proto
    at = datetime.datetime(2026, 11, 26, 2, 0, 0, 123000, tzinfo=datetime.UTC)
    t = ["2026-11-26T02:00:00+00:00", "2026-11-26T03:00:00+00:00", "2026-11-27T01:30:00.250000+00:00",
         "2026-11-30T09:00:00+08:00"]
    rect = {"material_codes": ["M02"], "resume_status": REV,
            "requests": [{"item_code": "I1", "department_code": "gaj", "material_codes": ["M02"], "reason": "模糊",
                          "at": t[2], "round": 1}]}
    case = domain.Case(case_no=CASE_NO, package_code="XSECS", package_version=3, region_code="440100",
                       applicant={"id_number": "X", "name": "李华"}, status=RECT, submitted_at=at,
                       form={"child_name": "李小明"}, delivery={"channel": "DELIVERY_CHANNEL_WINDOW"},
                       materials=[{"material_code": "M01", "name": "身份证", "license_id": "L0"}],
                       history=[domain.HistoryEntry(SUB, t[0], "submitted"), domain.HistoryEntry(REV, t[1], "opened"),
                                domain.HistoryEntry(RECT, t[2], "rectification"),
                                domain.HistoryEntry(RECT, t[3], "督办", note_only=True)],
                       license_ids=["L0"], revoked_license_ids=["L0"], rectification=rect,
                       parties=[{"role": "buyer", "name": "买方", "id_number": "Y", "code_type": "111"}])
    shown = case_to_proto(case)
    S = intake_pb2
    assert shown.status == S.CASE_STATUS_RECTIFYING
    assert shown.submitted_at.ToJsonString() == "2026-11-26T02:00:00.123Z"
    assert [(h.status, h.at.ToJsonString(), h.note, h.note_only) for h in shown.history] == [
        (S.CASE_STATUS_SUBMITTED, "2026-11-26T02:00:00Z", "submitted", False),
        (S.CASE_STATUS_IN_REVIEW, "2026-11-26T03:00:00Z", "opened", False),
        (S.CASE_STATUS_RECTIFYING, "2026-11-27T01:30:00.250Z", "rectification", False),
        (S.CASE_STATUS_RECTIFYING, "2026-11-30T01:00:00Z", "督办", True)]
    assert shown.rectification.requests[0].at.ToJsonString() == "2026-11-27T01:30:00.250Z"
    assert shown.rectification.requests[0].reason == "模糊"
    assert shown.rectification.resume_status == S.CASE_STATUS_IN_REVIEW
    assert list(shown.rectification.material_codes) == ["M02"] and shown.rectification.requests[0].item_code == "I1"
    assert shown.delivery.channel == 2 and shown.materials[0].license_id == "L0" and shown.parties[0].role == "buyer"
    assert dict(shown.form) == {"child_name": "李小明"} and list(shown.revoked_license_ids) == ["L0"]
    assert case_to_proto(dataclasses.replace(case, rectification={})).rectification == S.Rectification()
