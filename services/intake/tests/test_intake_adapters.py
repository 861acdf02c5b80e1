"""intake's elicense adapter and the handler parts that need no server, with fakes."""
import types

import grpc
import pytest

from onething.elicense.v1 import elicense_pb2
from services.common.errors import InvalidArgument, NotFound, Unavailable
from services.intake.elicense_client import ElicenseClient
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
        license_id="L1", type_code="CSYXZM", status=elicense_pb2.LICENSE_STATUS_VALID, valid_from="2026-01-01")]))
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
    return Intake(store, None, None, None, 1024, licences=licences, watch_limit_s=5, watch_poll_s=0.001)


def test_unreachable_elicense_means_every_material_is_asked_for(caplog):
    assert _intake(FailingLicences())._licences("H1") == []
    assert "elicense unavailable" in caplog.text


def test_no_licence_source_means_no_licences():
    assert _intake(None)._licences("H1") == []


def test_only_valid_licences_are_used():
    got = _intake(Licences([{"license_id": "A", "type_code": "X", "status": "LICENSE_STATUS_VALID"},
                            {"license_id": "B", "type_code": "X", "status": "LICENSE_STATUS_REVOKED"}]))._licences("H")
    assert [l["license_id"] for l in got] == ["A"]


class SequenceStore:
    """Returns the given case states one after another (the last one for ever). A state is the
    case's history: a list of statuses, a ("note", status) pair for a note that keeps the status."""

    def __init__(self, states):
        self.states, self.reads = list(states), 0

    def case(self, case_no):
        self.reads += 1
        state = self.states[min(self.reads - 1, len(self.states) - 1)]
        if state is None:
            return None
        history = [{"status": h[1], "note": "a note", "note_only": True} if isinstance(h, tuple)
                   else {"status": h, "note": ""} for h in state]
        return types.SimpleNamespace(case_no=case_no, status=history[-1]["status"], history=history,
                                     applicant={"id_number": "X"})


CASE_NO = "440100XSECS202611260001"
SUB, REV, RECT, APP, FAIL, DEL, REJ = (f"CASE_STATUS_{s}" for s in (
    "SUBMITTED", "IN_REVIEW", "RECTIFYING", "APPROVED", "DELIVERY_FAILED", "DELIVERED", "REJECTED"))


def test_watch_sends_the_case_then_each_change_and_ends_at_a_final_status():
    store = SequenceStore([[SUB], [SUB], [SUB, RECT], [SUB, RECT], [SUB, RECT, SUB], [SUB, RECT, SUB, REJ],
                           [SUB, RECT, SUB, REJ, DEL]])
    got = [d.status for d in _intake(store=store).watch(CASE_NO)]
    assert got == [SUB, RECT, SUB, REJ]


def test_watch_sends_every_change_that_happened_between_two_looks_in_order():
    """Polling the status alone would jump from SUBMITTED to DELIVERED here; the history has them all."""
    store = SequenceStore([[SUB], [SUB, REV, APP, FAIL, APP, DEL], [SUB, REV, APP, FAIL, APP, DEL, "CASE_STATUS_RATED"]])
    got = list(_intake(store=store).watch(CASE_NO))
    assert [d.status for d in got] == [SUB, REV, APP, FAIL, APP, DEL, "CASE_STATUS_RATED"]
    # each message is the case as of its change: its history ends with that change
    assert [len(d.history) for d in got] == [1, 2, 3, 4, 5, 6, 7]
    assert got[3].history[-1]["status"] == FAIL and got[3].case_no == CASE_NO and got[3].applicant == {"id_number": "X"}


def test_watch_sends_no_message_for_a_note_and_none_twice():
    store = SequenceStore([[SUB], [SUB, ("note", SUB)], [SUB, ("note", SUB), REV, ("note", REV)],
                           [SUB, ("note", SUB), REV, ("note", REV)], [SUB, ("note", SUB), REV, ("note", REV), REJ]])
    got = [d.status for d in _intake(store=store).watch(CASE_NO)]
    assert got == [SUB, REV, REJ]


def test_watch_stops_at_the_first_final_status_even_if_more_follows_in_the_same_look():
    store = SequenceStore([[SUB], [SUB, REJ, ("note", REJ)]])
    assert [d.status for d in _intake(store=store).watch(CASE_NO)] == [SUB, REJ]


def test_watch_ends_when_the_caller_goes_away():
    store = SequenceStore([[SUB]])
    active = iter([True, True, False])
    got = list(_intake(store=store).watch(CASE_NO, lambda: next(active)))
    assert len(got) == 1 and store.reads == 3


def test_watch_ends_after_the_time_limit():
    intake = _intake(store=SequenceStore([[SUB]]))
    intake.watch_limit_s = 0.05
    assert len(list(intake.watch(CASE_NO))) == 1


def test_watch_of_an_unknown_or_malformed_case_fails_before_sending_anything():
    with pytest.raises(NotFound):
        next(_intake(store=SequenceStore([None])).watch(CASE_NO))
    with pytest.raises(InvalidArgument):
        next(_intake(store=SequenceStore([None])).watch("nope"))
